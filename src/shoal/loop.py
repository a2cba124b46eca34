"""One background event loop per process, for the synchronous faces of clients and clusters.

Rules of this file:

* The loop runs in a daemon thread started on first use and shared by everyone in the
  process; synchronous methods submit coroutines to it and wait for their results.
* Calling ``run_sync`` from the loop's own thread would deadlock, so it raises instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from shoal.errors import ShoalTimeoutError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared background loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="shoal-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait here for its result (or exception).

    A coroutine's own exceptions (a task's ``TimeoutError`` included) come back unchanged;
    only the caller's own ``timeout`` turns into ``ShoalTimeoutError``.
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError("a synchronous shoal call was made on the shoal loop thread")
    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():  # the coroutine's own TimeoutError: pass it on as it is
            raise
        future.cancel()
        raise ShoalTimeoutError(f"the operation did not finish within {timeout}s") from None
    except BaseException:
        future.cancel()  # KeyboardInterrupt while waiting: stop the coroutine too
        raise
