"""Waiting on the scheduler's state without polling: ``StateChanges`` wakes every waiter
after each batch of events the state handled, and the waiter checks its condition again.

Rules of this file:

* ``notify`` is called by the shell after every applied batch (``Scheduler.flush``).
* Every wait has a deadline; running past it raises ``TimeoutError`` with a message that
  names what did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class StateChanges:
    """An event set (then replaced) each time the state changed."""

    def __init__(self) -> None:
        self._changed: asyncio.Event | None = None

    def notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: Callable[[], str]
    ) -> None:
        """Return once ``condition()`` holds; ``TimeoutError(what())`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(what())
            if self._changed is None:
                self._changed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
