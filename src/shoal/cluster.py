"""LocalCluster: a scheduler and workers on this machine, the embedded default.

Worker processes are started as fresh interpreters running ``python -m shoal worker``
(never by forking or re-importing the user's ``__main__``), so a script that creates a
cluster at top level, without an ``if __name__ == "__main__"`` guard, works.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator
from typing import Any

import psutil

from shoal import loop as shared_loop
from shoal.cluster_api import ClusterApi
from shoal.cluster_options import (
    NO_OPS,
    REFUSED,
    WORKER_OPTIONS_ENV,
    check_cluster_kwargs,
    check_worker_kwargs,
    log_level_name,
    process_arguments,
)
from shoal.comm import Security
from shoal.errors import ShoalTimeoutError
from shoal.scheduler.server import Scheduler
from shoal.sizes import parse_timedelta
from shoal.worker.server import Worker

logger = logging.getLogger("shoal.cluster")


def default_layout(
    n_workers: int | None, threads_per_worker: int | None, processes: bool
) -> tuple[int, int]:
    """How many workers with how many threads, from what the user fixed and the cores."""
    cores = psutil.cpu_count() or 1
    if n_workers is None and threads_per_worker is None:
        if not processes:
            return 1, cores
        n_workers = min(cores, 4)
        return n_workers, max(1, cores // n_workers)
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cores // max(n_workers, 1))
    return n_workers, threads_per_worker


class LocalCluster(ClusterApi):
    """A scheduler in this process and ``n_workers`` workers (processes or in-process).

    dask's keywords are accepted: worker options (``local_directory``,
    ``memory_target_fraction``, ``lifetime``... given as keywords or in ``worker_kwargs``)
    reach every worker, processes or not; ``silence_logs`` sets the worker processes' log
    level; ``worker_class`` is a ``Worker`` subclass for in-process workers; the rest is
    described in ``shoal.cluster_options`` (no-ops with their reasons, and refusals).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = True,
        memory_limit: object = "auto",
        *,
        name: str | None = None,
        host: str | None = None,
        ip: str | None = None,
        scheduler_port: int = 0,
        resources: dict[str, float] | None = None,
        security: Security | None = None,
        asynchronous: bool = False,
        worker_kwargs: dict[str, Any] | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        dashboard_address: str | None = "127.0.0.1:0",
        silence_logs: Any = logging.WARNING,
        protocol: str | None = None,
        worker_class: type | None = None,
        start: bool | None = None,
        **kwargs: Any,
    ) -> None:
        processes = True if processes is None else processes
        check_cluster_kwargs(kwargs)
        worker_options = {k: v for k, v in kwargs.items() if k not in NO_OPS and k not in REFUSED}
        worker_options.update(worker_kwargs or {})
        check_worker_kwargs(worker_options, worker_class or Worker)
        if protocol not in (None, "tcp", "tcp://"):
            raise NotImplementedError(f"LocalCluster(protocol={protocol!r}): only tcp")
        if start is False:
            raise NotImplementedError("LocalCluster(start=False): a LocalCluster starts at once")
        if (
            worker_class is not None
            and processes
            and worker_class.__name__
            not in (
                "Worker",
                "Nanny",
            )
        ):
            raise NotImplementedError(
                "LocalCluster(worker_class=...) with processes=True: worker processes run "
                "shoal's Worker under a Nanny; use processes=False for a Worker subclass"
            )
        self.name = name
        self.worker_class = worker_class
        self.silence_logs = silence_logs
        self.n_workers, self.threads_per_worker = default_layout(
            n_workers, threads_per_worker, processes
        )
        self.processes = processes
        self.memory_limit = worker_options.pop("memory_limit", memory_limit)
        self.host = host or ip or "127.0.0.1"
        host = self.host
        self.security = security if security is not None else Security.local()
        self.resources = dict(resources or {})
        self.worker_kwargs = worker_options
        self.scheduler = Scheduler(
            host=host,
            port=scheduler_port,
            security=self.security,
            dashboard_address=dashboard_address,
            **(scheduler_kwargs or {}),
        )
        self.workers: list[Worker] = []
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.asynchronous = asynchronous
        self.status = "created"
        if not asynchronous:
            shared_loop.run_sync(self._start())

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address (None when started with ``dashboard_address=None``)."""
        return self.scheduler.dashboard_link

    @property
    def dashboard_login_link(self) -> str | None:
        """The dashboard's address with the cluster token, which logs a browser in."""
        return self.scheduler.dashboard_login_link

    def __await__(self) -> Generator[Any, None, LocalCluster]:
        async def start() -> LocalCluster:
            await self._start()
            return self

        return start().__await__()

    async def _start(self) -> None:
        if self.status != "created":
            return
        self.status = "starting"
        await self.scheduler.start()
        if self.processes:
            self._spawn_worker_processes()
        else:
            await self._start_inprocess_workers()
        await self._wait_for_workers(self.n_workers, timeout=60)
        self.status = "running"

    async def _start_inprocess_workers(self) -> None:
        worker_class = self.worker_class or Worker
        if worker_class.__name__ == "Nanny":
            worker_class = Worker  # in-process workers have no nanny
        options = dict(self.worker_kwargs)
        for name in ("lifetime", "lifetime_stagger"):
            if isinstance(options.get(name), str):
                options[name] = parse_timedelta(options[name])
        for i in range(self.n_workers):
            worker = worker_class(
                self.scheduler.address,
                security=self.security,
                host=self.host,
                nthreads=self.threads_per_worker,
                name=str(i),
                memory_limit=self.memory_limit,
                resources=self.resources,
                **options,
            )
            await worker.start()
            self.workers.append(worker)

    def _spawn_worker_processes(self) -> None:
        env = dict(os.environ)
        if self.security.token is not None:
            env["SHOAL_TOKEN"] = self.security.token
        flags, options = process_arguments(self.worker_kwargs)
        if options is not None:
            env[WORKER_OPTIONS_ENV] = options
        for i in range(self.n_workers):
            cmd = [
                sys.executable, "-m", "shoal", "worker", self.scheduler.address,
                "--nanny", "--host", self.host,
                "--nthreads", str(self.threads_per_worker),
                "--memory-limit", str(self.memory_limit),
                "--name", str(i), "--log-level", log_level_name(self.silence_logs), *flags,
            ]  # fmt: skip
            if self.security.token is None:
                cmd.append("--no-auth")
            if self.resources:
                cmd += ["--resources", " ".join(f"{k}={v}" for k, v in self.resources.items())]
            self.worker_processes.append(subprocess.Popen(cmd, env=env))

    async def _wait_for_workers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.scheduler.state.workers) < n:
            for proc in self.worker_processes:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"a worker process exited with code {proc.returncode} while starting"
                    )
            if time.monotonic() > deadline:
                raise ShoalTimeoutError(
                    f"only {len(self.scheduler.state.workers)} of {n} workers joined "
                    f"{self.scheduler.address} within {timeout}s"
                )
            await asyncio.sleep(0.02)

    async def _close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        for worker in self.workers:
            await worker.close()
        await self.scheduler.close()  # tells worker processes to close
        await asyncio.get_running_loop().run_in_executor(None, self._stop_processes)
        self.status = "closed"

    def _stop_processes(self) -> None:
        for proc in self.worker_processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
        for proc in self.worker_processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> Any:
        if self.asynchronous:
            return self._close()
        if self.status not in ("closing", "closed"):
            shared_loop.run_sync(self._close())
        return None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LocalCluster:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    def __repr__(self) -> str:
        return (
            f"LocalCluster({self.scheduler_address!r}, workers={self.n_workers}, "
            f"threads={self.n_workers * self.threads_per_worker}, status={self.status})"
        )
