"""``Cluster``: what every deployment (local, SSH, SLURM, PBS) shares.

Rules of this file:

* A cluster is a scheduler plus *jobs*; a job starts ``processes`` workers named
  ``<job>`` (one) or ``<job>-<i>`` (several), so the scheduler's workers map back to jobs
  by name. Subclasses say how a job starts and stops (``new_job``) and where the
  scheduler is; everything else (scale, adapt, waiting, logs) lives here once.
* The cluster talks to its scheduler only by rpc, whether it runs in this process or on
  another machine.
* Scaling down retires workers gracefully first (the scheduler copies every key only
  they hold), and only then stops their jobs: no unique result is lost.
* Every method is a coroutine underneath; with ``asynchronous=False`` the public ones run
  on the shared shoal loop and block.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from shoal import loop as shared_loop
from shoal.comm import Security
from shoal.comm.pool import CONFIGURED, ConnectionPool
from shoal.errors import ShoalTimeoutError
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler import (
    SchedulerGetLogs,
    SchedulerIdentity,
    SchedulerNthreads,
    SchedulerRetireWorkers,
    SchedulerSchedulerInfo,
    SchedulerWaitForWorkers,
    SchedulerWorkersToClose,
)
from shoal.sizes import parse_bytes, parse_timedelta

if TYPE_CHECKING:
    from shoal.client.client import Client
    from shoal.deploy.adaptive import Adaptive

logger = logging.getLogger("shoal.deploy")
#: seconds between two looks at a job that cannot tell its own failure (ssh, batch)
FAILURE_CHECK_INTERVAL = 0.1
T = TypeVar("T")
#: the reply an rpc struct declares
R = TypeVar("R")


class Job:
    """One unit a cluster starts and stops: a process, an ssh session, a batch job."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:
        """Launch it (returns once launched, not once its workers joined)."""

    async def close(self) -> None:
        """Stop it and everything it started; safe to call twice."""

    def failure(self) -> str | None:
        """Why it stopped before its workers joined; None while it is fine."""
        return None

    async def wait_failure(self) -> str:
        """Return ``failure()`` once there is one. Jobs that learn of their end by an
        event override this; the default looks every ``FAILURE_CHECK_INTERVAL``."""
        while True:
            failure = self.failure()
            if failure is not None:
                return failure
            await asyncio.sleep(FAILURE_CHECK_INTERVAL)

    def logs(self) -> str:
        """Its output so far, for ``Cluster.get_logs``."""
        return ""

    def owns(self, worker_name: str) -> bool:
        """Whether the scheduler's worker ``worker_name`` runs in this job."""
        return worker_name == self.name or worker_name.startswith(self.name + "-")


class Cluster:
    """A scheduler and jobs running workers; subclasses say how jobs start."""

    #: worker processes one job starts
    processes: int = 1
    #: job names are ``<job_prefix>-<n>``
    job_prefix: str = "job"

    def __init__(self, *, security: Security, asynchronous: bool = False) -> None:
        self.security = security
        self.asynchronous = asynchronous
        self.status = "created"
        #: running jobs by name
        self.jobs: dict[str, Job] = {}
        self._job_numbers = itertools.count()
        self._pool: ConnectionPool | None = None
        self._adaptive: Adaptive | None = None
        self._dashboard: str | None = None
        self._scale_lock: asyncio.Lock | None = None

    # -- what subclasses provide ------------------------------------------------------------
    @property
    def scheduler_address(self) -> str:
        raise NotImplementedError

    def new_job(self, name: str) -> Job:
        """A job (not started yet) that runs ``processes`` workers named after ``name``."""
        raise NotImplementedError

    async def _start(self) -> None:
        """Start the scheduler (and the first jobs); sets ``status = "running"``."""
        raise NotImplementedError

    async def _close_scheduler(self) -> None:
        """Stop the scheduler (after every job was stopped)."""

    #: what one job offers, for ``scale(cores=, memory=)``; 0: unknown
    job_cores: int = 0
    job_memory: int = 0
    #: threads per worker, for adaptive targets (None: as the scheduler measures)
    threads_per_worker: int | None = None

    # -- the synchronous face ---------------------------------------------------------------
    def _sync(self, coro: Coroutine[Any, Any, T]) -> Any:
        """``coro`` itself when asynchronous, else its result (run on the shared loop)."""
        if self.asynchronous:
            return coro
        return shared_loop.run_sync(coro)

    def __await__(self) -> Any:
        async def start() -> Cluster:
            await self._start()
            return self

        return start().__await__()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    # -- rpc to the scheduler ---------------------------------------------------------------
    async def scheduler_call(
        self, rpc: Rpc[R], /, *, reply_timeout: float | None = CONFIGURED
    ) -> R:
        """One rpc to the scheduler: ``await cluster.scheduler_call(SchedulerNthreads())``
        (no reply within ``reply_timeout``, default the configured one: ShoalTimeoutError)."""
        if self._pool is None:
            self._pool = ConnectionPool(security=self.security, role="client", name="cluster")
        return await self._pool.call(self.scheduler_address, rpc, reply_timeout=reply_timeout)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address, as the scheduler reports it (None: no dashboard)."""
        return self._dashboard

    async def _learn_dashboard(self) -> None:
        self._dashboard = (await self.scheduler_call(SchedulerIdentity())).get("dashboard")

    # -- scale ------------------------------------------------------------------------------
    def scale(
        self,
        n: int | None = None,
        *,
        jobs: int | None = None,
        memory: str | int | None = None,
        cores: int | None = None,
    ) -> Any:
        """Scale to ``n`` workers, or ``jobs`` jobs, or enough jobs for ``memory`` bytes or
        ``cores`` cores. Down is by graceful retirement."""
        return self._sync(self._scale(self.jobs_for(n, jobs=jobs, memory=memory, cores=cores)))

    def jobs_for(
        self,
        n: int | None = None,
        *,
        jobs: int | None = None,
        memory: str | int | None = None,
        cores: int | None = None,
    ) -> int:
        """How many jobs one ``scale(...)`` request means."""
        given = [x for x in (n, jobs, memory, cores) if x is not None]
        if len(given) != 1:
            raise TypeError("scale() takes exactly one of n, jobs=, memory= or cores=")
        if jobs is not None:
            count = jobs
        elif n is not None:
            count = math.ceil(n / self.processes)
        elif memory is not None:
            if not self.job_memory:
                raise ValueError(f"{type(self).__name__} does not know its jobs' memory")
            count = math.ceil(parse_bytes(memory) / self.job_memory)
        else:
            if not self.job_cores:
                raise ValueError(f"{type(self).__name__} does not know its jobs' cores")
            count = math.ceil((cores or 0) / self.job_cores)
        if count < 0:
            raise ValueError(f"cannot scale to a negative size ({count} jobs)")
        return int(count)

    async def _scale(self, n_jobs: int, *, idle_only: bool = False) -> None:
        """Start or stop jobs until there are ``n_jobs``. ``idle_only`` (adaptive): stop
        only jobs whose workers run nothing, fewer if there are not enough."""
        if self._scale_lock is None:
            self._scale_lock = asyncio.Lock()
        async with self._scale_lock:
            if n_jobs > len(self.jobs):
                await self._add_jobs(n_jobs - len(self.jobs))
            elif n_jobs < len(self.jobs):
                await self._remove_jobs(
                    len(self.jobs) - n_jobs, to_zero=n_jobs == 0, idle_only=idle_only
                )

    async def _add_jobs(self, count: int) -> None:
        """Start ``count`` new jobs at once; one that fails to start is closed again and
        its error raised once the others are in. Jobs are listed while they start, so
        that closing the cluster meanwhile stops them too."""
        new = [self.new_job(f"{self.job_prefix}-{next(self._job_numbers)}") for _ in range(count)]
        self.jobs.update((job.name, job) for job in new)
        results = await asyncio.gather(*(job.start() for job in new), return_exceptions=True)
        errors: list[BaseException] = []
        for job, result in zip(new, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(result)
                self.jobs.pop(job.name, None)
                await asyncio.gather(job.close(), return_exceptions=True)
        if errors:
            raise errors[0]

    async def _remove_jobs(self, count: int, *, to_zero: bool, idle_only: bool) -> None:
        info = await self.scheduler_call(SchedulerSchedulerInfo())
        by_job = self._workers_by_job(info["workers"])
        ranking = await self.scheduler_call(
            SchedulerWorkersToClose(n=len(info["workers"]), idle_only=idle_only)
        )
        order = {address: i for i, address in enumerate(ranking)}
        candidates = [
            job for job in self.jobs if not idle_only or all(a in order for a in by_job[job])
        ]
        # jobs none of whose workers joined yet go first; then the cheapest to retire
        chosen = sorted(
            candidates,
            key=lambda job: max((order.get(a, -1) for a in by_job[job]), default=-2),
        )[:count]
        # one call for all: the state knows every worker retiring with each one
        # (``also_retiring``), so it never copies a key onto a worker that is leaving too
        leaving = [a for job in chosen for a in by_job[job]]
        refused: list[str] = []
        if leaving:
            result = await self.scheduler_call(SchedulerRetireWorkers(workers=leaving))
            refused = list(result["refused"])
        for job in chosen:
            if refused and not to_zero and set(by_job[job]) & set(refused):
                logger.warning("keeping job %s: its workers hold data no one else can", job)
                continue
            await self.jobs.pop(job).close()

    def _workers_by_job(self, workers: dict[str, Any]) -> dict[str, list[str]]:
        by_job: dict[str, list[str]] = {name: [] for name in self.jobs}
        for address, record in workers.items():
            for name, job in self.jobs.items():
                if job.owns(str(record["name"])):
                    by_job[name].append(address)
        return by_job

    def adapt(
        self,
        minimum: int = 0,
        maximum: float = math.inf,
        target_duration: str | float = "5s",
        wait_count: int = 3,
        interval: str | float = "1s",
    ) -> Adaptive:
        """Let the scheduler's target decide the size, between ``minimum`` and ``maximum``
        workers. Down only after ``wait_count`` suggestions in a row, by retirement."""
        from shoal.deploy.adaptive import Adaptive

        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = Adaptive(
            self,
            minimum=minimum,
            maximum=maximum,
            target_duration=parse_timedelta(target_duration),
            wait_count=wait_count,
            interval=parse_timedelta(interval),
        )
        self._adaptive.start(shared_loop.get_loop() if not self.asynchronous else None)
        return self._adaptive

    # -- waiting, clients, logs ---------------------------------------------------------------
    def wait_for_workers(self, n: int, timeout: str | float = "60s") -> Any:
        """Return once ``n`` workers joined; raise if a job failed or ``timeout`` passed."""
        return self._sync(self._wait_for_workers(n, parse_timedelta(timeout)))

    async def _wait_for_workers(self, n: int, timeout: float) -> None:
        """Ask the scheduler to answer once ``n`` workers joined (it answers when its state
        changes), while any job failing ends the wait with that failure."""
        joined = asyncio.ensure_future(
            self.scheduler_call(
                SchedulerWaitForWorkers(n=n, timeout=timeout), reply_timeout=timeout + 5.0
            )
        )
        failures = [
            asyncio.ensure_future(self._named_failure(job)) for job in list(self.jobs.values())
        ]
        try:
            await asyncio.wait([joined, *failures], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (joined, *failures):
                waiter.cancel()
            await asyncio.gather(joined, *failures, return_exceptions=True)
        if joined.done() and not joined.cancelled():
            try:
                joined.result()
                return
            except TimeoutError:
                raise ShoalTimeoutError(
                    f"only {len(await self.scheduler_call(SchedulerNthreads()))} of {n} "
                    f"workers joined {self.scheduler_address} within {timeout}s"
                ) from None
        raise RuntimeError(next(f.result() for f in failures if f.done() and not f.cancelled()))

    async def _named_failure(self, job: Job) -> str:
        return f"job {job.name} failed: {await job.wait_failure()}"

    def get_client(self) -> Client:
        """A client of this cluster."""
        from shoal.client.client import Client

        return Client(self, asynchronous=self.asynchronous)

    def get_logs(self) -> Any:
        """The scheduler's latest log lines and each job's output, by name."""
        return self._sync(self._get_logs())

    async def _get_logs(self) -> dict[str, str]:
        records = await self.scheduler_call(SchedulerGetLogs())
        logs = {"Scheduler": "\n".join(" ".join(map(str, record)) for record in records)}
        logs.update({name: job.logs() for name, job in self.jobs.items()})
        return logs

    # -- close ------------------------------------------------------------------------------
    def close(self) -> Any:
        if self.asynchronous:
            return self._close()
        if self.status not in ("closing", "closed"):
            shared_loop.run_sync(self._close())
        return None

    async def _close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        if self._adaptive is not None:
            self._adaptive.stop()
        try:
            await self._close_scheduler()
        finally:
            await asyncio.gather(*(job.close() for job in self.jobs.values()))
            self.jobs.clear()
            if self._pool is not None:
                await self._pool.close()
            self.status = "closed"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.scheduler_address!r}, jobs={len(self.jobs)}, "
            f"status={self.status})"
        )
