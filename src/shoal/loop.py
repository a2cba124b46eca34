"""One background event loop per process, for the synchronous faces of clients and clusters.

Rules of this file:

* The loop runs in a daemon thread started on first use and shared by everyone in the
  process; synchronous methods submit coroutines to it and wait for their results.
* Calling ``run_sync`` from the loop's own thread would deadlock, so it raises instead.
* Every loop shoal makes (this one, and each ``shoal`` command's) comes from
  ``loop_factory``: uvloop's when uvloop is installed (``pip install shoal[uvloop]``) and
  the setting ``shoal.event-loop.uvloop`` is on (``SHOAL_EVENT_LOOP__UVLOOP=false`` turns
  it off), else asyncio's own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from shoal.errors import ShoalTimeoutError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes shoal's event loops: uvloop's ``new_event_loop`` when it is installed and
    allowed, else asyncio's."""
    from shoal import inherited_settings

    if inherited_settings.start_setting(inherited_settings.UVLOOP):
        try:
            uvloop = importlib.import_module("uvloop")  # an optional dependency
        except ImportError:
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop from ``loop_factory`` (Python 3.10, which lacks
    ``asyncio.Runner``, always gets asyncio's own loop)."""
    factory = loop_factory()
    runner_type: Any = getattr(asyncio, "Runner", None)
    if runner_type is None or factory is asyncio.new_event_loop:
        return asyncio.run(main)
    with runner_type(loop_factory=factory) as runner:
        result: T = runner.run(main)
        return result


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared background loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = loop_factory()()
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
