"""SLURMCluster against a real single-node slurmctld + slurmd on this machine.

``scripts/slurm_single_node.sh`` (idempotent) starts munged, slurmctld and slurmd with a
configuration of its own; ``.ci/run`` installs slurm-wlm and munge first. The fixture
runs it (root only) and points SLURM_CONF at that configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import Client
from shoal.deploy import SLURMCluster
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_single_node.sh"


@pytest.fixture(scope="module")
def slurm() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: slurmd runs jobs as their owners")
    missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(c)]
    if missing:
        pytest.skip(f"slurm is not installed ({', '.join(missing)} missing): "
                    "apt-get install slurm-wlm munge")  # fmt: skip
    was_running = _slurmctld_running()
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode:
        raise RuntimeError(f"{SCRIPT.name} failed:\n{done.stdout}\n{done.stderr}")
    conf = done.stdout.strip().splitlines()[-1]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        if not was_running:  # stop the daemons this fixture started (munged stays)
            subprocess.run(["bash", str(SCRIPT), "stop"], timeout=60, check=False)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _slurmctld_running() -> bool:
    pid_file = Path(os.environ.get("SHOAL_SLURM_DIR", "/var/tmp/shoal-slurm")) / "slurmctld.pid"
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def squeue(job_prefix: str) -> list[str]:
    """Queued or running jobs whose names start with ``job_prefix``: "<id> <state> <name>"."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T %j"], capture_output=True, text=True, timeout=30, check=True
    )
    return [line for line in out.stdout.splitlines() if line.split()[2].startswith(job_prefix)]


def ledgered(key: str, ledger: str) -> str:
    with open(ledger, "a") as f:
        f.write(key + "\n")
    return key * 10


def add(*parts: str) -> int:
    return sum(len(p) for p in parts)


def test_two_jobs_run_two_workers_and_scale_0_cancels_them(slurm: str, tmp_path: Path) -> None:
    job_name = f"shoal-test-{os.getpid()}"
    ledger = tmp_path / "ledger"
    with SLURMCluster(
        cores=1, memory="1GiB", processes=1, walltime="00:10:00", job_name=job_name,
        shared_directory=str(tmp_path), log_directory=str(tmp_path),
        scheduler_options={"host": "127.0.0.1"},
    ) as cluster:  # fmt: skip
        script = cluster.job_script()
        assert "#SBATCH --cpus-per-task=1" in script
        assert f"-m shoal worker {cluster.scheduler_address}" in script
        cluster.scale(jobs=2)
        assert len(squeue(job_name)) == 2
        cluster.wait_for_workers(2, timeout=120)
        with Client(cluster) as client:
            names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
            assert names == sorted(cluster.jobs)
            leaves = [client.submit(ledgered, f"part-{i}", str(ledger), key=f"part-{i}")
                      for i in range(6)]  # fmt: skip
            assert client.submit(add, *leaves).result(timeout=60) == 6 * 6 * 10
            cluster.scale(jobs=1)  # down by retirement: the results stay
            assert client.gather(leaves) == [f"part-{i}" * 10 for i in range(6)]
            assert sorted(ledger.read_text().split()) == sorted(f"part-{i}" for i in range(6))
            cluster.scale(0)
            assert cluster.jobs == {}
            deadline = time.monotonic() + 60
            while squeue(job_name):
                assert time.monotonic() < deadline, f"jobs still queued: {squeue(job_name)}"
                time.sleep(0.2)
            assert client.scheduler_info()["workers"] == {} or _workers_leave(client)


def _workers_leave(client: Client) -> bool:
    deadline = time.monotonic() + 30
    while client.scheduler_info()["workers"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_failed_submission_names_the_job(slurm: str, tmp_path: Path) -> None:
    with SLURMCluster(
        cores=1, memory="1GiB", queue="no-such-partition", shared_directory=str(tmp_path),
        log_directory=str(tmp_path), scheduler_options={"host": "127.0.0.1"},
    ) as cluster:  # fmt: skip
        with pytest.raises(RuntimeError, match=r"submitting shoal-worker-0: sbatch .* exited"):
            cluster.scale(jobs=1)
        assert cluster.jobs == {}


def slow_ledgered(key: str, ledger: str) -> str:
    time.sleep(0.5)
    return ledgered(key, ledger)


def test_adapt_submits_jobs_for_work_and_cancels_them_when_idle(slurm: str, tmp_path: Path) -> None:
    job_name = f"shoal-adapt-{os.getpid()}"
    ledger = tmp_path / "ledger"
    with SLURMCluster(
        cores=1, memory="1GiB", walltime="00:10:00", job_name=job_name,
        shared_directory=str(tmp_path), log_directory=str(tmp_path),
        scheduler_options={"host": "127.0.0.1"},
    ) as cluster:  # fmt: skip
        adaptive = cluster.adapt(
            minimum=0, maximum=2, target_duration="1s", wait_count=2, interval="0.5s"
        )
        with Client(cluster) as client:
            keys = [f"adapt-{i}" for i in range(12)]
            futures = [client.submit(slow_ledgered, k, str(ledger), key=k) for k in keys]
            wait_until(
                lambda: len(squeue(job_name)) == 2, 90, "adapt submitted two jobs", interval=0.2
            )
            assert client.gather(futures) == [k * 10 for k in keys]
            wait_until(lambda: len(cluster.jobs) == 1, 60, "adapt retired down to one job")
            assert client.gather(futures) == [k * 10 for k in keys]
            assert sorted(ledger.read_text().split()) == sorted(keys), "a key was recomputed"
            del futures
            wait_until(lambda: not cluster.jobs, 60, "adapt cancelled the last job")
            wait_until(lambda: not squeue(job_name), 60, "squeue empty", interval=0.2)
        adaptive.stop()
        assert max(target for target, _ in adaptive.history) == 2
