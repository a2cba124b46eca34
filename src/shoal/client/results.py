"""What ``Future.result()``, ``exception()`` and ``traceback()`` do, in both client modes.

``result()`` of a synchronous client makes ONE hop to the loop, which waits for the key
and fetches its value as soon as the scheduler reports it (no wake-up of the caller's
thread in between, and no second hop to start the fetch); a failure is raised in the
caller's thread. ``exception()`` and ``traceback()`` wait in the caller's thread on the
future's own event (nothing to fetch). An asynchronous client does the same in a coroutine.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shoal import loop as shared_loop
from shoal.client.future_state import FutureState
from shoal.errors import ShoalTimeoutError
from shoal.loop import run_sync

if TYPE_CHECKING:
    from shoal.client.future import Future


def result(future: Future, timeout: float | None) -> Any:
    """The value (or an awaitable of it, for an asynchronous client)."""
    if future.client.asynchronous:
        return _result_async(future, timeout)
    state = future._state
    if not state.done() and shared_loop.in_loop_thread():
        raise RuntimeError("waiting for a future on the shoal loop thread would deadlock")
    value = run_sync(_value_or_failed(future, timeout))
    if value is _FAILED:
        assert state.error is not None
        raise state.error.rebuild()  # here, with the remote traceback and no loop frames
    return value


def exception(future: Future, timeout: float | None) -> Any:
    """The exception of a failed future, None if it succeeded (or an awaitable of it)."""
    if future.client.asynchronous:
        return _exception_async(future, timeout)
    _wait_here(future, timeout)
    return _exception_of(future._state)


def traceback(future: Future, timeout: float | None) -> Any:
    """The remote traceback of a failed future (or an awaitable of it)."""
    if future.client.asynchronous:
        return _traceback_async(future, timeout)
    _wait_here(future, timeout)
    return _traceback_of(future._state)


async def _gather(future: Future) -> Any:
    from shoal.client import data  # data imports Future: import it when first needed

    return await data.gather(future.client._running_core(), future)


#: what ``_value_or_failed`` returns for a future that did not finish
_FAILED = object()


async def _value_or_failed(future: Future, timeout: float | None) -> Any:
    """On the loop: wait until done, then the value (fetched at once), or ``_FAILED``."""
    await _wait_async(future, timeout)
    if future._state.status != "finished":
        return _FAILED
    return await _gather(future)


async def _result_async(future: Future, timeout: float | None) -> Any:
    await _wait_async(future, timeout)
    return await _gather(future)


async def _exception_async(future: Future, timeout: float | None) -> BaseException | None:
    await _wait_async(future, timeout)
    return _exception_of(future._state)


async def _traceback_async(future: Future, timeout: float | None) -> TracebackType | None:
    await _wait_async(future, timeout)
    return _traceback_of(future._state)


def _wait_here(future: Future, timeout: float | None) -> None:
    if shared_loop.in_loop_thread() and not future.done():
        raise RuntimeError("waiting for a future on the shoal loop thread would deadlock")
    if not future._state.wait(timeout):
        raise ShoalTimeoutError(f"{future.key!r} was not done after {timeout}s")


async def _wait_async(future: Future, timeout: float | None) -> None:
    try:
        await asyncio.wait_for(future._state.wait_async(), timeout)
    except TimeoutError:
        raise ShoalTimeoutError(f"{future.key!r} was not done after {timeout}s") from None


def _exception_of(state: FutureState) -> BaseException | None:
    if state.status == "finished" or state.error is None:
        return None
    exc = state.error.rebuild()
    if state.status == "cancelled":  # as concurrent.futures does
        raise exc
    return exc


def _traceback_of(state: FutureState) -> TracebackType | None:
    exc = _exception_of(state)
    return None if exc is None else exc.__traceback__
