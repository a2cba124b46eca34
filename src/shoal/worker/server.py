"""Worker: the IO shell around ``WorkerState``.

Rules of this file:

* All bookkeeping lives in the pure ``WorkerState``; this shell turns messages, finished
  threads and finished transfers into events, feeds them in batches, and carries out the
  instructions that come back. It decides nothing about tasks itself.
* One batched stream to the scheduler carries everything task-related, both ways.
* Bulk data moves peer to peer through ``get_data``; the scheduler only says who has what.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any, TypeVar

import msgspec

from shoal import inherited_settings
from shoal._types import Address, Key
from shoal.comm import BatchedStream, Comm, Security, connect, get_address_host
from shoal.comm.core import DEFAULT_CONFIG
from shoal.comm.hostaddr import Bind
from shoal.comm.rpc import ok_reply
from shoal.comm.shm import SharedMemoryTransfers
from shoal.config import CommConfig
from shoal.errors import CommError, SerializationError
from shoal.http.listen import listening_socket
from shoal.http.records import TransferLog
from shoal.log_limit import RepeatLimiter
from shoal.logs import MemoryLogHandler
from shoal.nanny import RESTART_EXIT_CODE, SCHEDULER_LOST_EXIT_CODE
from shoal.protocol import ops
from shoal.protocol.messages import wire_safe
from shoal.protocol.ops import to_msg
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler_workers import SchedulerRegisterWorker, SchedulerRetireWorkers
from shoal.protocol.rpc_workers import (
    NannyWorkerClosing,
    NannyWorkerReady,
    WorkerClose,
    WorkerGetData,
    WorkerGetLogs,
    WorkerKeys,
    WorkerRun,
    WorkerStory,
    WorkerUpdateData,
)
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.server import Server
from shoal.stimulus import new_stimulus_id
from shoal.worker import events as ev
from shoal.worker import instructions as ins
from shoal.worker import reconnect, running, wire
from shoal.worker.actors import actor_handlers, drop_actor, shutdown_actors
from shoal.worker.execute import TaskRunner, error_info, sizeof, thread_state
from shoal.worker.extras import WorkerExtras
from shoal.worker.local_dir import LocalDirectory
from shoal.worker.memory import parse_memory_limit
from shoal.worker.monitor import MONITOR_INTERVAL, MemoryMonitor, MemoryThresholds
from shoal.worker.options import (
    FROM_CONFIG,
    DataOption,
    Duration,
    ExecutorOption,
    Executors,
    Fraction,
    FromConfig,
    ServicesOption,
    data_factory,
    make_executors,
    start_services,
    worker_config,
)
from shoal.worker.spill import SpillBuffer, make_data, task_inputs, wait_for_spill_writes
from shoal.worker.state import WorkerState
from shoal.worker.state_view import WorkerStateView
from shoal.worker.transfer import is_network_failure, unsendable_of, values_for_peer
from shoal.worker.warm_imports import import_task_modules

logger = logging.getLogger("shoal.worker")
#: the reply an rpc struct declares
R = TypeVar("R")
#: fetch failures can repeat many times a second: each distinct line once per interval
_repeats = RepeatLimiter()

#: seconds between two requests to retire while the scheduler refuses
RETIRE_RETRY_DELAY = 1.0
#: seconds to wait before asking a busy peer again
BUSY_RETRY_DELAY = 0.15
#: seconds our nanny has to acknowledge that we close on request
NANNY_CALL_TIMEOUT = 5.0


class Worker(Server, WorkerStateView):
    """Holds data, runs tasks, fetches missing inputs from peers, keeps the scheduler informed.

    The seed's attributes owned by the state machine (``tasks``, ``ready``, ``nbytes``...)
    are read-only properties of ``WorkerStateView``.
    """

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
        resources: Mapping[str, float] | None = None,
        nanny: str | None = None,
        lifetime: Duration | None = None,
        lifetime_stagger: Duration | None = None,
        lifetime_restart: bool | None = None,
        total_out_connections: int | None = None,
        total_in_connections: int | None = None,
        total_comm_nbytes: int | str | None = None,
        heartbeat_interval: float | None = None,
        death_timeout: float | None = None,
        scheduler_file: str | None = None,
        validate: bool | None = None,
        shared_memory: bool | None = None,
        security: Security | None = None,
        host: str = "127.0.0.1",
        port: int | str = 0,
        protocol: str | None = None,
        interface: str | None = None,
        listen_address: str | None = None,
        contact_address: str | None = None,
        comm_config: CommConfig = DEFAULT_CONFIG,
        http_port: int | None = 0,
    ) -> None:
        """A worker of the scheduler at ``scheduler_address`` (started by ``await start()``).

        The seed's parameters:

        * ``nthreads``: threads running tasks. ``name``: an alias (default: the address).
        * ``executor``: a ``concurrent.futures.Executor``, ``"threads"``/``"default"`` (a
          pool of ``nthreads``), ``"offload"`` (one thread shared by the process), or a dict
          of those by name; tasks annotated ``executor="NAME"`` run on that one.
        * ``local_directory``: where spill files and other local resources go.
        * ``services``: ``{name: factory}``, ``await factory(worker)`` starts an auxiliary
          server with a ``port`` and ``async stop()`` (``worker.service_ports[name]``).
        * ``data``: the mapping for ``worker.data``, a factory of one, or (factory, kwargs);
          default: a disk-backed buffer (``data.memory``/``data.disk``) when there is a
          memory limit and a target or spill fraction.
        * ``memory_limit``: bytes, ``"5GB"``, ``"auto"`` (machine memory * min(1, nthreads
          / cores)), a fraction of machine memory, or 0 for none.
        * ``memory_target_fraction``: keep managed memory below this fraction (spill past
          it); ``memory_spill_fraction``: process memory at which the monitor spills;
          ``memory_pause_fraction``: at which no new task starts. ``False``/``None``: off;
          not given: dask.config (``distributed.worker.memory.*``).
        * ``resources``: abstract resources like ``{"GPU": 2}``.
        * ``nanny``: address of the nanny supervising this worker, if any.
        * ``lifetime``: retire after this long (``"1 hour"``); ``lifetime_stagger``: pick
          the lifetime uniformly in lifetime +/- this; ``lifetime_restart``: have the nanny
          start a fresh worker after it.
        * ``total_out_connections`` / ``total_in_connections``: most concurrent outgoing /
          incoming data requests; ``total_comm_nbytes``: most bytes in flight from peers.
        * ``shared_memory``: hand large buffers to a peer on the same host through shared
          memory instead of the socket (``shoal.worker.shared-memory``, on by default).

        Settings left at None come from dask.config (``shoal.worker.*``); a misspelt
        keyword raises TypeError naming it.
        """
        self.config = worker_config(
            nthreads=nthreads,
            name=name,
            local_directory=local_directory,
            memory_limit=parse_memory_limit(memory_limit, nthreads),
            memory_target_fraction=memory_target_fraction,
            memory_spill_fraction=memory_spill_fraction,
            memory_pause_fraction=memory_pause_fraction,
            resources=resources,
            nanny=nanny,
            lifetime=lifetime,
            lifetime_stagger=lifetime_stagger,
            lifetime_restart=lifetime_restart,
            total_out_connections=total_out_connections,
            total_in_connections=total_in_connections,
            total_comm_nbytes=total_comm_nbytes,
            heartbeat_interval=heartbeat_interval,
            death_timeout=death_timeout,
            scheduler_file=scheduler_file,
            validate=validate,
            shared_memory=shared_memory,
        )
        super().__init__(
            handlers=self._rpc_handlers(),
            security=security if security is not None else Security(token=None),
            role="worker",
            name=str(self.config.name or ""),
            config=comm_config,
        )
        self.scheduler_address = scheduler_address
        #: port of the HTTP service (/health, /metrics) on this worker's host; None: none
        self.http_port = http_port
        self._bind = Bind(protocol, host, port, interface, listen_address, contact_address)
        #: auxiliary servers to start with the worker (``services=``), by name
        self._service_factories = dict(services or {})
        self._init_state(make_executors(executor, self.config.nthreads))
        self.data: MutableMapping[Key, Any] = make_data(
            data_factory(data), os.path.join(self.local_directory, "storage"), self.config
        )
        thresholds = MemoryThresholds.from_config(self.config)
        self.runner.before_run = wait_for_spill_writes(
            self.data, self.config.spill_writes_wait, thresholds.write_behind
        )
        if self.nanny:  # the nanny reads what runs from this file after a death
            path = os.path.join(self.local_directory, running.FILE_NAME)
            self.runner.running = running.RunningFile(path)
        self.shm = SharedMemoryTransfers(self.config.shared_memory)
        #: set once the task modules are imported (``start``); the scheduler stream waits
        self._warm = asyncio.Event()
        self.memory_monitor = MemoryMonitor(thresholds, self.data)
        self.state = self._new_state()
        #: plugins, run with dask's options, call stacks, profiles (shoal.worker.extras)
        self.extras = WorkerExtras(self)
        self.handlers.update(self.extras.handlers())

    def _new_state(self) -> WorkerState:
        """The state machine; its ``address`` is set once the worker listens."""
        cfg = self.config
        return WorkerState(
            address="",
            nthreads=cfg.nthreads,
            resources=cfg.resources,
            total_out_connections=cfg.total_out_connections,
            total_comm_nbytes=cfg.total_comm_nbytes,
            validate=cfg.validate,
            memory_target=self.memory_monitor.thresholds.target,
        )

    def _init_state(self, executors: Executors) -> None:
        cfg = self.config
        self.nthreads = cfg.nthreads
        self.memory_limit = cfg.memory_limit
        self.memory_target_fraction = cfg.memory_target_fraction
        self.memory_spill_fraction = cfg.memory_spill_fraction
        self.memory_pause_fraction = cfg.memory_pause_fraction
        self.resources = dict(cfg.resources)
        self.nanny = cfg.nanny
        self.total_out_connections = cfg.total_out_connections
        self.total_in_connections = cfg.total_in_connections
        self.total_comm_nbytes = cfg.total_comm_nbytes
        self.services: dict[str, Any] = {}
        self.service_ports: dict[str, int] = {}
        #: the HTTP service's socket, bound before registering and served after it
        self._http_socket: socket.socket | None = None
        self.batched_stream: BatchedStream | None = None
        self.status = "init"
        self._in_connections = 0
        #: this worker's recent log records, read by ``get_logs``
        self.log_handler = MemoryLogHandler()
        self._logs = self.log_handler.records
        #: bytes and transfers to and from peers, and transfers not yet reported
        self.transfer_log = TransferLog()
        self._client: Any = None
        self._client_lock = threading.Lock()
        #: actors living here (``shoal.worker.actors``): key -> the object, never spilled
        self.actors: dict[Key, Any] = {}
        self._closing_gracefully = False
        self._close_requested = False
        #: the scheduler's id for our current registration (fences older ones); None
        #: while not registered
        self.incarnation: int | None = None
        #: the process's exit code once closed (``RESTART_EXIT_CODE``: the nanny starts a
        #: successor after a ``lifetime_restart`` retirement)
        self.exit_code = 0
        # locked with our pid; stale ones of dead workers beside it are removed first
        self._local_dir = LocalDirectory(cfg.local_directory)
        self.local_directory = self._local_dir.path
        #: runs tasks on ``executors`` (attached to the loop in ``start()``)
        self.runner = TaskRunner(cfg.nthreads, None, self._handle_events, self, executors)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def executor(self) -> Executor:
        """The executor tasks run on unless annotated otherwise (``executors["default"]``)."""
        return self.runner.executor

    @property
    def executors(self) -> dict[str, Executor]:
        """Every executor of this worker, by name."""
        return self.runner.executors.by_name

    @property
    def threads(self) -> dict[Key, int]:
        return self.runner.threads

    @property
    def active_threads(self) -> dict[int, Key]:
        return self.runner.active_threads

    @property
    def scheduler(self) -> _Scheduler:
        return _Scheduler(self.scheduler_address, self)

    async def start(self) -> None:
        await self.listen_any(
            self._bind.addresses(self.security.uses_tls), self._bind.contact_address
        )
        cfg = self.config
        if not self.name:
            self.name = self.address
        self.state.address = self.address
        self.runner.attach(asyncio.get_running_loop())
        self._dispatch = self._instruction_table()
        await self._start_http()
        if not await self._reach_scheduler():
            raise CommError(f"worker {self.address}: no scheduler at {self.scheduler_address}")
        await self.extras.setup_registered(self._plugins_at_registration)
        await self._tell_nanny()
        # registered and known to the nanny (LocalCluster() returns) before dask is
        # imported; still on this thread, before the scheduler's first message is handled
        # and any task thread runs: no import races (warm_imports)
        import_task_modules()
        inherited_settings.apply_dask_config()  # the nanny's dask.config, before any task
        self._warm.set()
        self._serve_http_when_asked()
        self.status = "running"
        self.periodic(self._heartbeat, cfg.heartbeat_interval, "heartbeat")
        if self.memory_monitor.thresholds.monitored:
            self.periodic(self._check_memory, MONITOR_INTERVAL, "memory-monitor")
        if cfg.lifetime is not None:
            lifetime = cfg.lifetime + random.uniform(-1, 1) * cfg.lifetime_stagger
            self.background(self._close_after(max(lifetime, 0.0)), "lifetime")
        logger.info("worker %s started with %d threads", self.address, cfg.nthreads)

    async def _reach_scheduler(self) -> bool:
        """Register, trying again with back-off until ``death_timeout``."""
        address = await reconnect.reach_scheduler(
            self._register,
            self.scheduler_address,
            death_timeout=self.config.death_timeout,
            scheduler_file=self.config.scheduler_file,
            is_closing=lambda: self._close_requested or self.status in ("closing", "closed"),
        )
        if address is not None:
            self.scheduler_address = address
        return address is not None

    async def _rejoin(self) -> None:
        """The scheduler's stream ended: keep data and running tasks, register again as
        a new incarnation; past ``death_timeout`` close with a non-zero exit code."""
        forgotten = reconnect.forgotten_on_rejoin(self.state)
        if forgotten:
            self._handle_events(
                [ev.KeysFreed(keys=forgotten, stimulus_id="scheduler-lost", now=time.time())]
            )
        if await self._reach_scheduler():
            logger.info("worker %s rejoined as incarnation %s", self.address, self.incarnation)
            # plugins registered while we were away (those we have are not set up again)
            await self.extras.setup_registered(self._plugins_at_registration)
            return
        if self.status not in ("closing", "closed"):
            logger.error("worker %s: scheduler gone past death_timeout; closing", self.address)
            self.exit_code = SCHEDULER_LOST_EXIT_CODE
            await self.close()

    async def _register(self, address: str) -> None:
        comm = await connect(
            address,
            security=self.security,
            role="worker",
            name=self.name,
            config=self.comm_config,
        )
        try:
            holdings = reconnect.holdings_report(self.state)
            await comm.write(msgspec.structs.replace(self._identity(), **holdings).to_msg())
            reply = await comm.read()
        except BaseException:
            comm.abort()
            raise
        if not isinstance(reply, dict) or reply.get("status") != "OK":
            await comm.close()
            raise CommError(f"scheduler {address} refused worker: {reply!r}")
        self.incarnation = reply.get("incarnation")
        self._plugins_at_registration = dict(reply.get("worker_plugins") or {})
        self.batched_stream = BatchedStream(comm, interval=self.comm_config.batch_interval)
        self.background(self._scheduler_stream(comm), "scheduler-stream")

    async def _tell_nanny(self) -> None:
        """Say to our nanny (if any) that we are up, with our address, pid and the file of
        running keys; once it reads that file, tasks start without a ``task-started``."""
        if self.nanny:
            records = self.runner.running
            reply = await self.pool.call(
                self.nanny,
                NannyWorkerReady(
                    address=self.address,
                    pid=os.getpid(),
                    local_directory=self.local_directory,
                    running_file=None if records is None else records.path,
                ),
            )
            if reply == "mapped":
                self.state.report_started = False

    async def _tell_nanny_closing(self) -> None:
        """Say to our nanny that this exit is on request (see the rules in nanny.py)."""
        if not self.nanny:
            return
        try:
            await asyncio.wait_for(
                self.pool.call(
                    self.nanny, NannyWorkerClosing(pid=os.getpid(), exit_code=self.exit_code)
                ),
                NANNY_CALL_TIMEOUT,
            )
        except Exception as exc:  # it then restarts us: the safe side
            logger.warning("worker %s could not tell its nanny it closes: %s", self.address, exc)

    # -- observability (shoal.http, shoal.logs) ----------------------------------------------
    async def _start_http(self) -> None:
        """Keep our log records; bind the port of the HTTP service (/health, /metrics) and
        start the ``services=`` (all listed in ``services``), before registering: their
        ports go with the registration. The HTTP service itself (aiohttp) is served only
        after it (``_serve_http``): importing it would delay the registration."""
        self.log_handler.attach(["shoal.worker"])
        if self.http_port is not None and self.address.startswith(("tcp://", "tls://")):
            listening = self.listeners[0].address if self.listeners else self.address
            self._http_socket = listening_socket(get_address_host(listening), self.http_port)
            self.service_ports["http"] = int(self._http_socket.getsockname()[1])
        await start_services(self, self._service_factories)

    def _serve_http_when_asked(self) -> None:
        """Serve the HTTP service once a first connection waits on the socket
        ``_start_http`` bound: importing aiohttp and the apps takes ~0.25 s of this loop
        (and 14 MiB), and most workers are never asked. The connection waits in the
        backlog meanwhile."""
        sock = self._http_socket
        if sock is None:
            return
        loop = asyncio.get_running_loop()

        def asked() -> None:
            loop.remove_reader(sock.fileno())
            self.background(self._serve_http_or_log(), "serve-http")

        loop.add_reader(sock.fileno(), asked)

    async def _serve_http_or_log(self) -> None:
        """``_serve_http`` for a request that came: a failure is logged (the socket is
        closed, so requests are refused, not left hanging) and the worker goes on."""
        try:
            await self._serve_http()
        except Exception:
            logger.exception("worker %s could not serve its HTTP service", self.address)

    async def _serve_http(self) -> None:
        """Serve /health and /metrics on the socket ``_start_http`` bound (requests that
        came meanwhile waited in its backlog)."""
        sock, self._http_socket = self._http_socket, None
        if sock is None:
            return
        from shoal.http.apps import start_worker_http

        try:
            self.services["http"] = await start_worker_http(self, sock)
        except BaseException:
            sock.close()
            raise

    async def _stop_http(self) -> None:
        if self._http_socket is not None:  # closed before it was served
            with contextlib.suppress(ValueError, OSError):  # no reader when not started
                asyncio.get_running_loop().remove_reader(self._http_socket.fileno())
            self._http_socket.close()
            self._http_socket = None
        for name in list(self.services):  # ours ("http") and those of ``services=``
            await self.services.pop(name).stop()
        self.log_handler.detach()

    def _record_transfer(self, sender: Address, reply: Mapping[str, Any], start: float) -> None:
        if reply.get("status") == "OK":
            nbytes = sum(int(n) for n in reply.get("nbytes", {}).values())
            self.transfer_log.received(sender, len(reply["data"]), nbytes, start, time.time())

    def _identity(self) -> SchedulerRegisterWorker:
        return SchedulerRegisterWorker(
            address=self.address,
            name=self.name,
            nthreads=self.nthreads,
            memory_limit=self.memory_limit,
            resources=self.resources,
            nanny=self.nanny,
            services=self.service_ports,
            local_directory=self.local_directory,
            pid=os.getpid(),
            worker_plugins=dict(self.extras.plugin_blobs),
        )

    async def _scheduler_stream(self, comm: Comm) -> None:
        await self._warm.wait()  # the task modules are imported (start)
        pending: list[ev.WorkerEvent] = []
        handlers = self._stream_handlers(pending)

        def flush() -> None:
            if pending:
                batch = pending[:]
                pending.clear()
                self._handle_events(batch)

        await self.handle_stream(comm, handlers, on_batch_end=flush)
        if self.status not in ("closing", "closed") and not self._close_requested:
            logger.warning("worker %s lost its scheduler; trying to rejoin", self.address)
            self.incarnation = None
            self.background(self._rejoin(), "rejoin-scheduler")

    async def _close_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        logger.info("worker %s reached its lifetime; closing gracefully", self.address)
        if self.config.lifetime_restart:
            self.exit_code = RESTART_EXIT_CODE
            await self._retire_through_scheduler()
        await self.close_gracefully()

    async def _retire_through_scheduler(self) -> None:
        """Ask the scheduler to retire this worker: it copies the keys only we hold to other
        workers, then tells us to close (ending this task). While it refuses (no other worker
        can take our data yet, e.g. all are retiring at once) we ask again; if the scheduler
        cannot be reached we just close."""
        while True:
            try:
                reply = await self.pool.call(
                    self.scheduler_address, SchedulerRetireWorkers(workers=[self.address])
                )
            except (CommError, OSError) as exc:
                logger.warning(
                    "worker %s could not retire through the scheduler: %s", self.address, exc
                )
                return
            if self.address not in reply.get("refused", ()):
                return
            logger.info("worker %s: retirement refused for now; asking again", self.address)
            await asyncio.sleep(RETIRE_RETRY_DELAY)

    async def close_gracefully(self) -> None:
        self._closing_gracefully = True
        await self.close()

    async def _shutdown(self) -> None:
        """Say goodbye to the scheduler, stop the threads, then close like any server."""
        try:
            await self._close_all()
        finally:  # whatever failed above, the lock file and the directory go
            self._local_dir.release()

    async def _close_all(self) -> None:
        await self._stop_http()
        await self.extras.teardown_all()
        stream = self.batched_stream
        if stream is not None and not stream.closed:
            reason = "graceful" if self._closing_gracefully else "worker-close"
            stream.send(to_msg(ops.Unregister(reason=reason)))
            await stream.close()
        elif stream is not None:
            stream.abort()  # the scheduler closed it: end our flusher task too
        await self._tell_nanny_closing()
        if self._client is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._client.close)
        self.runner.shutdown()  # the running-keys map stays: a task thread may still run
        shutdown_actors(self)
        self.shm.close()
        await super()._shutdown()
        if isinstance(self.data, SpillBuffer):  # stops its writer thread, removes its files
            await asyncio.to_thread(self.data.close)

    # -- events in, instructions out ---------------------------------------------------------
    def _handle_events(self, events: list[ev.WorkerEvent]) -> None:
        if self.status == "closed":
            return
        instructions = self.state.handle_stimulus(*events)
        messages: list[dict[str, Any]] = []
        executes: list[ins.Execute] = []
        dispatch = self._dispatch
        for inst in instructions:
            if isinstance(inst, ins.SendToScheduler):
                messages.append(to_msg(wire.to_op(inst)))
            elif isinstance(inst, ins.Execute):
                executes.append(inst)
            else:
                dispatch[type(inst)](inst)
        stream = self.batched_stream
        if messages and stream is not None and not stream.closed:
            stream.send(*messages)
        if executes:
            self._execute_after_flush(executes)
        self.runner.prune(self.state.tasks)

    def _execute_after_flush(self, executes: list[ins.Execute]) -> None:
        """Run tasks only once their ``task-started`` is handed to the connection: if a task
        then kills this process, the scheduler knows exactly which task was running and
        blames only it. ``flush_now`` is synchronous, so this costs a write, not a wait.
        With a nanny reading the running keys (``shoal.worker.running``) there is no
        ``task-started`` and nothing to wait for."""
        stream = self.batched_stream
        if self.state.report_started and stream is not None and not stream.closed:
            stream.flush_now()
        for inst in executes:
            self._execute(inst)

    def _instruction_table(self) -> dict[type, Callable[[Any], None]]:
        return {
            ins.Execute: self._execute,
            ins.StoreValue: self._store,
            ins.DeleteValue: self._delete,
            ins.GatherDep: self._start_gather,
            ins.RetryBusyWorkerLater: self._retry_later,
            ins.GrantThread: self._grant_thread,
        }

    def _execute(self, inst: ins.Execute) -> None:
        # spilled inputs are read in the task's thread, never here on the loop
        deps = task_inputs(self.data, inst.inputs)
        self.runner.submit(
            inst.key,
            inst.run_id,
            inst.run_spec,
            deps,
            inst.executor,
            inst.inline_result,
            ahead=inst.ahead,
        )

    def _grant_thread(self, inst: ins.GrantThread) -> None:
        self.runner.grant(inst.key)

    def _store(self, inst: ins.StoreValue) -> None:
        self.data[inst.key] = inst.value
        if self.memory_monitor.check_soon():  # spilling: do not wait for the next tick
            asyncio.get_running_loop().call_soon(self._check_memory)

    def _delete(self, inst: ins.DeleteValue) -> None:
        with contextlib.suppress(KeyError):  # not pop(): that would read a spilled value back
            del self.data[inst.key]
        drop_actor(self, inst.key)

    def _start_gather(self, inst: ins.GatherDep) -> None:
        self.background(self._gather_dep(inst), f"gather-dep-{inst.worker}")

    def _retry_later(self, inst: ins.RetryBusyWorkerLater) -> None:
        event = ev.BusyWorkerRetryDue(worker=inst.worker, stimulus_id=new_stimulus_id("retry-busy"))
        events: list[ev.WorkerEvent] = [event]
        asyncio.get_running_loop().call_later(BUSY_RETRY_DELAY, self._handle_events, events)

    async def _gather_dep(self, inst: ins.GatherDep) -> None:
        start = time.time()
        stimulus_id = new_stimulus_id(f"gather-dep-{inst.worker}")
        event: ev.WorkerEvent
        try:
            reply = await self.shm.get_data(
                self.pool.call,
                inst.worker,
                WorkerGetData(keys=tuple(inst.keys), who=self.address),
                reply_timeout=self.comm_config.fetch_timeout,
            )
        except Exception as exc:  # classified: the network, or the values (worker.transfer)
            event = self._gather_failed_event(inst, exc, stimulus_id)
        else:
            self._record_transfer(inst.worker, reply, start)
            event = self._gather_reply_event(inst, reply, stimulus_id)
        self._handle_events([event])

    def _gather_failed_event(
        self, inst: ins.GatherDep, exc: Exception, stimulus_id: str
    ) -> ev.WorkerEvent:
        if is_network_failure(exc):
            _repeats.log(logger, logging.INFO, "fetch from %s failed: %s", inst.worker, exc)
            return ev.GatherDepNetworkFailed(
                worker=inst.worker, requested=inst.keys, stimulus_id=stimulus_id, now=time.time()
            )
        # the peer answered with an error about these values: asking again cannot help
        _repeats.log(logger, logging.WARNING, "%s could not send values: %r", inst.worker, exc)
        info = error_info(exc)
        return ev.GatherDepSucceeded(
            worker=inst.worker,
            requested=inst.keys,
            data={},
            nbytes={},
            unreadable=dict.fromkeys(inst.keys, info),
            stimulus_id=stimulus_id,
            now=time.time(),
        )

    def _gather_reply_event(
        self, inst: ins.GatherDep, reply: Mapping[str, Any], stimulus_id: str
    ) -> ev.WorkerEvent:
        if reply.get("status") == "busy":
            return ev.GatherDepBusy(
                worker=inst.worker, requested=inst.keys, stimulus_id=stimulus_id, now=time.time()
            )
        data: dict[Key, Any] = {}
        unreadable: dict[Key, ev.ErrorInfo] = unsendable_of(reply)
        for key, blob in reply["data"].items():
            try:
                data[key] = deserialize(blob)
            except SerializationError as exc:
                unreadable[key] = error_info(exc)
        return ev.GatherDepSucceeded(
            worker=inst.worker,
            requested=inst.keys,
            data=data,
            nbytes=dict(reply.get("nbytes", {})),
            unreadable=unreadable,
            stimulus_id=stimulus_id,
            now=time.time(),
        )

    # -- the scheduler's stream --------------------------------------------------------------
    def _stream_handlers(self, pending: list[ev.WorkerEvent]) -> dict[str, Callable[..., None]]:
        def adapted(op_type: type[ops.Op]) -> Callable[..., None]:
            to_event = wire.EVENT_OF[op_type]

            def handler(**msg: Any) -> None:
                pending.append(to_event(ops.decode(op_type, msg), time.time()))

            return handler

        def close(**msg: Any) -> None:
            reason = ops.decode(ops.CloseWorker, msg).reason
            logger.info("scheduler asked worker %s to close: %s", self.address, reason)
            self._close_on_request()

        handlers = {op_type.op: adapted(op_type) for op_type in wire.EVENT_OF}
        handlers[ops.CloseWorker.op] = close
        return handlers

    def _heartbeat(self) -> None:
        stream = self.batched_stream
        if stream is not None and not stream.closed:
            metrics = self.metrics()
            metrics["transfers"] = self.transfer_log.take_unsent()
            stream.send(to_msg(ops.Heartbeat(metrics=metrics)))
        if self.state.missing:  # ask again who holds what no known peer had
            self._handle_events(
                [ev.MissingRefreshDue(stimulus_id=new_stimulus_id("missing-refresh"))]
            )

    def _check_memory(self) -> None:
        """The memory monitor's tick: spill past the spill fraction, pause past the pause one."""
        change = self.memory_monitor.check(time.monotonic(), self._drop_replicas)
        if change is None or self.status in ("closing", "closed"):
            return
        stimulus_id = new_stimulus_id(f"memory-{'pause' if change else 'resume'}")
        event: ev.WorkerEvent = (ev.WorkerPaused if change else ev.WorkerUnpaused)(
            stimulus_id=stimulus_id, now=time.time()
        )
        stream = self.batched_stream
        if stream is not None and not stream.closed:
            status = "paused" if change else "running"
            stream.send(to_msg(ops.WorkerStatusChange(status=status)))
        self._handle_events([event])

    def _drop_replicas(self, nbytes: int) -> int:
        """Memory is high: drop copies held elsewhere first; the bytes that freed."""
        before = self.state.managed_nbytes
        event = ev.MemoryPressureDetected(nbytes=nbytes, stimulus_id=new_stimulus_id("memory-high"))
        self._handle_events([event])
        return before - self.state.managed_nbytes

    def metrics(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            **self.memory_monitor.report(self.data, self.state.nbytes, time.monotonic()),
            "executing": self.state.executing_count,
            "in_memory": len(self.data),
            "ready": len(self.state.ready),
            "in_flight": self.state.in_flight_tasks,
            "transfer_incoming_bytes": self.transfer_log.incoming_bytes,
            "transfer_incoming_count": self.transfer_log.incoming_count,
            "transfer_outgoing_bytes": self.transfer_log.outgoing_bytes,
            "transfer_outgoing_count": self.transfer_log.outgoing_count,
        }

    # -- rpc handlers ----------------------------------------------------------------------
    def _rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            WorkerGetData.rpc: self.get_data,
            WorkerUpdateData.rpc: self.update_data,
            WorkerRun.rpc: self.run,
            WorkerStory.rpc: self.story_handler,
            WorkerGetLogs.rpc: self.get_logs,
            WorkerKeys.rpc: self.keys,
            WorkerClose.rpc: self.close_handler,
            **actor_handlers(self),
        }

    async def get_data(
        self, comm: Comm, keys: tuple[Key, ...], who: str | None = None, shm: str | None = None
    ) -> Any:
        """Serve values to a peer or client, within ``total_in_connections``.

        Spilled values are read from disk in a helper thread, already pickled. The slot is
        held until the reply is written, so the limit bounds concurrent sends."""
        if self._in_connections >= self.total_in_connections:
            return {"status": "busy"}
        self._in_connections += 1
        try:
            data, unsendable = await values_for_peer(self.data, keys)
            nbytes = {k: self.state.nbytes.get(k, 0) for k in data}
            self.transfer_log.sent(sum(nbytes.values()))
            reply = {"status": "OK", "data": data, "nbytes": nbytes}
            if unsendable:
                reply["unsendable"] = unsendable
            if self.shm.wants(shm):  # a peer on this host: large buffers skip the socket
                await self.shm.place_soon(reply, shm)
            await self._reply(comm, ok_reply(reply))
            return self.REPLIED
        finally:
            self._in_connections -= 1

    def update_data(self, comm: Comm, data: Mapping[Key, Serialized]) -> dict[str, Any]:
        """Accept scattered data from a client."""
        values = {key: deserialize(blob) for key, blob in data.items()}
        nbytes = {key: sizeof(v) for key, v in values.items()}
        event = ev.DataReceived(
            data=values, nbytes=nbytes, stimulus_id=new_stimulus_id("scatter"), now=time.time()
        )
        self._handle_events([event])
        return {"nbytes": nbytes, "type_names": {k: type(v).__name__ for k, v in values.items()}}

    def run(
        self, comm: Comm, function: Serialized, args: Serialized, kwargs: Serialized
    ) -> Serialized:
        """Run a function here (``Client.run``) and return its result."""
        func = deserialize(function)
        previous = getattr(thread_state, "worker", None)
        thread_state.worker = self  # so that get_worker() works inside the function
        try:
            return serialize(func(*deserialize(args), **deserialize(kwargs)))
        finally:
            thread_state.worker = previous

    def story(self, *keys: Key) -> list[Any]:
        """What happened to these keys here, with stimulus ids and times."""
        return list(self.state.story(*keys))

    def story_handler(self, comm: Comm, keys: tuple[Key, ...]) -> list[Any]:
        return [list(map(wire_safe, entry)) for entry in self.story(*keys)]

    def get_logs(self, comm: Comm, n: int = 1000) -> list[Any]:
        return list(self._logs)[-n:]

    def keys(self, comm: Comm) -> list[Key]:
        return list(self.data)

    async def close_handler(self, comm: Comm, reason: str = "") -> str:
        self._close_on_request()
        return "OK"

    def _close_on_request(self) -> None:
        # set now, not when the close task runs: the stream may end first, and a worker
        # asked to close must not try to rejoin
        self._close_requested = True
        self.background(self.close(), "close-on-request")

    def get_client(self, **kwargs: Any) -> Any:
        """A client in this worker, connected to its scheduler (for tasks that submit tasks)."""
        with self._client_lock:  # tasks on several threads may ask at once: one client
            if self._client is None:
                from shoal.client import Client

                self._client = Client(
                    self.scheduler_address, security=self.security, set_as_default=False, **kwargs
                )
        return self._client

    def get_current_task(self) -> Key:
        """The key of the task running on the calling thread."""
        key = getattr(thread_state, "key", None)
        if key is None:
            raise ValueError("get_current_task() called outside a task")
        return key  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"<Worker {self.address!r}, name: {self.name}, status: {self.status}, "
            f"threads: {self.nthreads}, memory: {len(self.data)}>"
        )


class _Scheduler:
    """``worker.scheduler``: where the scheduler is (``.address``, ``.ip``, ``.port``)."""

    def __init__(self, address: Address, worker: Worker) -> None:
        self.address = address
        self.ip = get_address_host(address)
        self.port = int(address.rsplit(":", 1)[-1]) if ":" in address.split("//")[-1] else 0
        self._worker = worker

    async def call(self, rpc: Rpc[R], /) -> R:
        """One rpc to the scheduler: ``await worker.scheduler.call(SchedulerWhoHas())``."""
        return await self._worker.pool.call(self.address, rpc)


__all__ = ["Worker"]
