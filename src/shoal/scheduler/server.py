"""Scheduler: the IO shell around ``SchedulerState``.

Rules of this file:

* Every decision is the pure ``SchedulerState``'s. This shell turns stream messages into
  events, feeds them once per loop turn (events from many streams are coalesced into one
  batch), and routes the instructions that come back to the right stream.
* The scheduler never unpickles: run specs, results' types and users' exceptions stay
  ``Serialized``; it only pickles exceptions it makes itself (``KilledWorker``).
* A worker's stream closing means the worker is gone; a client's, that its futures are.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import math
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal import discovery
from shoal._types import Address, Key
from shoal.comm import BatchedStream, Comm, Security, get_address_host
from shoal.comm.core import DEFAULT_CONFIG
from shoal.comm.hostaddr import Bind
from shoal.comm.security import role_refusal
from shoal.comm.tls import http_ssl_context
from shoal.config import CommConfig, SchedulerConfig
from shoal.http.listen import dashboard_socket, service_url
from shoal.http.records import ClusterCounters, TaskStream
from shoal.logs import MemoryLogHandler
from shoal.loop_monitor import GcPolicy, LoopMonitor
from shoal.preload import import_preloads, run_setups
from shoal.protocol import ops, rpc_scheduler
from shoal.protocol.messages import wire_safe
from shoal.protocol.ops import to_msg
from shoal.protocol.rpc_base import WORKER, build
from shoal.protocol.rpc_workers import NannyRestart
from shoal.protocol.serialize import Serialized
from shoal.scheduler import adaptive, batching, wire
from shoal.scheduler import events as ev
from shoal.scheduler import instructions as ins
from shoal.scheduler.changes import StateChanges
from shoal.scheduler.coordination_server import Coordination
from shoal.scheduler.extras import SchedulerExtras, dask_info_fields
from shoal.scheduler.state import SchedulerState
from shoal.server import Server
from shoal.settings import scheduler_settings, with_settings
from shoal.stimulus import new_stimulus_id

if TYPE_CHECKING:
    from shoal.http.service import HttpService

logger = logging.getLogger("shoal.scheduler")

#: arrival times (scheduler's monotonic clock) of each worker's recent heartbeats
HEARTBEATS_KEPT = 1024
#: cluster events kept for ``scheduler_info()["events"]`` (worker deaths, restarts)
EVENTS_KEPT = 1000
#: seconds a supervised worker's lost stream waits for its nanny to say why it died
NANNY_REPORT_GRACE = 2.0
#: seconds between two looks for reported results that no client declared in time
UNCLAIMED_CHECK_INTERVAL = 5.0


class Scheduler(Server):
    """Places tasks on workers and tells clients when their keys are ready."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | str = 8786,
        protocol: str | None = None,
        interface: str | None = None,
        listen_address: str | None = None,
        contact_address: str | None = None,
        security: Security | None = None,
        scheduler_file: str | None = None,
        token_file: Path | None = None,
        comm_config: CommConfig = DEFAULT_CONFIG,
        dashboard_address: str | None = None,
        **config: Any,
    ) -> None:
        self.config = SchedulerConfig(**with_settings(scheduler_settings(), config))
        self._init_observability(dashboard_address)
        #: locks, semaphores, events, queues, variables, datasets (shoal.scheduler.coordination)
        self.coordination = Coordination(self)
        #: wakes waits on the state (retirements, workers arriving) after each batch
        self.state_changes = StateChanges()
        super().__init__(
            handlers=self._rpc_handlers(),
            security=security if security is not None else Security.local(),
            role="scheduler",
            name="scheduler",
            config=comm_config,
        )
        self.id = f"scheduler-{uuid.uuid4().hex[:12]}"
        self._bind = Bind(protocol, host, port, interface, listen_address, contact_address)
        #: plugins, events, metadata, the client-code gate (shoal.scheduler.extras)
        self.extras = SchedulerExtras(self, self.config.allow_client_code)
        self.handlers.update(self.extras.handlers())
        self._scheduler_file = scheduler_file
        self._token_file = token_file
        self.state = SchedulerState(
            validate=self.config.validate,
            allowed_failures=self.config.allowed_failures,
            latency=self.config.latency,
            spare_copy_bytes=self.config.spare_copy_bytes,
            speculation_depth=self.config.speculation_depth,
        )
        self.worker_streams: dict[Address, BatchedStream] = {}
        self.client_streams: dict[str, BatchedStream] = {}
        #: what heartbeats tell about each worker: metrics, last_seen, pid, local_directory
        self.worker_extra: dict[Address, dict[str, Any]] = {}
        self._leaving_gracefully: set[Address] = set()
        #: worker deaths and restarts, newest last: {"time", "worker", "nanny", "reason", ...}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._pending: list[ev.SchedulerEvent] = []
        self._flush_scheduled = False
        self._route = self._routing_table()
        #: a new id for every worker registration (fencing: see state_recovery.py)
        self._incarnations = itertools.count(1)
        #: (nanny, pid) of worker processes their nanny reported dead or being stopped:
        #: such a process may not register again (the newest few hundred are kept)
        self._reported_dead: deque[tuple[Address | None, int]] = deque(maxlen=256)
        #: registrations of workers that came back holding results or running tasks
        self.worker_reconnects = 0
        #: clients that came back after losing their connection (to us or to a predecessor)
        self.client_reconnects = 0
        self.coordination.attach()

    async def start(self, *, dashboard_later: bool = False) -> None:
        """Listen, run preloads, start the periodic work and the dashboard. The dashboard's
        port is bound here; with ``dashboard_later`` it is served once imported (in a
        thread, the loop goes on) and ``dashboard_served`` waits for that."""
        preloaded = import_preloads(self.config.preload)  # an import error leaves nothing open
        await self.listen_any(
            self._bind.addresses(self.security.uses_tls), self._bind.contact_address
        )
        await run_setups(preloaded, self)
        discovery.register_local(self.address, self.security)
        if self._scheduler_file:
            discovery.write_scheduler_file(self._scheduler_file, self.address, self._token_file)
        self.periodic(self._check_worker_ttl, min(1.0, self.config.worker_ttl / 4), "worker-ttl")
        self.periodic(self._expire_unclaimed, UNCLAIMED_CHECK_INTERVAL, "unclaimed")
        self.coordination.start()
        self.periodic(self.loop_monitor.tick, self.loop_monitor.interval, "loop-monitor")
        self.loop_monitor.watch()  # start runs on the loop's thread
        self.periodic(lambda: self.gc_policy.idle(len(self.state.tasks)), 1.0, "gc-policy")
        logger.info("scheduler at %s", self.address)
        self._start_http()
        if not dashboard_later:
            await self.dashboard_served()

    # -- observability (shoal.http, shoal.logs) ------------------------------------------------
    def _init_observability(self, dashboard_address: str | None) -> None:
        #: where the dashboard listens ("host:port", port 0: any; None: no HTTP service)
        self.dashboard_address = dashboard_address
        self.http: HttpService | None = None
        #: ``http(s)://host:port`` of the dashboard once its port is bound
        self._dashboard_url: str | None = None
        #: imports and serves the dashboard (``_start_http``)
        self._http_task: asyncio.Task[None] | None = None
        #: recent finished tasks and transfers (bounded), and totals, for the dashboard
        self.task_stream = TaskStream()
        #: workers joined, left, lost and restarted, for /metrics
        self.counters = ClusterCounters()
        #: this scheduler's recent log records (``get_logs``)
        self.log_handler = MemoryLogHandler()
        #: the longest loop stall and full GC (shoal.loop_monitor), and the freeze policy
        self.loop_monitor = LoopMonitor()
        self.gc_policy = GcPolicy()

    def _start_http(self) -> None:
        self.log_handler.attach(["shoal.scheduler", "shoal.http"])
        if self.dashboard_address is None:
            return
        listening = self.listeners[0].address if self.listeners else self.address
        sock = dashboard_socket(self.dashboard_address, get_address_host(listening) or "127.0.0.1")
        host, port = sock.getsockname()[:2]
        https = http_ssl_context(self.security, "scheduler") is not None
        self._dashboard_url = service_url(host, port, https)
        self._http_task = asyncio.get_running_loop().create_task(
            self._serve_http(sock), name="scheduler-dashboard"
        )

    async def _serve_http(self, sock: socket.socket) -> None:
        try:
            # aiohttp and the dashboard take ~0.3 s to import on a cold start: in a thread,
            # so that the loop meanwhile serves the workers that register
            apps = await asyncio.to_thread(importlib.import_module, "shoal.http.apps")
            self.http = await apps.start_scheduler_http(self, sock)
        except BaseException:
            sock.close()
            self._dashboard_url = None  # nothing serves there
            raise
        logger.info("dashboard at %s", self.dashboard_link)

    async def dashboard_served(self) -> None:
        """Returns once the dashboard serves (at once without one); raises what stopped it."""
        if self._http_task is not None:
            await asyncio.shield(self._http_task)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address (without the token), or None if there is no dashboard.
        Known once the scheduler started; requests before it serves wait in the backlog."""
        return f"{self._dashboard_url}/status" if self._dashboard_url is not None else None

    @property
    def dashboard_login_link(self) -> str | None:
        """The dashboard's address with the token (it logs a browser in): keep it secret."""
        link = self.dashboard_link
        token = self.security.token
        return f"{link}?token={token}" if link is not None and token is not None else link

    def add_plugin(self, plugin: Any, name: str | None = None) -> Awaitable[None]:
        """Add a ``SchedulerPlugin`` (from a ``--preload`` module): await the result."""
        return self.extras.add_plugin(plugin, name)

    def get_logs(self, comm: Comm | None = None, n: int | None = None) -> list[Any]:
        """This scheduler's latest log records: (time, level, component, message)."""
        return [list(record) for record in self.log_handler.tail(n)]

    async def _shutdown(self) -> None:
        if self._http_task is not None:
            # wait out a dashboard still being imported: cancelling would leave the import
            # thread running; what stopped it was raised to dashboard_served's caller
            await asyncio.wait([self._http_task])
            if not self._http_task.cancelled():
                self._http_task.exception()
        if self.http is not None:
            await self.http.stop()
        self.log_handler.detach()
        self.loop_monitor.close()
        await self.extras.close()
        for stream in list(self.worker_streams.values()):
            if not stream.closed:  # a worker may be leaving at this very moment
                stream.send(to_msg(ops.CloseWorker(reason="scheduler closing")))
        for stream in [*self.worker_streams.values(), *self.client_streams.values()]:
            await stream.close()
        discovery.unregister_local(self.address)
        await super()._shutdown()

    # -- events in, instructions out -----------------------------------------------------------
    def feed(self, event: ev.SchedulerEvent) -> None:
        """Queue an event; the events queued in one loop turn are handled as one pass,
        big ones cut up so that no pass holds the loop long (``batching``)."""
        wanted: list[Key] = []
        if isinstance(event, ev.ClientDisconnected):
            cs = self.state.clients.get(event.client)
            if cs is not None and len(cs.wants_what) > batching.PASS_BUDGET:
                wanted = [ts.key for ts in cs.wants_what]
        if wanted or batching.weight(event) > batching.PASS_BUDGET:
            self._pending.extend(batching.split(event, wanted))
        else:
            self._pending.append(event)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self, whole: bool = False) -> None:
        """One pass over the pending events; the rest after the loop served others once.
        ``whole``: passes until nothing is pending, for a caller that reads the state next."""
        self._flush_scheduled = False
        while self._pending:
            events, self._pending = batching.take_pass(self._pending)
            self.route(self.state.handle_stimulus(*events))
            self.state_changes.notify()
            if not whole:
                break
        if self.state.forgetting and not self._pending:  # what the pass put off, next
            self._pending.append(
                ev.ForgettingDue(stimulus_id=new_stimulus_id("forget"), now=time.time())
            )
        if self._pending:
            self._schedule_flush()

    def route(self, instructions: Iterable[ins.SchedulerInstruction]) -> None:
        """Send each instruction down its stream; one ``send`` per stream per batch."""
        outgoing: dict[BatchedStream, list[dict[str, Any]]] = {}
        for inst in instructions:
            stream, msg = self._route[type(inst)](inst)
            if stream is not None:
                outgoing.setdefault(stream, []).append(msg)
        for stream, msgs in outgoing.items():
            if not stream.closed:
                stream.send(*msgs)

    def _routing_table(
        self,
    ) -> dict[type, Callable[[Any], tuple[BatchedStream | None, dict[str, Any]]]]:
        def to_worker(inst: Any) -> tuple[BatchedStream | None, dict[str, Any]]:
            return self.worker_streams.get(inst.worker), to_msg(wire.to_op(inst))

        def to_client(inst: Any) -> tuple[BatchedStream | None, dict[str, Any]]:
            return self.client_streams.get(inst.client), to_msg(wire.to_client_op(inst))

        return {
            **dict.fromkeys(wire.OP_OF, to_worker),
            **dict.fromkeys(wire.CLIENT_OP_OF, to_client),
        }

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(  # the fields of rpc_scheduler.SchedulerRegisterWorker
        self,
        comm: Comm,
        address: Address,
        nthreads: int,
        name: str | int | None = None,
        memory_limit: int = 0,
        resources: dict[str, float] | None = None,
        nanny: Address | None = None,
        services: dict[str, int] | None = None,
        local_directory: str | None = None,
        pid: int | None = None,
        held: Iterable[Iterable[Any]] = (),
        running: Iterable[Key] = (),
        worker_plugins: Mapping[str, Serialized] | None = None,
    ) -> object:
        refusal = role_refusal(comm.peer_info, "worker")
        if (nanny, pid) in self._reported_dead:
            # its nanny is stopping this process (memory, say): it must not rejoin meanwhile
            # and take tasks that would then die with it, blamed on "stream closed"
            refusal = f"worker {address} (pid {pid}) was reported dead by its nanny"
        if refusal or address in self.worker_streams:
            text = refusal or f"worker {address} already registered"
            await comm.write({"status": "error", "text": text})
            await comm.close()
            return self.TOOK_COMM
        incarnation = next(self._incarnations)
        self.extras.adopt_worker_plugins(address, worker_plugins or {})
        reply = {"status": "OK", "time": time.time(), "id": self.id, "incarnation": incarnation}
        await comm.write({**reply, **self.extras.registration_reply()})
        stream = BatchedStream(comm, interval=self.comm_config.batch_interval)
        self.worker_streams[address] = stream
        self.worker_extra[address] = {
            "last_seen": time.monotonic(),
            "metrics": {},
            "pid": pid,
            "local_directory": local_directory,
            "incarnation": incarnation,
        }
        holds = tuple((key, int(n)) for key, n in held or ())
        runs = tuple(running or ())
        if holds or runs:
            self.worker_reconnects += 1
        self.feed(
            ev.WorkerJoined(
                address=address,
                name=str(name or address),
                nthreads=int(nthreads),
                memory_limit=int(memory_limit or 0),
                resources=dict(resources or {}),
                nanny=nanny,
                services=dict(services or {}),
                incarnation=incarnation,
                held=holds,
                running=runs,
                stimulus_id=f"worker-joined-{address}-{incarnation}",
                now=time.time(),
            )
        )
        self.extras.worker_registered(nanny)
        self.counters.worker_joined(str(name or address))
        logger.info("worker %s joined (%s threads)", address, nthreads)
        await self._serve_worker_stream(address, incarnation, comm)
        return self.TOOK_COMM

    async def _serve_worker_stream(self, address: Address, incarnation: int, comm: Comm) -> None:
        extra = self.worker_extra[address]

        def batch_end() -> None:
            extra["last_seen"] = time.monotonic()

        handlers = self._worker_stream_handlers(address, incarnation)
        try:
            await self.handle_stream(comm, handlers, batch_end)
        finally:
            self._stream_lost(address, incarnation)

    def _stream_lost(self, address: Address, incarnation: int | None = None) -> None:
        """Remove the worker; a supervised one after its nanny said why it died (or soon)."""
        known = self.state.workers.get(address)
        supervised = known is not None and known.nanny is not None
        closing = self.status in ("closing", "closed")
        if not supervised or address in self._leaving_gracefully or closing:
            self._remove_worker(address, "stream closed", incarnation)
            return
        # the nanny's worker_died usually arrives within milliseconds: then its reason
        # (signal, exit code, memory) is what KilledWorker reports
        loop = asyncio.get_running_loop()
        loop.call_later(
            NANNY_REPORT_GRACE, self._remove_worker, address, "stream closed", incarnation
        )

    def worker_died(
        self,
        comm: Comm | None,
        address: Address | None,
        nanny: Address,
        reason: str,
        running: Iterable[Iterable[Any]] | None = None,
    ) -> str:
        """A nanny's report: its worker died (or is being stopped) for ``reason``, running
        ``running`` ((key, run_id) pairs; None: the nanny does not know)."""
        self.events.append(
            {"time": time.time(), "action": "worker-died", "worker": address,
             "nanny": nanny, "reason": reason}
        )  # fmt: skip
        if address is not None:
            pid = self.worker_extra.get(address, {}).get("pid")
            if pid is not None:
                self._reported_dead.append((nanny, pid))
            self._leaving_gracefully.discard(address)  # a death is never graceful
            ran = None if running is None else tuple((k, int(r)) for k, r in running)
            self._remove_worker(address, reason, running=ran)
        return "OK"

    def _remove_worker(
        self,
        address: Address,
        reason: str,
        incarnation: int | None = None,
        running: tuple[tuple[Key, int], ...] | None = None,
    ) -> None:
        """Remove the worker at ``address`` (only if it is still ``incarnation``, if given:
        a late call about an older registration leaves a newer one alone); ``running``:
        what its nanny read it was running."""
        current = self.worker_extra.get(address, {}).get("incarnation")
        if incarnation is not None and current != incarnation:
            return
        stream = self.worker_streams.pop(address, None)
        if stream is None or self.status == "closed":
            return
        self.worker_extra.pop(address, None)
        expected = address in self._leaving_gracefully
        self._leaving_gracefully.discard(address)
        known = self.state.workers.get(address)
        self.counters.worker_left(known.name if known is not None else address, expected)
        logger.info("worker %s left (%s)", address, "graceful" if expected else reason)
        self.feed(
            ev.WorkerLeft(
                address=address,
                reason=reason,
                expected=expected,
                incarnation=current,
                running=running,
                stimulus_id=new_stimulus_id(f"worker-left-{address}"),
                now=time.time(),
            )
        )
        stream.abort()  # also when the peer closed it: that ends our flusher task

    async def restart(self, comm: Comm | None = None) -> dict[str, int]:
        """Cancel every task for every client, then restart every worker through its nanny
        (workers without one are closed). Returns once the nannies' workers are back."""
        self.feed(
            ev.KeysCancelled(
                client="scheduler",
                keys=tuple(self.state.tasks),
                force=True,
                reason="the cluster was restarted (client.restart())",
                stimulus_id=new_stimulus_id("restart"),
                now=time.time(),
            )
        )
        self.flush(whole=True)
        nannies = [info.nanny for info in self.state.workers.values() if info.nanny]
        for address, info in list(self.state.workers.items()):
            stream = self.worker_streams.get(address)
            if info.nanny is None and stream is not None and not stream.closed:
                stream.send(to_msg(ops.CloseWorker(reason="cluster restart")))
        results = await asyncio.gather(
            *(self.pool.call(nanny, NannyRestart()) for nanny in nannies), return_exceptions=True
        )
        failed = [n for n, r in zip(nannies, results, strict=True) if isinstance(r, BaseException)]
        for nanny in failed:
            logger.warning("nanny %s could not restart its worker", nanny)
        self.events.append({"time": time.time(), "action": "restart", "worker": None,
                            "nanny": None, "reason": "client.restart()"})  # fmt: skip
        return {"restarted": len(nannies) - len(failed), "failed": len(failed)}

    async def retire_workers(
        self, comm: Comm | None = None, workers: Iterable[Address] = (), timeout: float = 120.0
    ) -> dict[str, list[Address]]:
        """Retire ``workers`` (addresses): the state copies every key only they hold to
        other workers, then tells each to close. Returns once they are gone: "retired", and
        "refused" (unknown, or no other running worker could keep their data)."""
        addresses = list(dict.fromkeys(workers))
        for address in addresses:
            self.feed(ev.RetirementRequested(
                worker=address, also_retiring=frozenset(addresses) - {address},
                stimulus_id=new_stimulus_id(f"retire-{address}"), now=time.time(),
            ))  # fmt: skip
        self.flush(whole=True)
        refused = [a for a in addresses if a not in self.state.workers or self._kept(a)]
        retiring = [a for a in addresses if a not in refused]

        def still_there() -> list[Address]:  # gone: their WorkerLeft was handled
            return [a for a in retiring if a in self.state.workers]

        await self.state_changes.wait_for(
            lambda: not still_there(),
            float(timeout),
            lambda: f"workers {still_there()} did not retire within {timeout} s",
        )
        return {"retired": retiring, "refused": refused}

    async def wait_for_workers(
        self, comm: Comm | None = None, n: int = 1, timeout: float = 10.0
    ) -> int:
        """Return the worker count once at least ``n`` workers are registered;
        ``TimeoutError`` naming both counts after ``timeout`` seconds."""
        await self.state_changes.wait_for(
            lambda: len(self.state.workers) >= int(n),
            float(timeout),
            lambda: f"{len(self.state.workers)} of {n} workers registered within {timeout} s",
        )
        return len(self.state.workers)

    def _kept(self, address: Address) -> bool:
        """Whether ``address`` is a running worker the state refused to retire."""
        ws = self.state.workers.get(address)
        return (
            ws is not None and ws not in self.state.retiring and ws.status != "closing_gracefully"
        )

    def _check_worker_ttl(self) -> None:
        deadline = time.monotonic() - self.config.worker_ttl
        for address, extra in list(self.worker_extra.items()):
            if extra["last_seen"] < deadline:
                logger.warning(
                    "worker %s sent no heartbeat for %ss; removing it",
                    address,
                    self.config.worker_ttl,
                )
                self._remove_worker(address, "heartbeat timeout")

    def _expire_unclaimed(self) -> None:
        if self.state.unclaimed:
            before = time.time() - self.config.unclaimed_grace
            self.feed(ev.UnclaimedExpired(before=before, stimulus_id=new_stimulus_id("unclaimed")))

    def _worker_stream_handlers(
        self, worker: Address, incarnation: int | None = None
    ) -> dict[str, Callable[..., None]]:
        feed = self.feed

        def adapted(op_type: type[ops.Op]) -> Callable[..., None]:
            to_event = wire.EVENT_OF[op_type]

            def handler(**msg: Any) -> None:
                feed(to_event(ops.decode(op_type, msg), worker, incarnation, time.time()))

            return handler

        def heartbeat(**msg: Any) -> None:
            metrics = dict(ops.decode(ops.Heartbeat, msg).metrics)
            extra = self.worker_extra.get(worker)
            if extra is not None:
                self.task_stream.transfers_reported(worker, metrics.pop("transfers", None))
                extra["metrics"] = metrics
                arrivals = extra.setdefault("heartbeats", deque(maxlen=HEARTBEATS_KEPT))
                arrivals.append(time.monotonic())

        def unregister(**_: Any) -> None:
            self._leaving_gracefully.add(worker)

        return {
            **{op_type.op: adapted(op_type) for op_type in wire.EVENT_OF},
            ops.TaskFinished.op: self._recording_finished(worker, incarnation),
            ops.Heartbeat.op: heartbeat,
            ops.Unregister.op: unregister,
        }

    def _recording_finished(self, worker: Address, incarnation: int | None) -> Callable[..., None]:
        """The ``task-finished`` handler: records the task in the task stream (a tuple in a
        deque), then feeds the event."""
        record, feed = self.task_stream.task_finished, self.feed

        def task_finished(**msg: Any) -> None:
            op = ops.decode(ops.TaskFinished, msg)
            record(op.key, worker, op.start, op.stop)
            feed(wire.to_event(op, worker, incarnation, time.time()))

        return task_finished

    # -- clients -------------------------------------------------------------------------------
    async def register_client(self, comm: Comm, client: str) -> object:
        await comm.write(
            {
                "status": "OK",
                "scheduler": self.address,
                "id": self.id,
                "workers": len(self.worker_streams),
                "dashboard": self.dashboard_link,
            }
        )
        stream = BatchedStream(comm, interval=self.comm_config.batch_interval)
        self.client_streams[client] = stream
        self.feed(
            ev.ClientConnected(
                client=client, stimulus_id=new_stimulus_id(f"client-connected-{client}")
            )
        )
        try:
            await self.handle_stream(comm, self._client_stream_handlers(client))
        finally:
            self.client_streams.pop(client, None)
            self.coordination.client_gone(client)
            self.feed(
                ev.ClientDisconnected(
                    client=client,
                    stimulus_id=new_stimulus_id(f"client-gone-{client}"),
                    now=time.time(),
                )
            )
            stream.abort()  # also when the peer closed it: that ends our flusher task
        return self.TOOK_COMM

    def _client_stream_handlers(self, client: str) -> dict[str, Callable[..., None]]:
        feed, gc_policy = self.feed, self.gc_policy

        def adapted(op_type: type[ops.Op]) -> Callable[..., None]:
            to_event = wire.CLIENT_EVENT_OF[op_type]

            def handler(**msg: Any) -> None:
                event = to_event(ops.decode(op_type, msg), client, time.time(), new_stimulus_id)
                feed(event)
                if isinstance(event, ev.GraphSubmitted):
                    gc_policy.tasks_added(len(event.tasks))

            return handler

        return {
            **{op_type.op: adapted(op_type) for op_type in wire.CLIENT_EVENT_OF},
            ops.CloseClient.op: lambda **_: None,
            ops.ClientReconnected.op: self._client_reconnected,
            ops.Claim.op: lambda claim, **_: self.coordination.claim_arrived(client, str(claim)),
        }

    def _client_reconnected(self, **_: Any) -> None:
        self.client_reconnects += 1

    # -- rpc ---------------------------------------------------------------------------------
    def _rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            rpc_scheduler.SchedulerRegisterWorker.rpc: self.register_worker,
            rpc_scheduler.SchedulerRegisterClient.rpc: self.register_client,
            rpc_scheduler.SchedulerWhoHas.rpc: self.who_has,
            rpc_scheduler.SchedulerHasWhat.rpc: self.has_what,
            rpc_scheduler.SchedulerNthreads.rpc: self.nthreads,
            rpc_scheduler.SchedulerSchedulerInfo.rpc: self.scheduler_info,
            rpc_scheduler.SchedulerUpdateData.rpc: self.update_data,
            rpc_scheduler.SchedulerStory.rpc: self.story_handler,
            rpc_scheduler.SchedulerIdentity.rpc: self.identity,
            rpc_scheduler.SchedulerBroadcast.rpc: self.broadcast,
            rpc_scheduler.SchedulerGetLogs.rpc: self.get_logs,
            rpc_scheduler.SchedulerWorkerDied.rpc: self.worker_died,
            rpc_scheduler.SchedulerRestart.rpc: self.restart,
            rpc_scheduler.SchedulerRetireWorkers.rpc: self.retire_workers,
            rpc_scheduler.SchedulerWaitForWorkers.rpc: self.wait_for_workers,
            rpc_scheduler.SchedulerAdaptiveTarget.rpc: self.adaptive_target,
            rpc_scheduler.SchedulerWorkersToClose.rpc: self.workers_to_close,
            **self.coordination.rpc_handlers(),
        }

    def adaptive_target(
        self,
        comm: Comm | None = None,
        *,
        target_duration: float,
        minimum: int = 0,
        maximum: float = math.inf,
        threads_per_worker: int | None = None,
    ) -> int:
        """Workers the current work needs (``scheduler.adaptive``; options as there)."""
        load = adaptive.measure_load(self.state)
        return adaptive.adaptive_target(
            load,
            target_duration=target_duration,
            minimum=minimum,
            maximum=maximum,
            threads_per_worker=threads_per_worker,
        )

    def workers_to_close(
        self, comm: Comm | None = None, n: int = 0, idle_only: bool = False
    ) -> list[Address]:
        """The ``n`` running workers whose retirement copies the least unique data."""
        running = [ws for ws in self.state.workers.values() if ws.status == "running"]
        return adaptive.workers_to_close(running, n, idle_only=idle_only)

    def who_has(self, comm: Comm | None = None, keys: Iterable[Key] | None = None) -> Any:
        return self.state.who_has(list(keys) if keys is not None else None)

    def has_what(self, comm: Comm | None = None, workers: Iterable[Address] | None = None) -> Any:
        return self.state.has_what(list(workers) if workers is not None else None)

    def nthreads(self, comm: Comm | None = None) -> dict[Address, int]:
        return self.state.nthreads()

    def identity(self, comm: Comm | None = None) -> dict[str, Any]:
        return {
            "type": "Scheduler",
            "id": self.id,
            "address": self.address,
            "dashboard": self.dashboard_link,
        }

    def scheduler_info(self, comm: Comm | None = None) -> dict[str, Any]:
        workers = {}
        for address, info in self.state.workers.items():
            extra = self.worker_extra.get(address)
            if extra is None:  # it left: the state machine forgets it at the next flush
                continue
            workers[address] = {
                "name": info.name,
                "nthreads": info.nthreads,
                "memory_limit": info.memory_limit,
                "resources": dict(info.resources),
                "nanny": info.nanny,
                "services": dict(info.services),
                "status": info.status,
                "metrics": extra.get("metrics", {}),
                "pid": extra.get("pid"),
                "local_directory": extra.get("local_directory"),
                "heartbeats": list(extra.get("heartbeats", ())),
            }
        return {
            **dask_info_fields(workers, self.worker_extra, self.extras.started),
            "type": "Scheduler",
            "id": self.id,
            "address": self.address,
            "workers": workers,
            "tasks": self.state.n_tasks_by_state(),
            "dashboard": self.dashboard_link,
            "events": list(self.events),
            "reconnects": {"workers": self.worker_reconnects, "clients": self.client_reconnects},
            "fenced_events": self.state.fenced_events,
        }

    def update_data(
        self, comm: Comm, client: str, who_has: Any, nbytes: Any, type_names: Any = None
    ) -> str:
        self.feed(
            ev.DataScattered(
                client=client,
                who_has={k: tuple(v) for k, v in who_has.items()},
                nbytes=dict(nbytes),
                type_names=dict(type_names or {}),
                stimulus_id=new_stimulus_id("scatter"),
                now=time.time(),
            )
        )
        self.flush(whole=True)
        return "OK"

    def story_handler(self, comm: Comm, keys: Iterable[Key]) -> list[Any]:
        return [list(map(wire_safe, entry)) for entry in self.state.story(*keys)]

    async def broadcast(
        self,
        comm: Comm,
        op: str,
        kwargs: dict[str, Any] | None = None,
        workers: Iterable[Address] | None = None,
    ) -> dict[Address, Any]:
        rpc = build(WORKER, op, kwargs or {})  # refused here if the workers have no such rpc
        targets = list(workers) if workers is not None else list(self.worker_streams)
        results = await asyncio.gather(
            *(self.pool.call(w, rpc) for w in targets), return_exceptions=True
        )
        out = {}
        for worker, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            out[worker] = result
        return out
