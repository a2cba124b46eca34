"""Small, cheap records the server shells keep for the HTTP services to read.

Rules of this file:

* Recording is on the hot path (once per finished task, once per transfer): it appends a
  tuple to a bounded deque and bumps an integer. Nothing else; readers do the work.
* Times are the reporting process's ``time.time()`` (workers' clocks for task spans).
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import TypeVar

from shoal._types import Address, Key

_T = TypeVar("_T")

#: (key, worker, start, stop) of one finished task
TaskSpan = tuple[Key, Address, float, float]
#: (worker that received, worker that sent, number of keys, bytes, start, stop)
TransferSpan = tuple[Address, Address, int, int, float, float]


class TaskStream:
    """The scheduler's recent finished tasks and transfers, and running totals."""

    __slots__ = ("n_finished", "n_transfers", "tasks", "transfers")

    def __init__(self, maxlen: int = 100_000) -> None:
        #: latest finished tasks, oldest first
        self.tasks: deque[TaskSpan] = deque(maxlen=maxlen)
        #: latest transfers between workers, oldest first
        self.transfers: deque[TransferSpan] = deque(maxlen=maxlen // 10 or 1)
        #: tasks finished since the scheduler started (never decreases)
        self.n_finished = 0
        #: transfers reported since the scheduler started (never decreases)
        self.n_transfers = 0

    def task_finished(self, key: Key, worker: Address, start: float, stop: float) -> None:
        """Record one finished task (hot path)."""
        self.tasks.append((key, worker, start, stop))
        self.n_finished += 1

    def transfers_reported(self, worker: Address, spans: object) -> None:
        """Record the transfers a worker reported with its heartbeat (ignoring junk)."""
        if not isinstance(spans, list | tuple):
            return
        for span in spans:
            if isinstance(span, list | tuple) and len(span) == 5:
                sender, nkeys, nbytes, start, stop = span
                self.transfers.append(
                    (worker, str(sender), int(nkeys), int(nbytes), float(start), float(stop))
                )
                self.n_transfers += 1

    def recent_tasks(self, n: int) -> list[TaskSpan]:
        """The last ``n`` finished tasks, oldest first."""
        return _tail(self.tasks, n)

    def recent_transfers(self, n: int) -> list[TransferSpan]:
        """The last ``n`` transfers, oldest first."""
        return _tail(self.transfers, n)


class TransferLog:
    """A worker's transfer counters, and the transfers not yet told to the scheduler."""

    __slots__ = ("incoming_bytes", "incoming_count", "outgoing_bytes", "outgoing_count", "unsent")

    def __init__(self, max_unsent: int = 1000) -> None:
        self.incoming_bytes = 0
        self.incoming_count = 0
        self.outgoing_bytes = 0
        self.outgoing_count = 0
        #: (sender, nkeys, nbytes, start, stop) since the last heartbeat; oldest dropped first
        self.unsent: deque[tuple[Address, int, int, float, float]] = deque(maxlen=max_unsent)

    def received(self, sender: Address, nkeys: int, nbytes: int, start: float, stop: float) -> None:
        """Data arrived from a peer."""
        self.incoming_bytes += nbytes
        self.incoming_count += 1
        self.unsent.append((sender, nkeys, nbytes, start, stop))

    def sent(self, nbytes: int) -> None:
        """Data went to a peer or a client."""
        self.outgoing_bytes += nbytes
        self.outgoing_count += 1

    def take_unsent(self) -> list[tuple[Address, int, int, float, float]]:
        """The transfers to report with this heartbeat (and forget them here)."""
        spans = list(self.unsent)
        self.unsent.clear()
        return spans


class ClusterCounters:
    """The scheduler's running totals of workers joining, leaving and coming back."""

    __slots__ = ("_left_names", "restarts", "workers_added", "workers_lost", "workers_removed")

    #: names of departed workers remembered, to recognise a restart
    MAX_REMEMBERED = 10_000

    def __init__(self) -> None:
        self.workers_added = 0
        self.workers_removed = 0
        #: workers that left without saying goodbye (crash, lost connection, timeout)
        self.workers_lost = 0
        #: workers that joined under the name of a worker that had left
        self.restarts = 0
        self._left_names: dict[str, None] = {}

    def worker_joined(self, name: str) -> None:
        self.workers_added += 1
        if self._left_names.pop(name, 0) is None:
            self.restarts += 1

    def worker_left(self, name: str, expected: bool) -> None:
        self.workers_removed += 1
        if not expected:
            self.workers_lost += 1
        self._left_names[name] = None
        if len(self._left_names) > self.MAX_REMEMBERED:
            del self._left_names[next(iter(self._left_names))]


def _tail(items: deque[_T], n: int) -> list[_T]:
    if n <= 0:
        return []
    if n >= len(items):
        return list(items)
    out = list(islice(reversed(items), n))
    out.reverse()
    return out


__all__ = ["ClusterCounters", "TaskSpan", "TaskStream", "TransferLog", "TransferSpan"]
