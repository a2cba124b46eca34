"""Job scripts and command lines of SLURMCluster and PBSCluster, checked offline.

No batch system is needed: the clusters are made with ``asynchronous=True`` and never
started, so nothing is submitted.
"""

from __future__ import annotations

import itertools
import shlex
import sys
from pathlib import Path

import pytest

from shoal.comm import Security
from shoal.deploy import PBSCluster, SLURMCluster


def slurm(tmp_path: Path, **kwargs: object) -> SLURMCluster:
    options: dict[str, object] = {
        "cores": 4, "memory": "8GiB", "processes": 2, "queue": "debug",
        "walltime": "01:00:00", "shared_directory": str(tmp_path),
        "scheduler_options": {"host": "127.0.0.1"}, "asynchronous": True,
    }  # fmt: skip
    options.update(kwargs)
    return SLURMCluster(**options)  # type: ignore[arg-type]


def test_slurm_script_asks_for_the_job_and_runs_shoal_worker(tmp_path: Path) -> None:
    cluster = slurm(
        tmp_path,
        account="proj1",
        job_extra_directives=["--exclusive", "--gres=gpu:1"],
        job_script_prologue=["module load python", "source env/bin/activate"],
        local_directory="/scratch/me",
    )
    cluster.scheduler.address = "tcp://10.0.0.5:8786"  # as if started
    cluster.token_file = tmp_path / "token"
    script = cluster.job_script("shoal-worker-7")
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in (
        "#SBATCH -J shoal-worker-7", "#SBATCH -p debug", "#SBATCH -A proj1", "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8192M", "#SBATCH -t 01:00:00",
        "#SBATCH --exclusive", "#SBATCH --gres=gpu:1",
    ):  # fmt: skip
        assert directive in lines, directive
    assert lines.index("module load python") < lines.index("source env/bin/activate")
    command = shlex.split(lines[-1])
    assert command[:5] == [sys.executable, "-m", "shoal", "worker", "tcp://10.0.0.5:8786"]
    flags = {a: b for a, b in itertools.pairwise(command) if a.startswith("--")}
    assert flags["--nthreads"] == "2"
    assert flags["--nworkers"] == "2"
    assert flags["--memory-limit"] == str(4 * 2**30)
    assert flags["--name"] == "shoal-worker-7"
    assert flags["--token-file"] == str(tmp_path / "token")
    assert flags["--local-directory"] == "/scratch/me"
    assert "--nanny" in command
    assert "token" not in script.replace(str(tmp_path / "token"), "").replace("--token-file", "")
    assert cluster.submit_command_line("/tmp/job.sh") == ["sbatch", "--parsable", "/tmp/job.sh"]
    assert cluster.cancel_command_line(["12", "13"]) == ["scancel", "12", "13"]


def test_tls_files_are_passed_to_the_worker(tmp_path: Path) -> None:
    security = Security(token="t", tls_ca_file="/c/ca.pem", tls_cert="/c/w.pem", tls_key="/c/w.key")
    cluster = slurm(tmp_path, security=security)
    command = shlex.split(cluster.job_script().splitlines()[-1])
    joined = " ".join(command)
    assert "--tls-ca-file /c/ca.pem --tls-cert /c/w.pem --tls-key /c/w.key" in joined


def test_pbs_script_and_commands(tmp_path: Path) -> None:
    cluster = PBSCluster(
        cores=8, memory="16GB", queue="workq", account="acc", walltime="02:00:00",
        job_extra_directives=["-V"], shared_directory=str(tmp_path),
        log_directory="/logs", scheduler_options={"host": "127.0.0.1"}, asynchronous=True,
    )  # fmt: skip
    lines = cluster.job_script("shoal-worker-0").splitlines()
    for directive in (
        "#PBS -N shoal-worker-0", "#PBS -q workq", "#PBS -A acc",
        "#PBS -l select=1:ncpus=8:mem=15259MB", "#PBS -l walltime=02:00:00", "#PBS -V",
        "#PBS -e /logs/", "#PBS -o /logs/",
    ):  # fmt: skip
        assert directive in lines, directive
    assert "--nthreads 8" in lines[-1]
    assert cluster.submit_command_line("job.sh") == ["qsub", "job.sh"]
    assert cluster.cancel_command_line(["4.pbs01"]) == ["qdel", "4.pbs01"]
    import re

    match = re.search(cluster.job_id_regexp, "4711.pbs-server.example\n")
    assert match is not None and match.group("job_id") == "4711.pbs-server.example"


def test_scale_arithmetic(tmp_path: Path) -> None:
    cluster = slurm(tmp_path)  # 2 workers, 4 cores, 8 GiB a job
    assert cluster.jobs_for(5) == 3
    assert cluster.jobs_for(jobs=2) == 2
    assert cluster.jobs_for(cores=9) == 3
    assert cluster.jobs_for(memory="20GiB") == 3


def test_bad_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cores >= processes"):
        slurm(tmp_path, cores=1, processes=2)
