"""The client's asynchronous core: the key table, the scheduler stream, and what flows on it.

``ClientCore`` lives on one event loop (the shared background loop for synchronous
clients, the user's loop for asynchronous ones). The ``Client`` facade calls into it.

Rules of this file:

* Every method here runs on the core's loop. The facade hops there once per call (one
  hop for a whole ``map``); ``Future.__del__`` only schedules work here.
* Incoming batches are handled in one pass, with no allocation for a key nobody waits on.
* A key is in the table while some ``Future`` holds it. Submitting a live key again with
  the same token reuses its state and sends nothing; with another token it is refused.
* When the scheduler connection is lost, the client reconnects for up to
  ``reconnect_timeout`` seconds (``client/reconnect.py``): futures stay pending across
  the outage and every live key is declared again. Past that (or with a timeout of 0),
  every pending future is cancelled with a reason saying so: nothing waits forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shoal._types import Key
from shoal.client import reconnect, remote_output, wire
from shoal.client.future_state import ErrorInfo, FutureState
from shoal.client.refs import KeyTable
from shoal.client.tasks import MAX_ROWS_PER_MESSAGE, Row, TaskBatch
from shoal.client.transport import Msg, Transport
from shoal.client.unsendable import fail_unsendable
from shoal.errors import CommClosedError, CommError, ProtocolError
from shoal.protocol import ops
from shoal.protocol.ops import SCHEDULER_TO_CLIENT, KeyInMemory, from_msg, to_msg
from shoal.protocol.rpc_scheduler import SchedulerWaitForWorkers
from shoal.protocol.serialize import Serialized

logger = logging.getLogger("shoal.client")

#: most keys in one ``client-releases-keys``: the scheduler releases ~2,000 keys in tens
#: of milliseconds, then serves others before the next part
RELEASE_BATCH = 2_000


class ClientCore:
    """The asynchronous heart of a ``Client``; see the rules at the top of this module."""

    def __init__(
        self, transport: Transport, client_id: str, reconnect_timeout: float = 0.0
    ) -> None:
        self.transport = transport
        self.id = client_id
        #: seconds to keep trying to reach a lost scheduler (0: give up at once)
        self.reconnect_timeout = reconnect_timeout
        #: rows of every task sent, to declare live keys again after a reconnect
        self.specs = reconnect.SpecStore()
        #: times this client reconnected to its scheduler
        self.reconnects = 0
        self.table = KeyTable()
        #: "created" -> "running" -> "closing" -> "closed"; "lost" if the scheduler went away
        self.status = "created"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        #: the scheduler's reply to our registration
        self.scheduler_reply: dict[str, Any] = {}
        self._handlers: dict[type[ops.Op], Callable[[Any], None]] = {
            ops.KeyErred: self._task_erred,
            ops.CancelledKeys: self._cancelled_keys,
            ops.TaskRetried: self._back_to_pending,
            ops.LostData: self._back_to_pending,
            ops.Output: remote_output.show,  # shoal.print / shoal.warn in a task
            ops.TopicEvent: self._event,
        }
        #: ``Client.subscribe_topic``: topic -> handler of ``(time, msg)``
        self.topic_handlers: dict[str, Callable[[Any], Any]] = {}
        self._handler_tasks: set[asyncio.Future[Any]] = set()

    # -- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register with the scheduler and start handling its messages."""
        loop = self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        table = self.table

        def schedule_flush() -> None:
            loop.call_soon_threadsafe(table.flush)

        table.schedule_flush = schedule_flush
        table.on_released = self.send_releases
        self.transport.on_unencodable = functools.partial(fail_unsendable, table)
        self.scheduler_reply = await self.transport.open(self.id, self.handle_batch, self.lost)
        self.status = "running"

    async def close(self) -> None:
        """Tell the scheduler we leave, close the connections, cancel what is pending."""
        if self.status in ("closing", "closed"):
            return
        was_running = self.status == "running"
        self.status = "closing"
        task = getattr(self, "_reconnecting", None)
        if task is not None:
            task.cancel()
        if was_running:
            self.table.flush()
            self._send_op(ops.CloseClient())
        try:
            await self.transport.close()
        finally:
            self._cancel_all("the client was closed")
            self.status = "closed"

    def lost(self, reason: str) -> None:
        """The scheduler stream ended without us closing it."""
        if self.status != "running":
            return
        logger.warning("client %s lost its scheduler connection: %s", self.id, reason)
        if self.reconnect_timeout > 0 and self.loop is not None:
            self.status = "reconnecting"
            self._reconnecting = self.loop.create_task(self._reconnect(reason))
            return
        self.status = "lost"
        self._cancel_all(f"lost the connection to the scheduler ({reason})")

    async def _reconnect(self, reason: str) -> None:
        """Reach the scheduler again; declare every live key again (see the rules)."""
        old_id = self.scheduler_reply.get("id")
        old_workers = int(self.scheduler_reply.get("workers") or 0)

        async def attempt() -> dict[str, Any]:
            return await self.transport.open(self.id, self.handle_batch, self.lost)

        reply = await reconnect.retry_until(attempt, self.reconnect_timeout)
        if self.status != "reconnecting":
            return  # closed meanwhile
        if reply is None:
            self.status = "lost"
            self._cancel_all(
                f"lost the connection to the scheduler ({reason}) and could not reconnect "
                f"within {self.reconnect_timeout}s"
            )
            return
        self.scheduler_reply = reply
        if reply.get("id") != old_id:  # a new scheduler: let rejoining workers report first
            settled = await reconnect.settle(self._wait_for_workers, old_workers)
            reply["workers"] = max(int(reply.get("workers") or 0), settled)
        self.table.flush()
        live = list(self.table.states)
        self.specs.prune(live)
        self.status = "running"
        self.reconnects += 1
        self._send_op(ops.ClientReconnected())
        if live:
            self._send_op(self.specs.redeclare(live))
        logger.warning("client %s reconnected; declared %d keys again", self.id, len(live))

    async def _wait_for_workers(self, n: int, timeout: float) -> int:
        address = self.transport.scheduler_address
        count = self.transport.call(address, SchedulerWaitForWorkers(n=n, timeout=timeout))
        return await asyncio.wait_for(count, timeout + 5.0)

    def _cancel_all(self, reason: str) -> None:
        for state in self.table.clear():
            if not state.done():
                state.cancel(reason)

    def check_running(self) -> None:
        if self.status != "running":
            raise CommClosedError(f"client {self.id} is {self.status}, not running")

    def send(self, op: ops.Op, apart: bool = False) -> None:
        """Queue an op to the scheduler (update-graph rows are kept for reconnects);
        ``apart``: in a frame set of its own."""
        self._send_op(op, apart)

    def _send_op(self, op: ops.Op, apart: bool = False) -> None:
        if type(op) is ops.UpdateGraph:
            self.specs.record(op, lambda: list(self.table.states))
        try:
            self.transport.send(to_msg(op), apart=apart)
        except CommError as exc:  # the stream ended; lost() reports it
            logger.info("client %s could not send %s: %s", self.id, op.op, exc)

    # -- messages from the scheduler ---------------------------------------------------------
    def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Apply one batch of scheduler messages, in order, in one pass."""
        states = self.table.states
        handlers = self._handlers
        for msg in msgs:
            try:
                op = from_msg(SCHEDULER_TO_CLIENT, msg)
            except ProtocolError as exc:  # a newer scheduler's op, or a malformed one
                logger.debug("client %s ignores a message: %s", self.id, exc)
                continue
            if type(op) is KeyInMemory:
                state = states.get(op.key)
                if state is not None:
                    value = op.value if isinstance(op.value, Serialized) else None
                    state.finish(op.type_name or None, tuple(op.who_has), value)
                continue
            handlers[type(op)](op)

    def _task_erred(self, op: ops.KeyErred) -> None:
        state = self.table.states.get(op.key)
        if state is not None:
            error = ErrorInfo(
                op.exception, op.traceback, op.exception_text or "", op.traceback_text or ""
            )
            state.fail(error)

    def _cancelled_keys(self, op: ops.CancelledKeys) -> None:
        for key in op.keys:
            state = self.table.states.get(key)
            if state is not None and state.status != "cancelled":
                state.cancel(op.reason or "")

    def _event(self, op: ops.TopicEvent) -> None:
        handler = self.topic_handlers.get(op.topic)
        if handler is None:
            return
        try:
            result = handler(tuple(op.event))
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._handler_tasks.add(task)  # kept until done, so it is not collected
                task.add_done_callback(self._handler_tasks.discard)
        except Exception:
            logger.exception("client %s: the handler of topic %r failed", self.id, op.topic)

    def _back_to_pending(self, op: ops.TaskRetried | ops.LostData) -> None:
        """The key is computed again (retried, or its data was lost)."""
        state = self.table.states.get(op.key)
        if state is not None and state.status != "pending":
            state.reset()

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, batch: TaskBatch) -> list[FutureState]:
        """Take references on the batch's keys and send the tasks that are new here."""
        self.check_running()
        self.table.flush()  # a dropped key must be released before it is submitted again
        states = self.table.states
        _refuse_conflicts(batch, states)
        to_send = []
        seen: set[Key] = set()
        for row in batch.rows:
            key = row[0]
            if key in seen:
                continue
            seen.add(key)
            state = states.get(key)
            if state is None:
                to_send.append(row)
            elif state.status in ("cancelled", "lost"):
                state.reset()
                state.token = row[4]
                to_send.append(row)
            elif state.token is None:
                state.token = row[4]
        result = self.table.acquire_many(batch.keys, batch.tokens)
        if to_send:
            self._send_rows(to_send, seen, batch.restrictions)
        return result

    def _send_rows(
        self, rows: list[Row], wanted: set[Key], restrictions: dict[str, Any] | None
    ) -> None:
        """One ``update-graph``, or for many rows (a big ``map``) several, each wanting its
        own keys and sent in a frame set of its own: the scheduler takes them one per loop
        turn and nobody waits on one huge message. The rows are independent (a row only
        depends on keys that exist already), so no part needs a later one; the last part
        also wants the keys that were not sent again."""
        parts = [
            rows[i : i + MAX_ROWS_PER_MESSAGE] for i in range(0, len(rows), MAX_ROWS_PER_MESSAGE)
        ]
        for n, part in enumerate(parts):
            keys = [row[0] for row in part]
            if n == len(parts) - 1 and len(parts) > 1:
                sent = {row[0] for row in rows}
                keys += [key for key in wanted if key not in sent]
            elif len(parts) == 1:
                keys = list(wanted)
            per_key = {r[0]: restrictions for r in part} if restrictions else None
            self._send_op(wire.update_graph(part, keys, per_key), apart=len(parts) > 1)

    def submit_soon(self, batch: TaskBatch) -> list[FutureState] | None:
        """From a thread other than the loop's: when every key of the batch is new here,
        take its references now and send the tasks on the loop's next turn, without waiting
        for the loop (None otherwise: the caller takes ``submit``'s round trip, which
        handles resets of cancelled or lost keys). Conflicts still raise here."""
        self.check_running()
        states = self.table.states
        if any(key in states for key in batch.keys):
            return None
        deps = [dep for row in batch.rows for dep in row[2]]
        if any(dep not in states for dep in deps):
            return None
        _refuse_conflicts(batch, states)  # the same key twice in the batch, other calls
        # the inputs are held until update-graph is out: a release of one of them already
        # queued on the loop (its future dropped meanwhile) must not overtake it
        self.table.acquire_many(deps, [None] * len(deps))
        result = self.table.acquire_many(batch.keys, batch.tokens)
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._send_new, batch, result, deps)
        return result

    def _send_new(self, batch: TaskBatch, states: list[FutureState], deps: list[Key]) -> None:
        """``submit_soon``'s half on the loop."""
        try:
            self._send_new_tasks(batch, states)
        finally:
            for dep in deps:
                self.table.drop(dep)

    def _send_new_tasks(self, batch: TaskBatch, states: list[FutureState]) -> None:
        if self.status != "running":  # closed meanwhile: nobody will answer these
            for state in states:
                if not state.done():
                    state.cancel(f"client {self.id} is {self.status}")
            return
        # no table.flush() first, unlike submit(): a future of these keys dropped since
        # submit_soon must be released after its update-graph, not before
        to_send = []
        seen: set[Key] = set()
        for row in batch.rows:
            if row[0] not in seen:
                seen.add(row[0])
                to_send.append(row)
        self._send_rows(to_send, seen, batch.restrictions)

    def desire(self, keys: Iterable[Key]) -> None:
        """We hold new futures for keys submitted elsewhere: ask the scheduler about them."""
        if self.status == "running":
            self._send_op(ops.ClientDesiresKeys(keys=list(keys)))

    def send_releases(self, keys: list[Key]) -> None:
        """Tell the scheduler these keys are no longer wanted, in parts of at most
        ``RELEASE_BATCH`` keys, each in a frame set of its own: the scheduler handles one
        per loop turn. Dropping a million futures at once stalled it for 27 s."""
        if self.status != "running":
            return
        if len(keys) <= RELEASE_BATCH:
            self._send_op(ops.ClientReleasesKeys(keys=keys))
            return
        for at in range(0, len(keys), RELEASE_BATCH):
            self._send_op(ops.ClientReleasesKeys(keys=keys[at : at + RELEASE_BATCH]), apart=True)

    def cancel(self, keys: Sequence[Key], force: bool = False) -> None:
        """Cancel keys: the scheduler stops them; their futures are cancelled right away."""
        self.check_running()
        self._send_op(ops.CancelKeys(keys=list(keys), force=force))
        for key in keys:
            state = self.table.states.get(key)
            if state is not None and not state.done():
                state.cancel("cancelled by the client")

    def retry(self, keys: Sequence[Key]) -> None:
        """Run erred keys again; their futures go back to pending right away."""
        self.check_running()
        erred = [k for k in keys if (s := self.table.states.get(k)) and s.status == "error"]
        if not erred:
            return
        self._send_op(ops.Retry(keys=erred))
        for key in erred:
            self.table.states[key].reset()

    def register_scattered(
        self, keys: Sequence[Key], tokens: Sequence[str], type_names: dict[Key, str]
    ) -> list[FutureState]:
        """References on data we just put on workers; their states are finished."""
        states = self.table.acquire_many(keys, tokens)
        for state in states:
            if state.status != "finished":
                state.finish(type_names.get(state.key))
        return states

    def refuse_scatter_conflicts(self, tokens: dict[Key, str]) -> list[Key]:
        """Raise if a scattered key is live with other data; the keys already live."""
        self.table.flush()
        live = []
        for key, token in tokens.items():
            state = self.table.states.get(key)
            if state is None or state.status in ("cancelled", "lost"):
                continue
            if state.token is not None and state.token != token:
                raise ValueError(_conflict_message(key))
            if state.status == "finished":
                live.append(key)
        return live


def _refuse_conflicts(batch: TaskBatch, states: dict[Key, FutureState]) -> None:
    first_token: dict[Key, str] = {}
    for row in batch.rows:
        key, token = row[0], row[4]
        earlier = first_token.setdefault(key, token)
        state = states.get(key)
        if earlier != token or (
            state is not None
            and state.token is not None
            and state.token != token
            and state.status not in ("cancelled", "lost")
        ):
            raise ValueError(_conflict_message(key))


def _conflict_message(key: Key) -> str:
    return (
        f"key {key!r} is already used by a different task or data; "
        "pass another key= or release every future of the first one before reusing it"
    )
