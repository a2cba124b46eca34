"""Reaching the scheduler: at start and again after the connection was lost.

Rules of this file:

* A worker that cannot reach its scheduler keeps trying, with a growing, jittered pause,
  until ``death_timeout`` (None: for ever, as in dask); then it gives up and the caller
  exits with ``SCHEDULER_LOST_EXIT_CODE``, never 0.
* Before each try the address is read again from the scheduler file, if one was given:
  a restarted scheduler may listen elsewhere.
* What a worker reports when it (re)registers (keys it holds with their sizes, keys it is
  running) is computed here from ``WorkerState``, so the shell stays thin.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shoal import discovery
from shoal.errors import CommError, HandshakeError
from shoal.worker.state import WorkerState

logger = logging.getLogger("shoal.worker")

#: first and longest pause between two tries to reach the scheduler (seconds)
RETRY_FIRST, RETRY_MAX = 0.1, 1.0
#: task states a rejoining worker forgets: the scheduler assigns them again if needed
FORGOTTEN_ON_REJOIN = frozenset({"waiting", "ready", "constrained", "fetch", "flight", "missing"})


def retry_delays(rng: random.Random | None = None) -> Any:
    """Pauses between tries: doubling from ``RETRY_FIRST`` to ``RETRY_MAX``, +/- 25 %."""
    rng = rng or random.Random()
    delay = RETRY_FIRST
    while True:
        yield delay * rng.uniform(0.75, 1.25)
        delay = min(delay * 2, RETRY_MAX)


def holdings_report(state: WorkerState) -> dict[str, Any]:
    """What this worker holds (``{key: nbytes}``) and runs (keys), for the scheduler."""
    tasks = state.tasks.items()
    held = [(key, state.nbytes.get(key, 0)) for key, ts in tasks if ts.state == "memory"]
    running = [key for key, ts in tasks if ts.state in ("executing", "long-running")]
    return {"held": held, "running": running}


def forgotten_on_rejoin(state: WorkerState) -> tuple[Any, ...]:
    """Keys whose assignment died with the old connection (neither held nor running)."""
    return tuple(key for key, ts in state.tasks.items() if ts.state in FORGOTTEN_ON_REJOIN)


async def reach_scheduler(
    register: Callable[[str], Awaitable[None]],
    address: str,
    *,
    death_timeout: float | None,
    scheduler_file: str | None = None,
    is_closing: Callable[[], bool] = lambda: False,
) -> str | None:
    """Call ``register(address)`` until it succeeds; return the address it succeeded with,
    or None once ``death_timeout`` has passed (or the worker started closing)."""
    deadline = None if death_timeout is None else time.monotonic() + death_timeout
    delays = retry_delays()
    tries = 0
    while not is_closing():
        if scheduler_file:
            address = _address_from_file(scheduler_file, address)
        tries += 1
        try:
            await register(address)
            return address
        except HandshakeError:
            raise  # refused credentials (token, certificate, role): trying again cannot help
        except (CommError, OSError, TimeoutError) as exc:
            _raise_if_cancelled()
            if tries == 1 or tries % 20 == 0:  # a line now and then, not one per try
                logger.warning("cannot reach scheduler %s (try %d): %s", address, tries, exc)
        pause = next(delays)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pause = min(pause, left)
        await asyncio.sleep(pause)
    return None


def _raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was asked to stop. ``asyncio.wait_for``
    (Python 3.10 and 3.11; used by ``connect``) can turn a cancellation that races the
    inner connect's failure into that failure, and this retry loop would then try again
    for ever: a worker still looking for its scheduler ignored SIGTERM."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # 3.11+
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError


def _address_from_file(path: str, fallback: str) -> str:
    try:
        address, _ = discovery.read_scheduler_file(path)
    except (OSError, ValueError, KeyError) as exc:
        logger.debug("scheduler file %s unreadable: %s", path, exc)
        return fallback
    return address


__all__ = ["forgotten_on_rejoin", "holdings_report", "reach_scheduler", "retry_delays"]
