"""Reference counting: which keys this client holds futures for, and how many.

Rules of this file:

* ``states[key]`` exists exactly while ``counts[key] > 0``: one ``FutureState`` per key,
  shared by every ``Future`` of that key.
* Counts go up synchronously (a ``Future`` exists the moment its count is taken) under
  ``_lock``, once per call: ``acquire_many`` takes the lock once for a whole ``map``.
* Counts go down from ``Future.__del__``, which may run in any thread at any moment
  (garbage collection), so it never blocks and never takes a lock: it appends the key to
  a deque and, if no flush is pending, schedules one on the loop. The flush decrements
  in one pass and hands the keys that reached zero to ``on_released`` (which sends
  ``client-releases-keys``). The flag is cleared *before* draining, so a key appended
  while a flush runs is either drained by it or schedules the next one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable

from shoal._types import Key
from shoal.client.future_state import FutureState


class KeyTable:
    """The client's live keys, their shared states and their reference counts."""

    def __init__(self) -> None:
        #: one state per live key (read without the lock: dict reads are atomic)
        self.states: dict[Key, FutureState] = {}
        #: how many ``Future`` objects hold each key
        self._counts: dict[Key, int] = {}
        self._lock = threading.Lock()
        #: keys whose futures were dropped, waiting for the next flush
        self._dropped: deque[Key] = deque()
        self._flush_scheduled = False
        #: schedules ``flush`` on the client's loop from any thread (set by the core)
        self.schedule_flush: Callable[[], None] | None = None
        #: called on the loop with the keys whose count reached zero (set by the core)
        self.on_released: Callable[[list[Key]], None] | None = None
        self.closed = False

    def acquire(self, key: Key) -> tuple[FutureState, bool]:
        """One more future for ``key``: the key's state, and whether the key is new here."""
        with self._lock:
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = FutureState(key)
                self._counts[key] = 1
                return state, True
            self._counts[key] += 1
            return state, False

    def acquire_many(self, keys: Iterable[Key], tokens: Iterable[str | None]) -> list[FutureState]:
        """``acquire`` for each key (repeats allowed), taking the lock once."""
        states = self.states
        counts = self._counts
        out = []
        with self._lock:
            for key, token in zip(keys, tokens, strict=True):
                state = states.get(key)
                if state is None:
                    state = states[key] = FutureState(key, token)
                    counts[key] = 1
                else:
                    counts[key] += 1
                out.append(state)
        return out

    def count(self, key: Key) -> int:
        return self._counts.get(key, 0)

    def drop(self, key: Key) -> None:
        """A future for ``key`` went away. Any thread, never blocks (``__del__`` calls it)."""
        if self.closed:
            return
        self._dropped.append(key)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            schedule = self.schedule_flush
            if schedule is not None:
                with contextlib.suppress(RuntimeError):  # the loop is gone: client closed
                    schedule()

    def flush(self) -> list[Key]:
        """Apply the drops (on the loop); release and return the keys that reached zero."""
        self._flush_scheduled = False
        dropped = self._dropped
        if not dropped:
            return []
        released = []
        with self._lock:
            while dropped:
                key = dropped.popleft()
                n = self._counts.get(key, 0) - 1
                if n > 0:
                    self._counts[key] = n
                elif n == 0:
                    del self._counts[key]
                    del self.states[key]
                    released.append(key)
        if released and self.on_released is not None:
            self.on_released(released)
        return released

    def clear(self) -> list[FutureState]:
        """Forget everything (the client closed); the states that were live."""
        with self._lock:
            self.closed = True
            states = list(self.states.values())
            self.states.clear()
            self._counts.clear()
            self._dropped.clear()
        return states
