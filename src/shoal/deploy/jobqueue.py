"""Batch-queue clusters: each job a batch job whose script runs ``shoal worker``.

Rules of this file:

* ``JobQueueCluster`` writes the script, submits it and cancels it; a subclass gives the
  header directives and the commands (``SLURMCluster``: sbatch/scancel, ``PBSCluster``:
  qsub/qdel). ``job_script()`` is exactly what is submitted.
* The scheduler runs in this process; jobs connect back to it. The cluster token is never
  written into a script (schedulers keep scripts readable): it is in a 0600 token file
  in ``shared_directory``, which the jobs' nodes must see (a shared home, as on HPC).
* Every submit and cancel has a deadline and names the job in its error.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shoal.comm import Security
from shoal.deploy.cluster import Cluster, Job
from shoal.deploy.commands import worker_argv
from shoal.scheduler.server import Scheduler
from shoal.sizes import parse_bytes

#: seconds a submit or cancel command may take
COMMAND_TIMEOUT = 60.0


async def run_command(argv: Sequence[str], *, what: str) -> str:
    """Run ``argv``; its stdout, or a RuntimeError with its stderr (``what`` names it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{what}: {argv[0]} did not finish in {COMMAND_TIMEOUT}s") from None
    if proc.returncode:
        raise RuntimeError(
            f"{what}: {shlex.join(argv)} exited with {proc.returncode}: "
            f"{err.decode(errors='replace').strip()}"
        )
    return out.decode(errors="replace")


class BatchJob(Job):
    """One submitted batch job."""

    def __init__(self, name: str, cluster: JobQueueCluster) -> None:
        super().__init__(name)
        self.cluster = cluster
        self.job_id: str | None = None
        self.script_path: Path | None = None

    async def start(self) -> None:
        cluster = self.cluster
        self.script_path = cluster.directory / f"{self.name}.sh"
        self.script_path.write_text(cluster.job_script(self.name))
        self.script_path.chmod(0o600)
        out = await run_command(
            cluster.submit_command_line(str(self.script_path)), what=f"submitting {self.name}"
        )
        match = re.search(cluster.job_id_regexp, out)
        if match is None:
            raise RuntimeError(f"submitting {self.name}: no job id in {out.strip()!r}")
        self.job_id = match.group("job_id")

    async def close(self) -> None:
        if self.job_id is None:
            return
        job_id, self.job_id = self.job_id, None
        argv = self.cluster.cancel_command_line([job_id])
        try:
            await run_command(argv, what=f"cancelling {self.name} (job {job_id})")
        except RuntimeError as exc:  # a job that already ended cannot be cancelled
            if not self.cluster.job_already_ended(str(exc)):
                raise

    def logs(self) -> str:
        if self.cluster.log_directory is None:
            return ""
        paths = sorted(Path(self.cluster.log_directory).glob(f"{self.name}-*"))
        return "\n".join(p.read_text(errors="replace") for p in paths)


class JobQueueCluster(Cluster):
    """A scheduler here, and workers in batch jobs of ``cores`` cores and ``memory``."""

    #: how the subclass's scheduler says "submitted": a regexp with group ``job_id``
    job_id_regexp = r"(?P<job_id>\d+)"
    submit_command: tuple[str, ...] = ()
    cancel_command: tuple[str, ...] = ()
    #: how a directive line starts ("#SBATCH", "#PBS")
    directive = "#"

    def __init__(
        self,
        n_workers: int = 0,
        *,
        cores: int,
        memory: str | int,
        processes: int = 1,
        queue: str | None = None,
        account: str | None = None,
        walltime: str = "00:30:00",
        job_name: str = "shoal-worker",
        job_extra_directives: Sequence[str] = (),
        job_script_prologue: Sequence[str] = (),
        worker_extra_args: Sequence[str] = (),
        local_directory: str | None = None,
        log_directory: str | None = None,
        shared_directory: str | None = None,
        python: str = sys.executable,
        shebang: str = "#!/usr/bin/env bash",
        scheduler_options: dict[str, Any] | None = None,
        security: Security | None = None,
        asynchronous: bool = False,
    ) -> None:
        super().__init__(
            security=security if security is not None else Security.local(),
            asynchronous=asynchronous,
        )
        if cores < 1 or processes < 1 or cores < processes:
            raise ValueError(f"need cores >= processes >= 1, not {cores=} and {processes=}")
        self.cores, self.processes = cores, processes
        self.memory = parse_bytes(memory)
        self.job_cores, self.job_memory = cores, self.memory
        self.threads_per_worker = max(1, cores // processes)
        self.queue, self.account, self.walltime = queue, account, walltime
        self.job_prefix = job_name
        self.job_extra_directives = list(job_extra_directives)
        self.job_script_prologue = list(job_script_prologue)
        self.worker_extra_args = list(worker_extra_args)
        self.local_directory, self.log_directory = local_directory, log_directory
        self.python, self.shebang = python, shebang
        self.directory = Path(
            tempfile.mkdtemp(prefix="shoal-jobqueue-", dir=shared_directory or _default_shared())
        )
        self.token_file: Path | None = None
        options = {"dashboard_address": "127.0.0.1:0", **(scheduler_options or {})}
        options.setdefault("host", _default_host())
        self.scheduler = Scheduler(security=self.security, **options)
        self._initial_workers = n_workers
        if not asynchronous:
            self._sync(self._start())

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        return self.scheduler.dashboard_link

    async def _start(self) -> None:
        if self.status != "created":
            return
        self.status = "starting"
        if self.security.token is not None:
            self.token_file = self.directory / "token"
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.security.token)
        await self.scheduler.start()
        await self._scale(self.jobs_for(self._initial_workers))
        self.status = "running"

    async def _close_scheduler(self) -> None:
        await self.scheduler.close()

    async def _close(self) -> None:
        await super()._close()
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()

    def new_job(self, name: str) -> Job:
        return BatchJob(name, self)

    # -- the script -------------------------------------------------------------------------
    def header_lines(self, name: str) -> list[str]:
        """The scheduler-specific directives (without ``job_extra_directives``)."""
        raise NotImplementedError

    def worker_command(self, name: str) -> list[str]:
        """The ``shoal worker`` command line a job runs."""
        per_worker = self.memory // self.processes
        cmd = worker_argv(
            [self.python], self.scheduler_address, name=name,
            no_auth=self.token_file is None, nthreads=self.threads_per_worker,
            memory_limit=per_worker, extra=["--nworkers", str(self.processes)],
        )  # fmt: skip
        if self.token_file is not None:
            cmd += ["--token-file", str(self.token_file)]
        if self.local_directory:
            cmd += ["--local-directory", self.local_directory]
        cmd += tls_arguments(self.security)
        return cmd + self.worker_extra_args

    def job_script(self, name: str | None = None) -> str:
        """The script one job runs (for job ``name``; default: the next job's name)."""
        name = name or f"{self.job_prefix}-next"
        directives = self.header_lines(name) + [
            f"{self.directive} {line}" for line in self.job_extra_directives
        ]
        lines = [self.shebang, "", *directives, "", *self.job_script_prologue]
        lines.append(shlex.join(self.worker_command(name)))
        return "\n".join(lines) + "\n"

    def submit_command_line(self, script_path: str) -> list[str]:
        return [*self.submit_command, script_path]

    def cancel_command_line(self, job_ids: Sequence[str]) -> list[str]:
        return [*self.cancel_command, *job_ids]

    def job_already_ended(self, error: str) -> bool:
        """Whether a cancel's error means the job was gone already."""
        return "Invalid job id" in error or "Unknown Job Id" in error


class SLURMCluster(JobQueueCluster):
    """Workers in SLURM jobs (``sbatch``; ``scancel`` to stop)."""

    submit_command = ("sbatch", "--parsable")
    cancel_command = ("scancel",)
    job_id_regexp = r"^(?P<job_id>\d+)"
    directive = "#SBATCH"

    def header_lines(self, name: str) -> list[str]:
        d = self.directive
        lines = [f"{d} -J {name}"]
        if self.log_directory:
            lines += [f"{d} -e {self.log_directory}/{name}-%j.err",
                      f"{d} -o {self.log_directory}/{name}-%j.out"]  # fmt: skip
        if self.queue:
            lines.append(f"{d} -p {self.queue}")
        if self.account:
            lines.append(f"{d} -A {self.account}")
        lines += [
            f"{d} -n 1",
            f"{d} --cpus-per-task={self.cores}",
            f"{d} --mem={math.ceil(self.memory / 2**20)}M",
            f"{d} -t {self.walltime}",
        ]
        return lines


class PBSCluster(JobQueueCluster):
    """Workers in PBS jobs (``qsub``; ``qdel`` to stop)."""

    submit_command = ("qsub",)
    cancel_command = ("qdel",)
    job_id_regexp = r"(?P<job_id>\d+(\.[\w.-]+)?)"
    directive = "#PBS"

    def header_lines(self, name: str) -> list[str]:
        d = self.directive
        lines = [f"{d} -N {name}"]
        if self.queue:
            lines.append(f"{d} -q {self.queue}")
        if self.account:
            lines.append(f"{d} -A {self.account}")
        lines += [
            f"{d} -l select=1:ncpus={self.cores}:mem={math.ceil(self.memory / 2**20)}MB",
            f"{d} -l walltime={self.walltime}",
        ]
        if self.log_directory:
            lines += [f"{d} -e {self.log_directory}/", f"{d} -o {self.log_directory}/"]
        return lines


def tls_arguments(security: Security) -> list[str]:
    """``--tls-ca-file/--tls-cert/--tls-key`` for the files ``security`` names."""
    args: list[str] = []
    for flag, value in (
        ("--tls-ca-file", security.tls_ca_file),
        ("--tls-cert", security.tls_cert),
        ("--tls-key", security.tls_key),
    ):
        if value:
            args += [flag, str(value)]
    return args


def _default_shared() -> str:
    path = Path.home() / ".shoal" / "jobqueue"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(path)


def _default_host() -> str:
    """This machine's address as its name resolves (what batch nodes can reach)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
