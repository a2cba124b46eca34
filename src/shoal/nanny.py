"""Nanny: supervises one worker process; restarts it when it dies or grows too big.

Rules of this file:

* The worker is a child process started with ``subprocess`` (a fresh interpreter running
  ``python -m shoal worker ... --no-nanny --nanny-address ADDR``), never a daemonic
  ``multiprocessing`` child, so tasks may start processes of their own.
* The environment is set before spawning: allocators and BLAS libraries read it once,
  at start-up (``MALLOC_TRIM_THRESHOLD_`` gives freed memory back to the system).
* A worker closes on request only through ``Worker.close`` (the scheduler's ``close``,
  ``close_gracefully``, the end of its lifetime, a signal): on that path it first calls
  this nanny's ``worker_closing`` rpc with its pid and exit code. Exit code 0 *with* that
  call is the worker's own decision: the nanny closes too. Exit code 0 *without* it (a
  task called ``os._exit(0)``) is a death like any other: the code alone never decides.
* ``RESTART_EXIT_CODE`` is a worker that retired at the end of its lifetime and asks for
  a fresh successor (``lifetime_restart``): started at once. ``SCHEDULER_LOST_EXIT_CODE``
  is a worker that could not reach its scheduler within ``death_timeout``: the nanny
  closes too, with a non-zero ``exit_code`` (restarting could not help); so does
  ``REFUSED_EXIT_CODE``, a worker the scheduler refused at the handshake (wrong token or
  certificate: the next one would be refused too).
* Anything else is a death: it is reported to the scheduler with its reason and a new
  worker is started. Only deaths before the worker registered ("dying at start") grow
  the pause before the next start; a running worker that is killed is restarted at once.
* Past ``terminate_fraction`` of ``memory_limit`` (RSS) the worker is stopped (SIGTERM,
  then SIGKILL) and restarted; the reason says so.
* Closing the nanny stops its worker (SIGTERM, then SIGKILL): no orphans. A nanny that
  dies, even by SIGKILL, takes its worker along: the worker asks for a parent-death
  signal itself at start (``--nanny-pid``, ``shoal.worker.parent_death``).
* A nanny is a server like any other: in a ``shoal worker`` process of its own, or on a
  ``LocalCluster``'s loop in the user's process (then that process is the workers'
  parent, and one interpreter start is saved per worker).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from shoal import inherited_settings
from shoal.cluster_options import WORKER_OPTIONS_ENV
from shoal.comm import Comm, Security
from shoal.comm.hostaddr import Bind
from shoal.comm.security import child_environ
from shoal.nanny_plugins import NannyExtras
from shoal.protocol.rpc_scheduler_workers import SchedulerWorkerDied
from shoal.protocol.rpc_workers import (
    NannyKill,
    NannyRestart,
    NannyTerminate,
    NannyWorkerClosing,
    NannyWorkerReady,
)
from shoal.server import Server
from shoal.worker.local_dir import remove_directory_of_dead_worker, remove_stale_directories
from shoal.worker.memory import parse_memory_limit
from shoal.worker.options import (
    FROM_CONFIG,
    DataOption,
    Duration,
    ExecutorOption,
    Fraction,
    FromConfig,
    ServicesOption,
    process_options,
)
from shoal.worker.running import RunningReader

logger = logging.getLogger("shoal.nanny")

#: environment set for the worker process, unless the user's environment says otherwise
WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
#: seconds between two looks at the worker's memory
MEMORY_CHECK_INTERVAL = 0.1
#: seconds a worker stopped for memory has to exit after SIGTERM (memory is short: not long)
MEMORY_KILL_GRACE = 2.0
#: first and longest pause before restarting a worker that keeps dying young
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the worker process is started with (CLI options of ``shoal worker``)."""

    nthreads: int = 1
    name: str | None = None
    memory_limit: int = 0
    resources: str = ""
    local_directory: str | None = None
    lifetime: str | None = None
    lifetime_stagger: str = "0s"
    lifetime_restart: bool = False
    host: str = "127.0.0.1"
    log_level: str = "warning"
    #: a port or a range "9000:9010"
    worker_port: str = "0"
    interface: str | None = None
    listen_address: str | None = None
    contact_address: str | None = None
    #: modules the worker imports at start (``shoal_setup(worker)``)
    preload: tuple[str, ...] = ()


#: exit code of a worker that retired at the end of its lifetime and wants a successor
RESTART_EXIT_CODE = 75
#: exit code of a worker that could not reach its scheduler within ``death_timeout``
SCHEDULER_LOST_EXIT_CODE = 76
#: exit code of a worker whose scheduler refused it at the handshake (token, certificate)
REFUSED_EXIT_CODE = 77


def death_reason(returncode: int) -> str:
    """``-9`` -> ``"killed by signal 9 (SIGKILL)"``; ``1`` -> ``"exit code 1"``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def restart_delay(young_deaths: int) -> float:
    """Pause before the next start after ``young_deaths`` deaths in a row at start-up."""
    if young_deaths <= 1:  # one early death may be bad luck: restart at once
        return 0.0
    return float(min(BACKOFF_FIRST * 2 ** (young_deaths - 2), BACKOFF_MAX))


def _resources_flag(resources: Mapping[str, float] | str | None) -> str:
    """``{"GPU": 2}`` as the worker's ``--resources`` flag (``"GPU=2"``); text as it is."""
    if isinstance(resources, str) or resources is None:
        return resources or ""
    return " ".join(f"{name}={amount}" for name, amount in resources.items())


class Nanny(Server):
    """Starts a worker process, watches it, and restarts it; rpc: restart, kill, terminate."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str | int | None = None,
        executor: ExecutorOption = None,
        local_directory: str | os.PathLike[str] | None = None,
        services: ServicesOption = None,
        data: DataOption = None,
        memory_limit: str | int | float | None = "auto",
        memory_target_fraction: Fraction | FromConfig = FROM_CONFIG,
        memory_spill_fraction: Fraction | FromConfig = FROM_CONFIG,
        memory_pause_fraction: Fraction | FromConfig = FROM_CONFIG,
        resources: Mapping[str, float] | str | None = None,
        lifetime: Duration | None = None,
        lifetime_stagger: Duration | None = None,
        lifetime_restart: bool = False,
        total_out_connections: int | None = None,
        total_in_connections: int | None = None,
        total_comm_nbytes: int | str | None = None,
        heartbeat_interval: float | None = None,
        security: Security | None = None,
        host: str = "127.0.0.1",
        port: int | str = 0,
        protocol: str | None = None,
        interface: str | None = None,
        worker_port: int | str = 0,
        listen_address: str | None = None,
        contact_address: str | None = None,
        preload: Sequence[str] = (),
        log_level: str = "warning",
        terminate_fraction: float | None = 0.95,
        kill_timeout: float = 10.0,
        death_timeout: float | None = None,
        scheduler_file: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """A nanny that starts (and restarts) a worker process with these options.

        The worker's options mean what they mean for ``Worker`` (see its docstring). They
        cross to the worker process as command-line flags or as JSON, so what cannot be
        sent is refused here with a TypeError: ``executor`` must be a name (or a dict of
        names), ``data`` and ``services`` importable factories, not live objects.
        The worker's ``nanny`` is this nanny's address. The rest: ``terminate_fraction``
        of ``memory_limit`` (RSS) past which the worker is restarted, ``kill_timeout``
        between SIGTERM and SIGKILL, ``death_timeout`` and ``scheduler_file`` for the
        worker's reconnects, ``log_level`` and ``preload`` for the worker process, ``env``
        variables added to its environment (over this process's).
        """
        self.spec = WorkerSpec(
            nthreads=nthreads,
            name=None if name is None else str(name),
            memory_limit=parse_memory_limit(memory_limit, nthreads),
            resources=_resources_flag(resources),
            local_directory=None if local_directory is None else os.fspath(local_directory),
            lifetime=None if lifetime is None else str(lifetime),
            lifetime_stagger=str(lifetime_stagger) if lifetime_stagger is not None else "0s",
            lifetime_restart=lifetime_restart,
            host=host,
            log_level=log_level,
            worker_port=str(worker_port),
            interface=interface,
            listen_address=listen_address,
            contact_address=contact_address,
            preload=tuple(preload),
        )
        #: worker options without a flag, handed to the worker process as JSON
        self.worker_options = process_options(
            executor=executor,
            services=services,
            data=data,
            memory_target_fraction=memory_target_fraction,
            memory_spill_fraction=memory_spill_fraction,
            memory_pause_fraction=memory_pause_fraction,
            total_out_connections=total_out_connections,
            total_in_connections=total_in_connections,
            total_comm_nbytes=total_comm_nbytes,
            heartbeat_interval=heartbeat_interval,
        )
        super().__init__(
            handlers={
                NannyRestart.rpc: self.restart,
                NannyKill.rpc: self.kill,
                NannyTerminate.rpc: self.terminate,
                NannyWorkerReady.rpc: self._worker_ready,
                NannyWorkerClosing.rpc: self._worker_closing,
            },
            security=security if security is not None else Security(token=None),
            role="nanny",
            name=str(self.spec.name or ""),
        )
        self.scheduler_address = scheduler_address
        self.terminate_fraction = terminate_fraction
        #: seconds a worker has to exit after SIGTERM before it gets SIGKILL
        self.kill_timeout = kill_timeout
        #: seconds the worker keeps trying to reach a lost scheduler (``--death-timeout``);
        #: None: for ever, as in dask (then the nanny outlives any scheduler outage)
        self.death_timeout = death_timeout
        # the nanny binds to the worker's host or NIC; listen/contact addresses are the worker's
        self._bind = Bind(protocol, host, port, interface)
        #: passed on to the worker, which reads the scheduler's address from it again
        self.scheduler_file = scheduler_file
        #: pid -> exit code, for workers that said they are closing on request
        self._closing: dict[int, int] = {}
        #: this process's exit code once closed (non-zero: the scheduler was lost)
        self.exit_code = 0
        self.process: asyncio.subprocess.Process | None = None
        #: the address of the current worker, once it said it is ready
        self.worker_address: str | None = None
        self._ready = asyncio.Event()
        #: (pid, reader) of the running-keys file of our worker process, once it is ready
        self._running: tuple[int, RunningReader] | None = None
        #: deaths in a row before the worker registered (drives the back-off)
        self._young_deaths = 0
        #: reasons of the deaths of our workers, newest last
        self.deaths: list[str] = []
        #: variables added to the worker's environment (``env=``, the ``Environ`` plugin)
        self.extra_environ: dict[str, str] = dict(env or {})
        #: NannyPlugins and ``Client.run(nanny=True)`` (shoal.nanny_plugins)
        self.extras = NannyExtras(self)
        self.handlers.update(self.extras.handlers())

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.listen_any(
            self._bind.addresses(self.security.uses_tls), self._bind.contact_address
        )
        self.status = "running"
        await self._start_worker()
        if self.terminate_fraction and self.spec.memory_limit:
            self.periodic(self._check_memory, MEMORY_CHECK_INTERVAL, "nanny-memory")
        logger.info("nanny %s started worker pid %s", self.address, self.pid)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _command(self) -> list[str]:
        spec = self.spec
        cmd = [
            sys.executable, "-m", "shoal", "worker", self.scheduler_address,
            "--no-nanny", "--nanny-address", self.address, "--nanny-pid", str(os.getpid()),
            "--host", spec.host,
            "--nthreads", str(spec.nthreads), "--memory-limit", str(spec.memory_limit),
            "--lifetime-stagger", spec.lifetime_stagger, "--log-level", spec.log_level,
        ]  # fmt: skip
        for option, value in (
            ("--name", spec.name),
            ("--resources", spec.resources),
            ("--local-directory", spec.local_directory),
            ("--lifetime", spec.lifetime),
            ("--worker-port", spec.worker_port),
            ("--interface", spec.interface),
            ("--listen-address", spec.listen_address),
            ("--contact-address", spec.contact_address),
        ):
            if value:
                cmd += [option, value]
        for module in spec.preload:
            cmd += ["--preload", module]
        if spec.lifetime_restart:
            cmd.append("--lifetime-restart")
        if self.death_timeout is not None:
            cmd += ["--death-timeout", f"{self.death_timeout}s"]
        if self.scheduler_file:
            cmd += ["--scheduler-file", self.scheduler_file]
        if self.security.token is None:
            cmd.append("--no-auth")
        return cmd

    def _environ(self) -> dict[str, str]:
        # the worker gets our token and TLS material (its own certificate only), the
        # variables nanny plugins (``Environ``) set, and its options without a flag
        environ = {
            **WORKER_ENVIRON,
            **os.environ,
            **self.extra_environ,
            **child_environ(self.security, "worker"),
        }
        if self.worker_options:  # over those a LocalCluster gave us (ours are explicit)
            inherited = json.loads(environ.get(WORKER_OPTIONS_ENV) or "{}")
            environ[WORKER_OPTIONS_ENV] = json.dumps({**inherited, **self.worker_options})
        if not inherited_settings.configures(self.extra_environ):
            # resolved here, so that the worker starts without importing dask.config
            from shoal import settings

            environ[inherited_settings.ENV] = json.dumps(settings.worker_start_settings())
        return environ

    async def _start_worker(self) -> None:
        """Spawn a worker and return once it has registered with the scheduler."""
        self._ready.clear()
        self.worker_address = None
        self._forget_running()
        self.process = await asyncio.create_subprocess_exec(*self._command(), env=self._environ())
        self.background(self._watch(self.process), "nanny-watch")
        waiter = asyncio.ensure_future(self._ready.wait())
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait([waiter, exited], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()

    def _worker_ready(
        self,
        comm: Comm,
        address: str,
        pid: int,
        local_directory: str | None = None,
        running_file: str | None = None,
    ) -> str:
        """The worker ``pid`` is up. "mapped": we read its running keys (``running_file``)
        from now on, so it need not tell the scheduler each task it starts."""
        if self.process is None or pid != self.process.pid:
            return "OK"
        self.worker_address = address
        self._ready.set()
        if local_directory:
            self.background(self._clean_up_after(self.process, local_directory), "cleanup")
        if running_file:
            self._forget_running()
            try:  # mapped now, it stays readable after the worker's folder is removed
                self._running = (pid, RunningReader(running_file))
            except (OSError, ValueError) as exc:
                logger.info("cannot map the running keys of worker pid %s: %s", pid, exc)
                return "OK"
            return "mapped"
        return "OK"

    def _running_of(self, pid: int | None) -> list[tuple[Any, int]] | None:
        """What the worker ``pid`` was running (read after it died); None: not known."""
        if self._running is None or self._running[0] != pid:
            return None
        return self._running[1].running()

    def _forget_running(self) -> None:
        if self._running is not None:
            self._running[1].close()
            self._running = None

    async def _clean_up_after(self, process: asyncio.subprocess.Process, directory: str) -> None:
        """Once the worker process is gone, however it ended, remove its local directory
        (a SIGKILLed worker cannot; its spilled data would stay on disk forever)."""
        await process.wait()
        await asyncio.to_thread(remove_directory_of_dead_worker, directory)

    def _worker_closing(self, comm: Comm, pid: int, exit_code: int = 0) -> str:
        """The worker ``pid`` is closing on request and will exit with ``exit_code``."""
        self._closing[int(pid)] = int(exit_code)
        return "OK"

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """Wait for the worker to exit; close if it closed on request, else restart."""
        code = await process.wait()
        announced = self._closing.pop(process.pid, None)
        # a worker killed before it said where its directory is (worker_ready) leaves one
        # that nobody else would remove: sweep the dead ones beside it
        parent = self.spec.local_directory or tempfile.gettempdir()
        await asyncio.to_thread(remove_stale_directories, parent)
        if process is not self.process or self.status != "running":
            return  # stopped on purpose (restart, kill, close)
        if code == 0 and announced == 0:
            logger.info("worker pid %s closed; nanny %s closes too", process.pid, self.address)
            self.background(self.close(), "nanny-close")
            return
        if code == RESTART_EXIT_CODE:
            logger.info("worker pid %s retired for a successor; restarting", process.pid)
            await self._start_worker()
            return
        if code == SCHEDULER_LOST_EXIT_CODE:
            logger.warning("worker pid %s lost its scheduler for good; nanny closes", process.pid)
            self.exit_code = 1
            self.background(self.close(), "nanny-close")
            return
        if code == REFUSED_EXIT_CODE:
            logger.error(
                "the scheduler refused worker pid %s (see its log); restarting cannot help: "
                "nanny closes",
                process.pid,
            )
            self.exit_code = 1
            self.background(self.close(), "nanny-close")
            return
        reason = death_reason(code)
        if code == 0:
            reason += " without being asked to close"
        running = self._running_of(process.pid)
        await self._died(reason, registered=self.worker_address is not None, running=running)

    async def _died(
        self, reason: str, registered: bool, running: list[tuple[Any, int]] | None = None
    ) -> None:
        address = self.worker_address
        self.deaths.append(reason)
        logger.warning("worker %s (nanny %s) died: %s", address, self.address, reason)
        await self._report(address, reason, running)
        self._young_deaths = 0 if registered else self._young_deaths + 1
        delay = restart_delay(self._young_deaths)
        if delay:
            logger.warning("worker keeps dying at start; restarting in %.1fs", delay)
            await asyncio.sleep(delay)
        if self.status == "running":
            await self._start_worker()

    async def _report(
        self, address: str | None, reason: str, running: list[tuple[Any, int]] | None = None
    ) -> None:
        """Tell the scheduler why the worker died (it blames tasks with this reason), and
        what it was running if we know (those, and only those, are blamed)."""
        try:
            died = SchedulerWorkerDied(
                address=address,
                nanny=self.address,
                reason=reason,
                running=None if running is None else tuple(running),
            )
            await self.pool.call(self.scheduler_address, died)
        except Exception as exc:  # the scheduler may be gone: nothing to tell then
            logger.info("could not report a worker death to the scheduler: %s", exc)

    # -- memory ------------------------------------------------------------------------------
    async def _check_memory(self) -> None:
        process = self.process
        if process is None or process.returncode is not None or self.status != "running":
            return
        try:
            rss = psutil.Process(process.pid).memory_info().rss
        except psutil.Error:
            return  # it just exited: _watch handles that
        assert self.terminate_fraction is not None
        limit = self.spec.memory_limit
        if rss <= self.terminate_fraction * limit:
            return
        reason = (
            f"memory: RSS {rss} bytes exceeded {self.terminate_fraction:.0%} "
            f"of the {limit} bytes memory limit"
        )
        self.process = None  # so that _watch does not see a death of its own
        await self._report(self.worker_address, reason, self._running_of(process.pid))
        await self._stop_process(process, MEMORY_KILL_GRACE)
        self.deaths.append(reason)
        logger.warning("worker %s stopped: %s", self.worker_address, reason)
        await self._start_worker()

    # -- stopping ----------------------------------------------------------------------------
    async def _stop_process(
        self, process: asyncio.subprocess.Process, grace: float | None = None
    ) -> None:
        """SIGTERM, then SIGKILL after ``grace`` (default ``kill_timeout``); returns once
        it is gone."""
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace or self.kill_timeout)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _stop_worker(self) -> None:
        process, self.process = self.process, None
        self.worker_address = None
        if process is not None:
            await self._stop_process(process)

    async def restart(self, comm: Comm | None = None) -> str:
        """Stop the worker and start a fresh one; returns once it has registered."""
        await self._stop_worker()
        self._young_deaths = 0
        await self._start_worker()
        return "OK"

    async def kill(self, comm: Comm | None = None) -> str:
        """Stop the worker; the nanny stays up (``restart`` starts one again)."""
        await self._stop_worker()
        return "OK"

    async def terminate(self, comm: Comm | None = None) -> str:
        """Stop the worker and close the nanny."""
        self.background(self.close(), "nanny-terminate")
        return "OK"

    async def _shutdown(self) -> None:
        await self._stop_worker()
        self._forget_running()
        # our worker is gone: sweep its folder and those of dead workers beside it (a node
        # lost before ours may have left some that no worker started since could remove)
        parent = self.spec.local_directory or tempfile.gettempdir()
        await asyncio.to_thread(remove_stale_directories, parent)
        await super()._shutdown()

    def __repr__(self) -> str:
        return f"<Nanny {self.address!r} worker pid {self.pid} status {self.status}>"


__all__ = [
    "REFUSED_EXIT_CODE",
    "RESTART_EXIT_CODE",
    "SCHEDULER_LOST_EXIT_CODE",
    "Nanny",
    "WorkerSpec",
    "death_reason",
    "restart_delay",
]
