"""The state of the coordination primitives the scheduler holds: pure data, no IO.

Semaphores (and locks: semaphores with one lease), events, queues, variables and
published datasets, by name. Values are opaque to this module (the shell stores
``Serialized`` bytes it never unpickles); each value comes with the keys of the futures
inside it, and ``KeyHolds`` counts how many stored values refer to each key, so the shell
can keep those keys wanted on the scheduler exactly while something here refers to them.

Rules of this file:

* PURE: no asyncio, time, sockets or logging. Time comes in as ``now``; the shell does
  the waiting (a blocked ``acquire`` or ``get`` waits for a change, then asks again).
* Every method that changes what a waiter could see returns or implies the names that
  changed, so the shell wakes exactly those waiters.
* Methods that store or drop values return the keys whose hold count went from 0 to 1
  (``held``) or from 1 to 0 (``released``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shoal._types import Key


@dataclass(frozen=True, slots=True)
class Stored:
    """A value as the scheduler keeps it: opaque bytes and the keys of futures in it."""

    value: Any
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class HoldChange:
    """Keys that started (``held``) or stopped (``released``) being referred to here."""

    held: tuple[Key, ...] = ()
    released: tuple[Key, ...] = ()

    def __add__(self, other: HoldChange) -> HoldChange:
        return HoldChange(self.held + other.held, self.released + other.released)


class KeyHolds:
    """How many stored values refer to each key."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()

    def hold(self, keys: Iterable[Key]) -> HoldChange:
        held = []
        for key in keys:
            self.counts[key] += 1
            if self.counts[key] == 1:
                held.append(key)
        return HoldChange(held=tuple(held))

    def drop(self, keys: Iterable[Key]) -> HoldChange:
        released = []
        for key in keys:
            if self.counts.get(key, 0) <= 0:
                continue
            self.counts[key] -= 1
            if self.counts[key] == 0:
                del self.counts[key]
                released.append(key)
        return HoldChange(released=tuple(released))


@dataclass(slots=True)
class Lease:
    owner: str
    expires: float


@dataclass(slots=True)
class Semaphore:
    max_leases: int
    lease_timeout: float
    #: lease id -> lease
    leases: dict[str, Lease] = field(default_factory=dict)


@dataclass(slots=True)
class Queue:
    maxsize: int
    items: deque[Stored] = field(default_factory=deque)


class CoordinationState:
    """Every primitive the scheduler holds, by name."""

    def __init__(self) -> None:
        self.semaphores: dict[str, Semaphore] = {}
        self.events: set[str] = set()
        self.queues: dict[str, Queue] = {}
        self.variables: dict[str, Stored] = {}
        self.datasets: dict[str, Stored] = {}
        self.holds = KeyHolds()

    # -- semaphores and locks -----------------------------------------------------------------
    def semaphore(self, name: str, max_leases: int, lease_timeout: float) -> Semaphore:
        """The semaphore ``name``, made on first use; ``ValueError`` on a different size."""
        if max_leases < 1:
            raise ValueError(f"semaphore {name!r}: max_leases must be >= 1, not {max_leases}")
        if lease_timeout <= 0:
            raise ValueError(f"semaphore {name!r}: lease_timeout must be > 0")
        sem = self.semaphores.get(name)
        if sem is None:
            sem = self.semaphores[name] = Semaphore(max_leases, lease_timeout)
        elif sem.max_leases != max_leases:
            raise ValueError(
                f"semaphore {name!r} exists with max_leases={sem.max_leases}, not {max_leases}"
            )
        return sem

    def try_acquire(self, name: str, lease_id: str, owner: str, now: float) -> bool:
        """Give ``lease_id`` a lease if one is free (True also if it holds one already)."""
        sem = self.semaphores[name]
        if lease_id in sem.leases:
            sem.leases[lease_id].expires = now + sem.lease_timeout
            return True
        if len(sem.leases) >= sem.max_leases:
            return False
        sem.leases[lease_id] = Lease(owner, now + sem.lease_timeout)
        return True

    def release(self, name: str, lease_id: str) -> bool:
        """Give the lease back; False if it was not held (expired, or never acquired)."""
        sem = self.semaphores.get(name)
        return sem is not None and sem.leases.pop(lease_id, None) is not None

    def refresh(self, leases: Iterable[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        """Extend the given (name, lease id) leases; those no longer held are returned."""
        lost = []
        for name, lease_id in leases:
            sem = self.semaphores.get(name)
            lease = sem.leases.get(lease_id) if sem is not None else None
            if sem is None or lease is None:
                lost.append((name, lease_id))
            else:
                lease.expires = now + sem.lease_timeout
        return lost

    def expire(self, now: float) -> set[str]:
        """Drop leases not refreshed in time; the names of semaphores that got room."""
        changed = set()
        for name, sem in self.semaphores.items():
            for lease_id, lease in list(sem.leases.items()):
                if lease.expires <= now:
                    del sem.leases[lease_id]
                    changed.add(name)
        return changed

    def release_owner(self, owner: str) -> set[str]:
        """``owner`` (a client) went away: drop its leases; the names that got room."""
        changed = set()
        for name, sem in self.semaphores.items():
            for lease_id, lease in list(sem.leases.items()):
                if lease.owner == owner:
                    del sem.leases[lease_id]
                    changed.add(name)
        return changed

    def n_leases(self, name: str) -> int:
        sem = self.semaphores.get(name)
        return len(sem.leases) if sem is not None else 0

    # -- events ---------------------------------------------------------------------------------
    def set_event(self, name: str) -> None:
        self.events.add(name)

    def clear_event(self, name: str) -> None:
        self.events.discard(name)

    def is_set(self, name: str) -> bool:
        return name in self.events

    # -- queues ---------------------------------------------------------------------------------
    def queue(self, name: str, maxsize: int = 0) -> Queue:
        """The queue ``name``, made on first use (``maxsize`` 0: unbounded)."""
        if maxsize < 0:
            raise ValueError(f"queue {name!r}: maxsize must be >= 0, not {maxsize}")
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue(maxsize)
        return q

    def try_put(self, name: str, item: Stored) -> tuple[bool, HoldChange]:
        """Append ``item`` unless the queue is full."""
        q = self.queue(name)
        if q.maxsize and len(q.items) >= q.maxsize:
            return False, HoldChange()
        q.items.append(item)
        return True, self.holds.hold(item.keys)

    def try_get(
        self, name: str, batch: int | None = None
    ) -> tuple[list[Stored] | None, HoldChange]:
        """The oldest item (a list of one); with ``batch`` n > 0, the n oldest once there
        are n; with ``batch`` 0, all there are (maybe none). None: not there yet."""
        q = self.queue(name)
        want = 1 if batch is None else batch
        if len(q.items) < want:
            return None, HoldChange()
        n = len(q.items) if want == 0 else want
        taken = [q.items.popleft() for _ in range(n)]
        change = HoldChange()
        for item in taken:
            change += self.holds.drop(item.keys)
        return taken, change

    def qsize(self, name: str) -> int:
        q = self.queues.get(name)
        return len(q.items) if q is not None else 0

    # -- variables and datasets -------------------------------------------------------------------
    def set_variable(self, name: str, item: Stored) -> HoldChange:
        change = self.holds.hold(item.keys)
        old = self.variables.get(name)
        self.variables[name] = item
        if old is not None:
            change += self.holds.drop(old.keys)
        return change

    def delete_variable(self, name: str) -> HoldChange:
        old = self.variables.pop(name, None)
        return self.holds.drop(old.keys) if old is not None else HoldChange()

    def publish(self, name: str, item: Stored, override: bool) -> HoldChange:
        """Publish ``item`` as ``name``; ``KeyError`` if taken (and not ``override``)."""
        if name in self.datasets and not override:
            raise KeyError(f"dataset {name!r} is already published (pass override=True)")
        change = self.holds.hold(item.keys)
        old = self.datasets.get(name)
        self.datasets[name] = item
        if old is not None:
            change += self.holds.drop(old.keys)
        return change

    def unpublish(self, name: str) -> HoldChange:
        """Remove the dataset ``name``; ``KeyError`` if there is none."""
        old = self.datasets.pop(name, None)
        if old is None:
            raise KeyError(f"no dataset named {name!r}")
        return self.holds.drop(old.keys)
