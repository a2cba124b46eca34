"""An in-memory bus between one SchedulerState, fake workers and a client, for simulations.

Each direction between the scheduler and a worker is one FIFO link, like the batched
stream it stands for; *which* link delivers next is chosen by a seeded ``random.Random``,
so every interleaving is reproducible from its seed.

A node on the bus needs two methods (so a real WorkerState can be wrapped in later):

* ``deliver(instruction) -> list[SchedulerEvent]``: an instruction from the scheduler
  arrives; the node answers with events for the scheduler (often none);
* ``step(now) -> list[SchedulerEvent]``: do one unit of local work (run one task);
  ``runnable()`` says whether there is any.

The fake worker here keeps results in a dict, runs a run spec ``(func, dep_keys)`` by
calling ``func(*inputs)``, and fetches inputs straight out of its peers' dicts.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar, cast

from shoal._types import Address, Key
from shoal.scheduler.events import (
    DataMissing,
    SchedulerEvent,
    TaskErred,
    TaskFinished,
    TaskStarted,
    WhoHasRefreshRequested,
    WorkerAddedKeys,
)
from shoal.scheduler.instructions import (
    ComputeTask,
    FreeKeys,
    RefreshWhoHas,
    SchedulerInstruction,
)


class Node(Protocol):
    address: Address

    def deliver(self, instruction: SchedulerInstruction) -> list[SchedulerEvent]: ...

    def step(self, now: float) -> list[SchedulerEvent]: ...

    def runnable(self) -> bool: ...


class Bus:
    """FIFO links scheduler → worker and worker → scheduler; client messages collected."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: instructions on their way to each worker
        self.to_worker: dict[Address, deque[SchedulerInstruction]] = {}
        #: events on their way from each worker to the scheduler
        self.to_scheduler: dict[Address, deque[SchedulerEvent]] = {}
        #: everything the scheduler told clients, in order
        self.client_messages: list[SchedulerInstruction] = []

    def connect(self, address: Address) -> None:
        self.to_worker[address] = deque()
        self.to_scheduler[address] = deque()

    def cut(self, address: Address) -> None:
        """The worker is gone: whatever was in flight to or from it is lost."""
        del self.to_worker[address], self.to_scheduler[address]

    def post_instructions(self, instructions: Iterable[SchedulerInstruction]) -> None:
        for inst in instructions:
            worker = getattr(inst, "worker", None)
            if worker is None:
                self.client_messages.append(inst)
            elif worker in self.to_worker:
                self.to_worker[worker].append(inst)

    def post_events(self, address: Address, events: Iterable[SchedulerEvent]) -> None:
        if address in self.to_scheduler:
            self.to_scheduler[address].extend(events)

    def busy_links(self) -> list[tuple[str, Address]]:
        links = [("to_worker", a) for a, q in self.to_worker.items() if q]
        links += [("to_scheduler", a) for a, q in self.to_scheduler.items() if q]
        return links

    def take(self, queue: deque[M], most: int) -> list[M]:
        """Up to ``most`` messages off one link, a batch as the batched stream would send."""
        n = self.rng.randint(1, most)
        return [queue.popleft() for _ in range(min(n, len(queue)))]


M = TypeVar("M")


class FakeWorker:
    """Holds values in a dict, runs ``(func, dep_keys)`` specs, fetches from peers' dicts."""

    def __init__(
        self,
        address: Address,
        peers: dict[Address, FakeWorker],
        rng: random.Random,
        duration: Callable[[Key], float] = lambda key: 0.001,
    ) -> None:
        self.address = address
        self.peers = peers
        self.rng = rng
        self.duration = duration
        #: results held here
        self.data: dict[Key, object] = {}
        #: tasks to run (latest attempt per key), with where to find their inputs
        self.tasks: dict[Key, ComputeTask] = {}
        #: tasks waiting for a who_has refresh before they can fetch an input
        self.blocked: set[Key] = set()
        #: per task, updated locations of its inputs
        self.who_has: dict[Key, dict[Key, tuple[Address, ...]]] = {}
        #: how many tasks it ran
        self.executed = 0

    def runnable(self) -> bool:
        return len(self.tasks) > len(self.blocked)

    def deliver(self, inst: SchedulerInstruction) -> list[SchedulerEvent]:
        if isinstance(inst, ComputeTask):
            self.tasks[inst.key] = inst
            self.who_has[inst.key] = dict(inst.who_has)
            self.blocked.discard(inst.key)
        elif isinstance(inst, FreeKeys):
            for key in inst.keys:
                self.tasks.pop(key, None)
                self.who_has.pop(key, None)
                self.blocked.discard(key)
                self.data.pop(key, None)
        elif isinstance(inst, RefreshWhoHas):
            for key, where in self.who_has.items():
                for dep, holders in inst.who_has.items():
                    if dep in where:
                        where[dep] = holders
                self.blocked.discard(key)
        return []

    def step(self, now: float) -> list[SchedulerEvent]:
        key = self.rng.choice(sorted((k for k in self.tasks if k not in self.blocked), key=str))
        ct = self.tasks[key]
        func, dep_keys = cast("tuple[Callable[..., object], list[Key]]", ct.run_spec)
        events: list[SchedulerEvent] = [
            TaskStarted(
                stimulus_id=f"start-{key}-{ct.run_id}",
                worker=self.address,
                key=key,
                run_id=ct.run_id,
                now=now,
            )
        ]
        missing, fetched = self._gather(key, dep_keys, events)
        if fetched:
            events.append(
                WorkerAddedKeys(
                    stimulus_id=f"add-{key}-{now}",
                    worker=self.address,
                    keys=tuple(fetched),
                    now=now,
                )
            )
        if missing:
            self.blocked.add(key)
            events.append(
                WhoHasRefreshRequested(
                    stimulus_id=f"refresh-{key}-{now}",
                    worker=self.address,
                    keys=tuple(missing),
                    now=now,
                )
            )
            return events
        del self.tasks[key], self.who_has[key]
        self.executed += 1
        events.append(self._run(ct, func, [self.data[d] for d in dep_keys], now))
        return events

    def _gather(
        self, key: Key, dep_keys: Iterable[Key], events: list[SchedulerEvent]
    ) -> tuple[list[Key], list[Key]]:
        """Fetch inputs from peers; report holders that did not have them."""
        missing, fetched = [], []
        for dep in dep_keys:
            if dep in self.data:
                continue
            for holder in self.who_has[key].get(dep, ()):
                peer = self.peers.get(holder)
                if peer is not None and dep in peer.data:
                    self.data[dep] = peer.data[dep]
                    fetched.append(dep)
                    break
                events.append(
                    DataMissing(
                        stimulus_id=f"missing-{dep}-{holder}",
                        worker=self.address,
                        key=dep,
                        errant_worker=holder,
                    )
                )
            else:
                missing.append(dep)
        return missing, fetched

    def _run(
        self, ct: ComputeTask, func: Callable[..., object], args: list[object], now: float
    ) -> SchedulerEvent:
        stop = now + self.duration(ct.key)
        try:
            value = func(*args)
        except Exception as exc:
            return TaskErred(
                stimulus_id=f"erred-{ct.key}-{ct.run_id}",
                worker=self.address,
                key=ct.key,
                run_id=ct.run_id,
                exception=exc,
                traceback=None,
                exception_text=repr(exc),
                traceback_text="",
                now=stop,
            )
        self.data[ct.key] = value
        return TaskFinished(
            stimulus_id=f"done-{ct.key}-{ct.run_id}",
            worker=self.address,
            key=ct.key,
            run_id=ct.run_id,
            nbytes=8,
            type_name="int",
            start=now,
            stop=stop,
            now=stop,
        )
