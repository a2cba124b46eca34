"""The scheduler's rpc shell around ``CoordinationState``: locks, semaphores, events,
queues, variables, published datasets and ``fire_and_forget``.

Rules of this file:

* Every decision is ``CoordinationState``'s; this shell waits, wakes and keeps keys alive.
* Values arrive and leave as ``Serialized``; nothing here unpickles them.
* Keys of futures inside stored values are wanted by the pseudo-client
  ``COORDINATION_CLIENT`` while something refers to them. The keys of a value handed to
  a reader are claimed for the reader (it wants them) in the same step; its last
  future's release frees them.
* Calls carrying keys name a claim the client sent just before on its stream: the call
  waits (on an event, with a deadline) until that claim arrived, so every earlier
  message of that client (its submissions, its releases) is applied first. No timer
  holds keys, and nothing polls.
* A blocked call waits for a change of its name, then asks the state again; one call
  waits at most ``MAX_WAIT`` seconds (the client asks again until its own deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from shoal._types import Key
from shoal.comm import Comm
from shoal.protocol import ops, rpc_scheduler
from shoal.scheduler import events as ev
from shoal.scheduler import instructions as ins
from shoal.scheduler.coordination import CoordinationState, HoldChange, Stored
from shoal.scheduler.state_records import FIRE_AND_FORGET_CLIENT
from shoal.stimulus import new_stimulus_id

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler

T = TypeVar("T")

#: the pseudo-client that wants keys referred to by stored values
COORDINATION_CLIENT = "shoal-coordination"
#: longest one blocked rpc waits on the scheduler before answering "not yet"
MAX_WAIT = 10.0
#: how often leases that were not refreshed are dropped
LEASE_CHECK_INTERVAL = 0.25
#: longest a call waits for the claim its client sent before it on the client's stream
CLAIM_WAIT = 30.0


class ClaimTimeoutError(TimeoutError):
    """A call named a claim that did not arrive on its client's stream in time."""


class Coordination:
    """Holds the primitives of one scheduler and answers their rpcs."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.state = CoordinationState()
        #: name -> event set (then dropped) when something about that name changes
        self._changed: dict[str, asyncio.Event] = {}
        #: claim id -> (client that sent it, event set once it arrived on that stream)
        self._claims: dict[str, tuple[str | None, asyncio.Event]] = {}

    def rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            rpc_scheduler.SchedulerSemaphoreAcquire.rpc: self.semaphore_acquire,
            rpc_scheduler.SchedulerSemaphoreRelease.rpc: self.semaphore_release,
            rpc_scheduler.SchedulerSemaphoreRefresh.rpc: self.semaphore_refresh,
            rpc_scheduler.SchedulerSemaphoreCount.rpc: self.semaphore_count,
            rpc_scheduler.SchedulerEventSet.rpc: self.event_set,
            rpc_scheduler.SchedulerEventClear.rpc: self.event_clear,
            rpc_scheduler.SchedulerEventWait.rpc: self.event_wait,
            rpc_scheduler.SchedulerQueueCreate.rpc: self.queue_create,
            rpc_scheduler.SchedulerQueuePut.rpc: self.queue_put,
            rpc_scheduler.SchedulerQueueGet.rpc: self.queue_get,
            rpc_scheduler.SchedulerQueueQsize.rpc: self.queue_qsize,
            rpc_scheduler.SchedulerVariableSet.rpc: self.variable_set,
            rpc_scheduler.SchedulerVariableGet.rpc: self.variable_get,
            rpc_scheduler.SchedulerVariableDelete.rpc: self.variable_delete,
            rpc_scheduler.SchedulerPublishDataset.rpc: self.publish_dataset,
            rpc_scheduler.SchedulerGetDataset.rpc: self.get_dataset,
            rpc_scheduler.SchedulerListDatasets.rpc: self.list_datasets,
            rpc_scheduler.SchedulerUnpublishDataset.rpc: self.unpublish_dataset,
            rpc_scheduler.SchedulerFireAndForget.rpc: self.fire_and_forget,
            rpc_scheduler.SchedulerForwardOutput.rpc: self.forward_output,
        }

    def attach(self) -> None:
        """Release fire-and-forget keys once they are done (wraps the scheduler's routes)."""
        route = self.scheduler._route
        for kind in (ins.KeyInMemory, ins.KeyErred):
            route[kind] = self._releasing_fire_and_forget(route[kind])

    def start(self) -> None:
        """Start dropping leases that were not refreshed in time (on the running loop)."""
        self.scheduler.periodic(self.expire_leases, LEASE_CHECK_INTERVAL, "lease-expiry")

    # -- waiting ------------------------------------------------------------------------------
    def _notify(self, *names: str) -> None:
        for name in names:
            event = self._changed.pop(name, None)
            if event is not None:
                event.set()

    async def _until(self, name: str, attempt: Callable[[], T | None], timeout: Any) -> T | None:
        """``attempt()`` until it gives a result, waking on changes of ``name``; None once
        ``timeout`` (at most ``MAX_WAIT``) passed."""
        wait = MAX_WAIT if timeout is None else max(0.0, min(float(timeout), MAX_WAIT))
        deadline = time.monotonic() + wait
        while True:
            result = attempt()
            remaining = deadline - time.monotonic()
            if result is not None or remaining <= 0 or self.scheduler.status != "running":
                return result
            changed = self._changed.setdefault(name, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # -- keys kept alive ------------------------------------------------------------------------
    def _apply(
        self, change: HoldChange, handed_to: str | None = None, given: Iterable[Key] = ()
    ) -> None:
        """Hold/release keys for ``COORDINATION_CLIENT``; ``given`` keys are claimed for the
        reader ``handed_to`` (its client's own release frees them)."""
        now = time.time()
        feed = self.scheduler.feed
        given = tuple(dict.fromkeys(given))
        if handed_to is not None and given:
            feed(
                ev.KeysDesired(
                    client=handed_to,
                    keys=given,
                    now=now,
                    stimulus_id=new_stimulus_id("claimed-by-reader"),
                )
            )
        if change.held:
            feed(
                ev.KeysDesired(
                    client=COORDINATION_CLIENT,
                    keys=change.held,
                    now=now,
                    stimulus_id=new_stimulus_id("coordination-hold"),
                )
            )
        if change.released:
            feed(
                ev.KeysReleased(
                    client=COORDINATION_CLIENT,
                    keys=change.released,
                    now=now,
                    stimulus_id=new_stimulus_id("coordination-release"),
                )
            )
        self.scheduler.flush(whole=True)

    # -- claims: calls ordered after their client's stream ----------------------------------------
    def claim_arrived(self, client: str, claim: str) -> None:
        """The stream of ``client`` brought ``claim``: what it sent before is applied."""
        self.scheduler.flush(whole=True)  # its submissions and releases, fed in this loop turn
        _awaited_by, arrived = self._claims.get(claim) or (None, asyncio.Event())
        self._claims[claim] = (client, arrived)
        arrived.set()

    async def _after_claim(self, claim: str | None) -> None:
        """Wait until ``claim`` arrived on its client's stream (None: the call has none)."""
        if claim is None:
            return
        _owner, arrived = self._claims.setdefault(str(claim), (None, asyncio.Event()))
        try:
            await asyncio.wait_for(arrived.wait(), CLAIM_WAIT)
        except TimeoutError:
            raise ClaimTimeoutError(
                f"claim {claim!r} did not arrive on its client's stream within {CLAIM_WAIT} s "
                "(the client's stream is gone or stalled)"
            ) from None
        finally:
            self._claims.pop(str(claim), None)
        self.scheduler.flush(whole=True)

    def open_claims(self) -> int:
        """Claims sent or awaited but not yet matched (0 when idle: nothing leaks)."""
        return len(self._claims)

    def client_gone(self, client: str) -> None:
        """A client's stream closed: the leases it held are free, its claims are void."""
        self._notify(*self.state.release_owner(client))
        for claim in [c for c, (owner, _e) in self._claims.items() if owner == client]:
            del self._claims[claim]

    # -- semaphores and locks -----------------------------------------------------------------
    async def semaphore_acquire(
        self,
        comm: Comm | None,
        name: str,
        lease_id: str,
        owner: str,
        max_leases: int = 1,
        lease_timeout: float = 30.0,
        timeout: float | None = None,
    ) -> bool:
        self.state.semaphore(name, int(max_leases), float(lease_timeout))

        def attempt() -> bool | None:
            return self.state.try_acquire(name, lease_id, owner, time.monotonic()) or None

        return bool(await self._until(name, attempt, timeout))

    def semaphore_release(self, comm: Comm | None, name: str, lease_id: str) -> bool:
        released = self.state.release(name, lease_id)
        self._notify(name)
        return released

    def semaphore_refresh(self, comm: Comm | None, leases: list[list[str]]) -> list[list[str]]:
        """Extend leases; the (name, lease id) pairs no longer held come back."""
        lost = self.state.refresh([(n, lease) for n, lease in leases], time.monotonic())
        return [list(pair) for pair in lost]

    def semaphore_count(self, comm: Comm | None, name: str) -> int:
        return self.state.n_leases(name)

    def expire_leases(self) -> None:
        self._notify(*self.state.expire(time.monotonic()))

    # -- events -----------------------------------------------------------------------------------
    def event_set(self, comm: Comm | None, name: str) -> None:
        self.state.set_event(name)
        self._notify(name)

    def event_clear(self, comm: Comm | None, name: str) -> None:
        self.state.clear_event(name)

    async def event_wait(self, comm: Comm | None, name: str, timeout: float | None = None) -> bool:
        return bool(await self._until(name, lambda: self.state.is_set(name) or None, timeout))

    # -- queues -----------------------------------------------------------------------------------
    def queue_create(self, comm: Comm | None, name: str, maxsize: int = 0) -> None:
        self.state.queue(name, int(maxsize))

    async def queue_put(
        self,
        comm: Comm | None,
        name: str,
        value: Any,
        keys: list[Key],
        timeout: float | None = None,
        claim: str | None = None,
    ) -> bool:
        item = Stored(value, tuple(keys))
        await self._after_claim(claim)

        def attempt() -> HoldChange | None:
            done, change = self.state.try_put(name, item)
            return change if done else None

        change = await self._until(name, attempt, timeout)
        if change is None:
            return False
        self._apply(change)
        self._notify(name)
        return True

    async def queue_get(
        self,
        comm: Comm | None,
        name: str,
        requester: str,
        timeout: float | None = None,
        batch: int | None = None,
        claim: str | None = None,
    ) -> list[list[Any]] | None:
        """``[[value, keys], ...]``, or None if nothing came within the timeout."""
        await self._after_claim(claim)
        return await self._until(name, lambda: self._take(name, batch, requester), timeout)

    def _take(self, name: str, batch: int | None, requester: str) -> list[list[Any]] | None:
        items, change = self.state.try_get(name, batch)
        if items is None:
            return None
        self._apply(change, requester, [k for item in items for k in item.keys])
        self._notify(name)  # a put waiting for room
        return [[item.value, list(item.keys)] for item in items]

    def queue_qsize(self, comm: Comm | None, name: str) -> int:
        return self.state.qsize(name)

    # -- variables --------------------------------------------------------------------------------
    async def variable_set(
        self, comm: Comm | None, name: str, value: Any, keys: list[Key], claim: str | None = None
    ) -> None:
        await self._after_claim(claim)
        self._apply(self.state.set_variable(name, Stored(value, tuple(keys))))
        self._notify(name)

    async def variable_get(
        self,
        comm: Comm | None,
        name: str,
        requester: str,
        timeout: float | None = None,
        claim: str | None = None,
    ) -> list[Any] | None:
        await self._after_claim(claim)
        item = await self._until(name, lambda: self.state.variables.get(name), timeout)
        if item is None:
            return None
        self._apply(HoldChange(), requester, item.keys)
        return [item.value, list(item.keys)]

    def variable_delete(self, comm: Comm | None, name: str) -> None:
        self._apply(self.state.delete_variable(name))

    # -- datasets ---------------------------------------------------------------------------------
    async def publish_dataset(
        self,
        comm: Comm | None,
        datasets: dict[str, list[Any]],
        override: bool = False,
        claim: str | None = None,
    ) -> None:
        await self._after_claim(claim)
        taken = [n for n in datasets if n in self.state.datasets]
        if taken and not override:
            raise KeyError(f"datasets already published: {taken} (pass override=True)")
        for name, (value, keys) in datasets.items():
            self._apply(self.state.publish(name, Stored(value, tuple(keys)), override=True))

    async def get_dataset(
        self, comm: Comm | None, name: str, requester: str, claim: str | None = None
    ) -> list[Any] | None:
        await self._after_claim(claim)
        item = self.state.datasets.get(name)
        if item is None:
            return None
        self._apply(HoldChange(), requester, item.keys)
        return [item.value, list(item.keys)]

    def list_datasets(self, comm: Comm | None = None) -> list[str]:
        return list(self.state.datasets)

    def unpublish_dataset(self, comm: Comm | None, name: str) -> None:
        self._apply(self.state.unpublish(name))

    # -- output of tasks (shoal.print, shoal.warn) -------------------------------------------------
    def forward_output(
        self, comm: Comm | None, kind: str, text: str, stream: str = "", category: str = ""
    ) -> None:
        """Send a task's printed text or warning to every client, unread."""
        # the rpc keeps print()'s word ("stream") for what the client op calls "file"
        output = ops.Output(
            kind=str(kind), text=str(text), file=str(stream), category=str(category)
        )
        msg = ops.to_msg(output)
        for client_stream in list(self.scheduler.client_streams.values()):
            if not client_stream.closed:
                client_stream.send(msg)

    # -- fire and forget --------------------------------------------------------------------------
    async def fire_and_forget(
        self, comm: Comm | None, keys: list[Key], claim: str | None = None
    ) -> None:
        await self._after_claim(claim)
        now = time.time()
        self.scheduler.feed(
            ev.KeysDesired(
                client=FIRE_AND_FORGET_CLIENT,
                keys=tuple(keys),
                now=now,
                stimulus_id=new_stimulus_id("fire-and-forget"),
            )
        )
        self.scheduler.flush(whole=True)

    def _releasing_fire_and_forget(
        self, route: Callable[[Any], tuple[Any, dict[str, Any]]]
    ) -> Callable[[Any], tuple[Any, dict[str, Any]]]:
        def routed(inst: Any) -> tuple[Any, dict[str, Any]]:
            if inst.client == FIRE_AND_FORGET_CLIENT:  # done: nobody waits for it any more
                now = time.time()
                self.scheduler.feed(
                    ev.KeysReleased(
                        client=FIRE_AND_FORGET_CLIENT,
                        keys=(inst.key,),
                        now=now,
                        stimulus_id=new_stimulus_id("forgotten"),
                    )
                )
            return route(inst)

        return routed
