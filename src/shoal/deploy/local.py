"""LocalCluster: a scheduler and workers on this machine, the embedded default.

Rules of this file:

* Worker processes are fresh interpreters running ``python -m shoal worker`` (never a
  fork or a re-import of the user's ``__main__``), so a script that creates a cluster
  at top level, without an ``if __name__ == "__main__"`` guard, works.
* The scheduler runs in this process, and so do the nannies (as in dask): each starts
  its worker process directly, which dies with this process (``--nanny-pid``).
* Each worker (a process under a nanny, or an in-process ``Worker`` with
  ``processes=False``) is one job of the ``Cluster`` base, so ``scale`` and ``adapt``
  work as on every other cluster; jobs start in parallel.
* The scheduler also listens on an ``inproc://`` address: a ``Client(cluster)`` on the
  scheduler's own event loop talks to it through memory instead of a loopback socket
  (``in_process_address``); every other party uses the TCP address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psutil

from shoal import loop as shared_loop
from shoal.cluster_options import (
    NO_OPS,
    REFUSED,
    WORKER_OPTIONS_ENV,
    check_cluster_kwargs,
    check_worker_kwargs,
    log_level_name,
    nanny_arguments,
)
from shoal.comm import Security
from shoal.deploy.cluster import Cluster, Job
from shoal.nanny import Nanny
from shoal.protocol.rpc_workers import WorkerGetLogs
from shoal.scheduler.server import Scheduler
from shoal.sizes import parse_timedelta
from shoal.worker.server import Worker


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


class NannyJob(Job):
    """A worker process under a ``Nanny`` that runs on this process's loop (no nanny
    process of its own: one interpreter start per worker)."""

    def __init__(self, name: str, nanny: Nanny) -> None:
        super().__init__(name)
        self.nanny = nanny

    async def start(self) -> None:
        """Returns once the first worker registered (or died at start: the nanny goes on)."""
        await self.nanny.start()

    def failure(self) -> str | None:
        if self.nanny.status not in ("closing", "closed"):
            return None
        deaths = "; ".join(self.nanny.deaths[-3:]) or "none"
        return f"its nanny closed with exit code {self.nanny.exit_code} (deaths: {deaths})"

    async def wait_failure(self) -> str:
        await self.nanny.wait_closed()
        return self.failure() or "its nanny closed"

    async def close(self) -> None:
        await self.nanny.close()


class InProcessWorkerJob(Job):
    """A ``Worker`` on this process's loop (``processes=False``)."""

    def __init__(self, name: str, worker: Worker) -> None:
        super().__init__(name)
        self.worker = worker

    async def start(self) -> None:
        await self.worker.start()

    async def close(self) -> None:
        await self.worker.close()


class LocalCluster(Cluster):
    """A scheduler in this process and ``n_workers`` workers (processes or in-process).

    dask's keywords are accepted: worker options (``local_directory``,
    ``memory_target_fraction``, ``lifetime``... given as keywords or in ``worker_kwargs``)
    reach every worker, processes or not; ``silence_logs`` sets the worker processes' log
    level; ``worker_class`` is a ``Worker`` subclass for in-process workers; the rest is
    described in ``shoal.cluster_options`` (no-ops with their reasons, and refusals).
    """

    job_prefix = "local"

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
        worker_options = _checked_worker_options(kwargs, worker_kwargs, worker_class, processes)
        if protocol not in (None, "tcp", "tcp://"):
            raise NotImplementedError(f"LocalCluster(protocol={protocol!r}): only tcp")
        if start is False:
            raise NotImplementedError("LocalCluster(start=False): a LocalCluster starts at once")
        super().__init__(
            security=security if security is not None else Security.local(),
            asynchronous=asynchronous,
        )
        self.name = name
        self.worker_class = worker_class
        self.silence_logs = silence_logs
        self.n_workers, self.threads_per_worker = default_layout(
            n_workers, threads_per_worker, processes
        )
        self.job_cores = self.threads_per_worker
        self.use_processes = processes
        self.memory_limit = worker_options.pop("memory_limit", memory_limit)
        self.host = host = host or ip or "127.0.0.1"
        self.resources = dict(resources or {})
        self.worker_kwargs = worker_options
        self.scheduler = Scheduler(
            host=host,
            port=scheduler_port,
            security=self.security,
            dashboard_address=dashboard_address,
            **(scheduler_kwargs or {}),
        )
        if not asynchronous:
            self._sync(self._start())

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    def in_process_address(self) -> str | None:
        """The scheduler's ``inproc://`` address when called on the scheduler's own event
        loop (a client there may use it), else None."""
        found: tuple[str, asyncio.AbstractEventLoop] | None = getattr(self, "_inproc", None)
        if found is None or not self.scheduler.listeners:
            return None
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return found[0] if here is found[1] else None

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address (None when started with ``dashboard_address=None``)."""
        return self.scheduler.dashboard_link

    @property
    def dashboard_login_link(self) -> str | None:
        """The dashboard's address with the cluster token, which logs a browser in."""
        return self.scheduler.dashboard_login_link

    @property
    def workers(self) -> list[Worker]:
        """The in-process workers (``processes=False``), in start order."""
        return [job.worker for job in self.jobs.values() if isinstance(job, InProcessWorkerJob)]

    async def _start(self) -> None:
        if self.status != "created":
            return
        self.status = "starting"
        # the dashboard is imported while the workers start (a cold start's ~0.3 s)
        await self.scheduler.start(dashboard_later=True)
        await self.scheduler.listen("inproc://")
        self._inproc = (self.scheduler.listeners[-1].address, asyncio.get_running_loop())
        await self._scale(self.n_workers)
        await self._wait_for_workers(self.n_workers, timeout=60)
        await self.scheduler.dashboard_served()
        self.status = "running"

    def new_job(self, name: str) -> Job:
        if not self.use_processes:
            return InProcessWorkerJob(name, self._inprocess_worker(name))
        named, options = nanny_arguments(self.worker_kwargs)
        nanny = Nanny(
            self.scheduler.address,
            security=self.security.for_role("worker"),
            host=self.host,
            nthreads=self.threads_per_worker or 1,
            name=name,
            memory_limit=self.memory_limit,
            resources=self.resources or None,
            log_level=log_level_name(self.silence_logs),
            env={WORKER_OPTIONS_ENV: options} if options is not None else None,
            **named,
        )
        return NannyJob(name, nanny)

    def _inprocess_worker(self, name: str) -> Worker:
        worker_class = self.worker_class or Worker
        if worker_class.__name__ == "Nanny":
            worker_class = Worker  # in-process workers have no nanny
        options = dict(self.worker_kwargs)
        for option in ("lifetime", "lifetime_stagger"):
            if isinstance(options.get(option), str):
                options[option] = parse_timedelta(options[option])
        worker: Worker = worker_class(
            self.scheduler.address,
            security=self.security,
            host=self.host,
            nthreads=self.threads_per_worker,
            name=name,
            memory_limit=self.memory_limit,
            resources=self.resources,
            **options,
        )
        return worker

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the cluster's scheduler runs on (None when asynchronous)."""
        return shared_loop.get_loop() if not self.asynchronous else None

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: bool = True) -> Any:
        """``{"Scheduler": records, job name: records}``: recent log records, asked of the
        scheduler and of every worker (worker processes' own output is not kept)."""
        return self._sync(self._local_logs(scheduler, workers))

    async def _local_logs(self, scheduler: bool, workers: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if scheduler:
            out["Scheduler"] = self.scheduler.get_logs()
        if workers:
            info = self.scheduler.scheduler_info()["workers"]
            for name, addresses in self._workers_by_job(info).items():
                replies = await asyncio.gather(
                    *(self.scheduler.pool.call(w, WorkerGetLogs()) for w in addresses)
                )
                out[name] = [record for reply in replies for record in reply]
        return out

    async def _close_scheduler(self) -> None:
        for job in self.jobs.values():  # in-process workers leave before their scheduler
            if isinstance(job, InProcessWorkerJob):
                await job.close()
        await self.scheduler.close()  # tells worker processes to close

    def __repr__(self) -> str:
        return (
            f"LocalCluster({self.scheduler_address!r}, workers={len(self.jobs)}, "
            f"threads={len(self.jobs) * (self.threads_per_worker or 1)}, status={self.status})"
        )


def _checked_worker_options(
    kwargs: dict[str, Any],
    worker_kwargs: dict[str, Any] | None,
    worker_class: type | None,
    processes: bool,
) -> dict[str, Any]:
    """The worker options among dask's ``LocalCluster`` keywords (no-ops dropped, refusals
    raised: ``shoal.cluster_options``), checked against the worker's constructor."""
    check_cluster_kwargs(kwargs)
    options = {k: v for k, v in kwargs.items() if k not in NO_OPS and k not in REFUSED}
    options.update(worker_kwargs or {})
    check_worker_kwargs(options, worker_class or Worker)
    if worker_class is not None and processes and worker_class.__name__ not in ("Worker", "Nanny"):
        raise NotImplementedError(
            "LocalCluster(worker_class=...) with processes=True: worker processes run "
            "shoal's Worker under a Nanny; use processes=False for a Worker subclass"
        )
    return options
