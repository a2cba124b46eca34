"""A fake network for client tests: a scheduler and workers that live in a dict.

``FakeTransport`` records what the client sends on its stream and answers the rpcs a
scheduler and its workers would (who_has, get_data, update_data, scheduler_info, run,
...). ``compute`` plays scheduler and workers at once: it runs the submitted run specs
in submission order and reports each key the way the scheduler would.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import tblib

from shoal import loop as shared_loop
from shoal.comm.pool import CONFIGURED
from shoal.errors import CommError
from shoal.graph.spec import run_spec
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.serialize import Serialized, deserialize, serialize

SCHEDULER = "tcp://scheduler:8686"
WORKERS = ("tcp://worker-a:1", "tcp://worker-b:2")
R = TypeVar("R")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The fields of a ``task-erred`` message for ``exc``, as a worker would send them."""
    tb = exc.__traceback__
    return {
        "exception": serialize(exc),
        "traceback": serialize(tblib.Traceback(tb)) if tb is not None else None,
        "exception_text": f"{type(exc).__name__}: {exc}",
        "traceback_text": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


class FakeTransport:
    """Implements ``shoal.client.transport.Transport`` over in-memory state."""

    scheduler_address = SCHEDULER

    def __init__(self, workers: Sequence[str] = WORKERS) -> None:
        #: every message the client sent on its stream, in order (``sent``)
        self._sent: list[dict[str, Any]] = []
        #: every rpc: (address, op, kwargs)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        #: values held by each worker
        self.data: dict[str, dict[Any, Any]] = {w: {} for w in workers}
        #: run specs submitted and not yet computed, in order (``queue``)
        self._queue: list[tuple[Any, Serialized]] = []
        self.on_batch: Callable[[Sequence[dict[str, Any]]], None] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.client_id = ""
        self.on_unencodable: Callable[..., None] | None = None
        self.closed = False
        #: key-in-memory names the holders (False: as an older scheduler, no who_has)
        self.report_holders = True
        #: workers that answer get_data with "busy" this many more times
        self.busy: dict[str, int] = {}
        #: how many messages were sent each in a frame set of its own
        self.sent_apart = 0
        #: workers whose rpcs fail as a dead peer's would (connection refused)
        self.unreachable: set[str] = set()

    # -- the Transport interface ------------------------------------------------------------
    async def open(self, client_id: str, on_batch: Any, on_lost: Any) -> dict[str, Any]:
        self.client_id = client_id
        self.on_batch = on_batch
        self.on_lost = on_lost
        return {"status": "OK", "scheduler": SCHEDULER, "workers": len(self.data)}

    def coalescing_interval(self) -> float:
        return 0.0

    def send(self, *msgs: dict[str, Any], apart: bool = False) -> None:
        if apart:
            self.sent_apart += len(msgs)
        for msg in msgs:
            self._sent.append(msg)
            if msg["op"] == "update-graph":
                self._queue.extend((row[0], row[1]) for row in msg["tasks"])

    async def call(
        self, address: str, rpc: Rpc[R], /, *, reply_timeout: float | None = CONFIGURED
    ) -> Any:
        kwargs = rpc.to_msg()  # what would go on the wire (reply_timeout is the pool's)
        op = kwargs.pop("op")
        self.calls.append((address, op, kwargs))
        if address == SCHEDULER:
            return getattr(self, f"_scheduler_{op}")(**kwargs)
        if address in self.unreachable:
            raise CommError(f"connection to {address} refused")
        return getattr(self, f"_worker_{op}")(address, **kwargs)

    async def close(self) -> None:
        self.closed = True

    # -- what tests look at ------------------------------------------------------------------
    @property
    def sent(self) -> list[dict[str, Any]]:
        """What was sent, once the client's loop ran what callers queued (submit() hands
        its tasks to the loop without waiting)."""
        self.settle()
        return self._sent

    @property
    def queue(self) -> list[tuple[Any, Serialized]]:
        self.settle()
        return self._queue

    @queue.setter
    def queue(self, items: list[tuple[Any, Serialized]]) -> None:
        self.settle()
        self._queue = items

    def settle(self) -> None:
        """From a test's thread: wait until the loop ran every callback queued so far."""
        if shared_loop.in_loop_thread() or _running_loop() is not None:
            return

        async def turn() -> None:
            pass

        shared_loop.run_sync(turn())

    def ops(self) -> list[str]:
        return [msg["op"] for msg in self.sent]

    def messages(self, op: str) -> list[dict[str, Any]]:
        return [msg for msg in self.sent if msg["op"] == op]

    def rpc_ops(self) -> list[tuple[str, str]]:
        return [(address, op) for address, op, _ in self.calls]

    # -- playing the scheduler ---------------------------------------------------------------
    def deliver(self, *msgs: dict[str, Any]) -> None:
        """Hand a batch to the client on its loop, as the scheduler stream would."""
        assert self.on_batch is not None
        handler = self.on_batch
        if shared_loop.in_loop_thread() or _running_loop() is not None:
            handler(msgs)
            return

        async def deliver() -> None:
            handler(msgs)

        shared_loop.run_sync(deliver())

    def compute(self, worker: str = WORKERS[0]) -> None:
        """Run every queued task, in order, and report each result or failure."""
        reports = []
        while self.queue:
            key, spec = self.queue.pop(0)
            known = {k: v for held in self.data.values() for k, v in held.items()}
            try:
                value = run_spec(deserialize(spec), known)
            except Exception as exc:
                reports.append({"op": "task-erred", "key": key, **error_fields(exc)})
            else:
                self.data[worker][key] = value
                report = {"op": "key-in-memory", "key": key, "type_name": type(value).__name__}
                if self.report_holders:  # as the scheduler does since key-in-memory has them
                    report["who_has"] = (worker,)
                reports.append(report)
        if reports:
            self.deliver(*reports)

    def lose_connection(self, reason: str = "connection reset") -> None:
        assert self.on_lost is not None
        on_lost = self.on_lost

        async def lose() -> None:
            on_lost(reason)

        if _running_loop() is not None:
            on_lost(reason)
        else:
            shared_loop.run_sync(lose())

    # -- rpc handlers ------------------------------------------------------------------------
    def _holders(self, key: Any) -> list[str]:
        return [w for w, held in self.data.items() if key in held]

    def _scheduler_who_has(self, keys: Any = None) -> dict[Any, list[str]]:
        if keys is None:
            keys = {k for held in self.data.values() for k in held}
        return {k: self._holders(k) for k in keys}

    def _scheduler_has_what(self, workers: Any = None) -> dict[str, list[Any]]:
        return {w: list(self.data[w]) for w in workers or self.data}

    def _scheduler_nthreads(self) -> dict[str, int]:
        return dict.fromkeys(self.data, 1)

    def _scheduler_scheduler_info(self) -> dict[str, Any]:
        workers = {
            w: {"name": str(i), "nthreads": 1, "memory_limit": 2**30, "status": "running"}
            for i, w in enumerate(self.data)
        }
        return {"address": SCHEDULER, "id": "scheduler-fake", "workers": workers}

    def _scheduler_update_data(
        self, client: str, who_has: Any, nbytes: Any, type_names: Any
    ) -> str:
        return "OK"

    def _scheduler_story(self, keys: Any) -> list[Any]:
        return [[k, "released", "waiting", "stimulus", 0.0] for k in keys]

    def _worker_get_data(
        self, address: str, keys: Any, who: str | None = None, shm: str | None = None
    ) -> Any:
        if self.busy.get(address):
            self.busy[address] -= 1
            return {"status": "busy"}
        held = self.data[address]
        data = {k: serialize(held[k]) for k in keys if k in held}
        return {"status": "OK", "data": data, "nbytes": dict.fromkeys(data, 8)}

    def _worker_update_data(self, address: str, data: Any) -> dict[str, Any]:
        values = {k: deserialize(v) for k, v in data.items()}
        self.data[address].update(values)
        return {
            "nbytes": dict.fromkeys(values, 8),
            "type_names": {k: type(v).__name__ for k, v in values.items()},
        }

    def _worker_run(self, address: str, function: Any, args: Any, kwargs: Any) -> Serialized:
        func = deserialize(function)
        return serialize(func(*deserialize(args), **deserialize(kwargs)))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def barrier() -> None:
    """Return once the shared loop ran everything scheduled on it before this call."""

    async def nothing() -> None:
        return None

    shared_loop.run_sync(nothing())
