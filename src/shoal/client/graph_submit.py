"""Shipping a dask graph: rows built off the loop, batches sent from the loop.

``prepare`` runs in the caller's thread (or a helper thread for an asynchronous client):
it orders the graph, pickles each node once, and cuts the rows into ``update-graph``
messages of bounded size. ``send`` runs on the client's loop: it takes references on the
output keys and sends the messages, each in its own frame set, so the scheduler handles
a huge graph in bounded steps. ``send_soon`` is the synchronous client's shortcut for a
small graph that is new here (one message, no key live, no dependency outside it): the
caller takes the references and goes on, the loop sends it on its next turn.

Rules of this file:

* A key this client already holds a live future for is not sent again: the scheduler
  has it. Its dependents simply name it as a dependency.
* The scheduler forgets a task that nothing wants and nothing depends on when a batch
  ends. So each batch also *wants* its frontier (keys later batches depend on), and once
  every batch is in, the client releases the frontier keys it does not hold.
* One graph at a time per client: a second graph waits for the first to be sent, so two
  submissions never release each other's frontier.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal._types import Key
from shoal.client import wire
from shoal.client.core import ClientCore
from shoal.client.future import futures_pickled
from shoal.client.future_state import FutureState
from shoal.client.tasks import MAX_ROWS_PER_MESSAGE, _submission_order
from shoal.errors import SerializationError
from shoal.graph.dask import DaskGraph, frontiers, refer_to_futures, restrictions_of
from shoal.graph.keys import normalize_key
from shoal.loop_monitor import collection_paused
from shoal.protocol import ops
from shoal.protocol.serialize import OUT_OF_BAND_BYTES, Serialized, serialize

#: most tasks in one ``update-graph`` message (the scheduler handles one per loop turn)
MAX_TASKS_PER_MESSAGE = MAX_ROWS_PER_MESSAGE
#: most out-of-band frames in one message (the frame-set limit is 16,384)
MAX_FRAMES_PER_MESSAGE = 4_000
#: most bytes of run specs in one message
MAX_BYTES_PER_MESSAGE = 64 * 2**20

#: one row of ``update-graph``; dask keys name their computation, so no token is checked
GraphRow = tuple[Key, Serialized, tuple[Key, ...], tuple[float, ...], None]

_locks: weakref.WeakKeyDictionary[ClientCore, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclass(slots=True)
class PreparedGraph:
    """A graph ready to send: its rows in batches, and the keys the caller wants."""

    #: the output keys, in the caller's order (repeats allowed)
    outputs: list[Key]
    #: rows per message, dependencies first
    batches: list[list[GraphRow]] = field(default_factory=list)
    #: per message: the keys of that message that later messages depend on
    frontiers: list[set[Key]] = field(default_factory=list)
    #: per message: ``{key: restrictions}`` for its keys that have any
    restrictions: list[dict[Key, dict[str, Any]]] = field(default_factory=list)


def prepare(graph: DaskGraph, outputs: Sequence[Key], defaults: Mapping[str, Any]) -> PreparedGraph:
    """Order, pickle and batch ``graph`` (which keys are live is decided later, on the loop).

    ``defaults`` are annotations (priority, retries, workers, ...) for keys that have no
    such annotation of their own.
    """
    with collection_paused():  # no full passes over the graph being pickled: loop_monitor
        return _prepare(graph, outputs, defaults)


def _prepare(
    graph: DaskGraph, outputs: Sequence[Key], defaults: Mapping[str, Any]
) -> PreparedGraph:
    order = graph.priorities()
    generation = next(_submission_order)
    prepared = PreparedGraph([normalize_key(key) for key in outputs])
    cutter = _Cutter()
    for key in sorted(graph.nodes, key=order.__getitem__):
        annotations = {**defaults, **graph.annotation(key)}
        priority = -float(annotations.get("priority") or 0)
        node = graph.nodes[key]
        with futures_pickled() as futures:
            blob = _serialize_node(key, node)
        if futures:  # a Future pickled as a plain argument: refer to it
            node = graph.nodes[key] = refer_to_futures(node)
            blob = _serialize_node(key, node)
        deps = tuple(normalize_key(dep) for dep in node.dependencies)
        restrictions = restrictions_of(annotations)
        cutter.add(
            (normalize_key(key), blob, deps, (priority, generation, order[key]), None), restrictions
        )
    prepared.batches, prepared.restrictions = cutter.finish()
    keys = [[row[0] for row in rows] for rows in prepared.batches]
    prepared.frontiers = frontiers(keys, {row[0]: row[2] for b in prepared.batches for row in b})
    return prepared


def _serialize_node(key: Key, node: Any) -> Serialized:
    try:
        return serialize(node, task=True)
    except SerializationError as exc:
        raise SerializationError(f"cannot send the task {key!r} of the dask graph: {exc}") from exc


class _Cutter:
    """Cuts rows into messages bounded in tasks, frames and bytes."""

    def __init__(self) -> None:
        self.batches: list[list[GraphRow]] = [[]]
        self.restrictions: list[dict[Key, dict[str, Any]]] = [{}]
        self.frames = 0
        self.nbytes = 0

    def add(self, row: GraphRow, restrictions: dict[str, Any] | None) -> None:
        blob = row[1]
        frames = len(blob.buffers) + (len(blob.header) >= OUT_OF_BAND_BYTES)
        full = (
            len(self.batches[-1]) >= MAX_TASKS_PER_MESSAGE
            or self.frames + frames > MAX_FRAMES_PER_MESSAGE
            or self.nbytes + blob.nbytes > MAX_BYTES_PER_MESSAGE
        )
        if full and self.batches[-1]:
            self.batches.append([])
            self.restrictions.append({})
            self.frames = self.nbytes = 0
        self.batches[-1].append(row)
        self.frames += frames
        self.nbytes += blob.nbytes
        if restrictions is not None:
            self.restrictions[-1][row[0]] = restrictions

    def finish(self) -> tuple[list[list[GraphRow]], list[dict[Key, dict[str, Any]]]]:
        return self.batches, self.restrictions


async def send(core: ClientCore, prepared: PreparedGraph) -> list[FutureState]:
    """On the loop: references on the outputs, then the graph, batch by batch."""
    lock = _locks.get(core)
    if lock is None:
        lock = _locks[core] = asyncio.Lock()
    async with lock:
        core.check_running()
        core.table.flush()  # a dropped key must be released before it is submitted again
        fresh = _fresh_outputs(core, prepared.outputs)
        # before the first message: a result may come back while later ones are sent
        states = core.table.acquire_many(prepared.outputs, [None] * len(prepared.outputs))
        held: set[Key] = set()
        try:
            await _send_paced(core, _messages(core, prepared, fresh, held), len(prepared.batches))
        finally:
            for key in held:  # the references _messages took (released after the last one)
                core.table.drop(key)
        release = [key for key in set().union(*prepared.frontiers) if key not in held]
        release = [key for key in release if key not in core.table.states]
        if release:
            core.send_releases(release)
        return states


def send_soon(core: ClientCore, prepared: PreparedGraph) -> list[FutureState] | None:
    """From a thread other than the loop's: the outputs' states of a graph that fits one
    message, none of whose keys is live here and whose rows depend only on each other,
    sent on the loop's next turn without waiting for it. None for any other graph: the
    caller takes ``send``'s round trip (live keys, resets, frontiers, external keys)."""
    core.check_running()
    if len(prepared.batches) != 1:
        return None
    [rows] = prepared.batches
    keys = {row[0] for row in rows}
    states = core.table.states
    if any(key in states for key in keys) or any(key not in keys for key in prepared.outputs):
        return None
    if any(dep not in keys for row in rows for dep in row[2]):
        return None
    msg = wire.update_graph(rows, prepared.outputs, prepared.restrictions[0])
    result = core.table.acquire_many(prepared.outputs, [None] * len(prepared.outputs))
    assert core.loop is not None
    core.loop.call_soon_threadsafe(_send_new_graph, core, msg, result)
    return result


def _send_new_graph(core: ClientCore, msg: ops.UpdateGraph, states: list[FutureState]) -> None:
    """``send_soon``'s half on the loop."""
    if core.status != "running":  # closed meanwhile: nobody will answer these
        for state in states:
            if not state.done():
                state.cancel(f"client {core.id} is {core.status}")
        return
    core.send(msg)


def _fresh_outputs(core: ClientCore, outputs: Sequence[Key]) -> set[Key]:
    """The outputs no live future here stands for (none, or a cancelled or lost one):
    their rows are sent although ``send`` takes references on them before the first
    message (a cancelled or lost state is reset only once its row is sent)."""
    states = core.table.states
    return {
        key
        for key in outputs
        if (state := states.get(key)) is None or state.status in ("cancelled", "lost")
    }


def _messages(
    core: ClientCore, prepared: PreparedGraph, fresh: set[Key], held: set[Key]
) -> Iterator[ops.UpdateGraph]:
    """The ``update-graph`` ops still to send, each made just before it is sent (a million
    rows are not walked in one loop turn). A row whose key this client holds is not sent:
    its key goes in ``held`` with a reference of its own, so a future dropped meanwhile
    is not released before the later messages that depend on it. The last op (empty if
    no rows are left to send) also wants every output."""
    states = core.table.states
    outputs = set(prepared.outputs)
    last: tuple[list[GraphRow], list[Key], dict[Key, dict[str, Any]]] | None = None
    for rows, frontier, restrictions in zip(
        prepared.batches, prepared.frontiers, prepared.restrictions, strict=True
    ):
        to_send = []
        newly_held = []
        for row in rows:
            key = row[0]
            state = states.get(key)
            if state is None:
                to_send.append(row)
            elif state.status in ("cancelled", "lost"):
                state.reset()
                to_send.append(row)
            elif key in fresh:  # an output: its reference was taken just before
                to_send.append(row)
            elif key not in held:
                newly_held.append(key)
        if newly_held:
            core.table.acquire_many(newly_held, [None] * len(newly_held))
            held.update(newly_held)
        if to_send:
            if last is not None:
                yield wire.update_graph(*last)
            wanted = [row[0] for row in to_send if row[0] in outputs or row[0] in frontier]
            last = (to_send, wanted, restrictions)
    rows, wanted, restrictions = last if last is not None else ([], [], {})
    yield wire.update_graph(rows, [*wanted, *prepared.outputs], restrictions)


async def _send_paced(core: ClientCore, messages: Iterable[ops.UpdateGraph], parts: int) -> None:
    """Send each message in a frame set of its own when the graph has several ``parts``
    (the stream keeps them apart and in order), so the scheduler handles one per loop
    turn; and make and pack one per loop turn here too: doing all at once held this loop
    (the scheduler's too, in a ``LocalCluster``) for 0.4 s on a 100,000-task graph, 0.3 s
    walking the rows of a million. A message sent while the client reconnects is kept
    for the replay, as any other."""
    pending = iter(messages)
    msg = next(pending, None)
    while msg is not None:
        core.send(msg, apart=parts > 1)
        if parts > 1:
            await asyncio.sleep(0)  # before the next one is made
        msg = next(pending, None)
