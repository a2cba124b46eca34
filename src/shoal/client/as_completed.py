"""``as_completed`` and ``wait``: futures in the order they finish, and waiting for many.

Both work from any thread and from coroutines. They hang one listener on each pending
future's state; a listener runs on the thread that finished the future (the client's
loop), so it only appends to a queue and sets an event, never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Generic, Literal, NamedTuple, TypeVar, cast, overload

from shoal.client.future import Future
from shoal.client.future_state import FutureState
from shoal.errors import ShoalTimeoutError

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"


#: what an ``as_completed`` yields: a ``Future``, or a ``(future, result)`` pair
Yielded = TypeVar("Yielded", bound="Future | tuple[Future, Any]")


class as_completed(Generic[Yielded]):
    """Iterate over futures as they complete (``for`` or ``async for``).

    ``with_results=True`` yields ``(future, result)`` pairs; a failed future then raises
    its exception when its turn comes, unless ``raise_errors=False`` (the exception is
    yielded as the result). More futures can join with ``add`` or ``update`` while
    iterating; iteration ends when every future added so far has been yielded.
    ``timeout`` (seconds, for the whole iteration) raises ``TimeoutError`` when futures
    are still pending then. ``batches()``/``next_batch()`` yield what is ready at once;
    ``has_ready()`` says whether something is; ``clear()`` forgets every future.
    ``loop`` is accepted for dask's signature and has no effect.
    """

    # what it yields is in the type: futures, or (with_results=True) (future, result) pairs
    @overload
    def __init__(
        self: as_completed[Future],
        futures: Iterable[Future] | None = (),
        loop: Any = None,
        with_results: Literal[False] = False,
        raise_errors: bool = True,
        *,
        timeout: float | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: as_completed[tuple[Future, Any]],
        futures: Iterable[Future] | None,
        loop: Any,
        with_results: Literal[True],
        raise_errors: bool = True,
        *,
        timeout: float | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: as_completed[tuple[Future, Any]],
        futures: Iterable[Future] | None = (),
        loop: Any = None,
        *,
        with_results: Literal[True],
        raise_errors: bool = True,
        timeout: float | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: as_completed[Future | tuple[Future, Any]],
        futures: Iterable[Future] | None = (),
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: float | None = None,
    ) -> None: ...
    def __init__(
        self,
        futures: Iterable[Future] | None = (),
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: float | None = None,
    ) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + float(timeout)
        self._timeout = timeout
        #: bumped by clear(): listeners of older generations are ignored
        self._generation = 0
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: futures added and not yet yielded
        self._remaining = 0
        #: set by listeners when a coroutine waits (see _wait_async); with its loop
        self._async_wakeup: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self.update(futures or ())

    def add(self, future: Future) -> None:
        """Also yield ``future`` once it completes."""
        with self._lock:
            self._remaining += 1
            generation = self._generation

        def listener(_: FutureState) -> None:
            if generation != self._generation:
                return
            self._done.put(future)
            wakeup = self._async_wakeup
            if wakeup is not None:
                wakeup[0].call_soon_threadsafe(wakeup[1].set)

        future._state.add_listener(listener)

    def update(self, futures: Iterable[Future]) -> None:
        """``add`` each of ``futures``."""
        for future in futures:
            self.add(future)

    def count(self) -> int:
        """How many futures are still to be yielded."""
        return self._remaining

    def is_empty(self) -> bool:
        return self._remaining == 0

    def has_ready(self) -> bool:
        """Whether a completed future is waiting to be yielded."""
        return not self._done.empty()

    def clear(self) -> None:
        """Forget every future added: iteration ends (later completions are ignored)."""
        with self._lock:
            self._generation += 1
            self._remaining = 0
            while not self._done.empty():
                self._done.get_nowait()

    def next(self) -> Yielded:
        """The next completed future (``with_results``: the pair)."""
        return self.__next__()

    def next_batch(self, block: bool = True) -> list[Yielded]:
        """Every future completed by now (at least one, waiting for it, if ``block``)."""
        batch = []
        if block and self._remaining:
            batch.append(self.__next__())
        while self._remaining and self.has_ready():
            batch.append(self.__next__())
        return batch

    def batches(self) -> Iterator[list[Yielded]]:
        """Lists of futures, each what completed since the last one."""
        while self._remaining:
            yield self.next_batch(block=True)

    def _left(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.0)

    def _timed_out(self) -> ShoalTimeoutError:
        return ShoalTimeoutError(
            f"as_completed: {self._remaining} futures were not done after {self._timeout}s"
        )

    def _take(self, future: Future) -> Future:
        with self._lock:
            self._remaining -= 1
        return future

    # -- synchronous iteration -----------------------------------------------------------------
    def __iter__(self) -> Iterator[Yielded]:
        return self

    def __next__(self) -> Yielded:
        if self._remaining == 0:
            raise StopIteration
        try:
            done = self._done.get(timeout=self._left())
        except queue.Empty:
            raise self._timed_out() from None
        future = self._take(done)
        if not self.with_results:
            return cast(Yielded, future)  # the __init__ overloads tie the type to the flag
        return cast(Yielded, (future, self._result_of(future)))

    def _result_of(self, future: Future) -> Any:
        if future.status != "finished" and not self.raise_errors:
            return future.exception()
        return future.result()

    # -- asynchronous iteration ----------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[Yielded]:
        return self

    async def __anext__(self) -> Yielded:
        if self._remaining == 0:
            raise StopAsyncIteration
        future = self._take(await self._next_done())
        if not self.with_results:
            return cast(Yielded, future)
        result = (
            future.exception()
            if future.status != "finished" and not self.raise_errors
            else future.result()
        )
        if inspect.isawaitable(result):
            result = await result
        return cast(Yielded, (future, result))

    async def _next_done(self) -> Future:
        if self._async_wakeup is None:
            self._async_wakeup = (asyncio.get_running_loop(), asyncio.Event())
        event = self._async_wakeup[1]
        while True:
            event.clear()
            try:
                return self._done.get_nowait()
            except queue.Empty:
                try:
                    await asyncio.wait_for(event.wait(), self._left())
                except TimeoutError:
                    raise self._timed_out() from None


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Future]
    not_done: set[Future]


def wait(
    fs: Future | Iterable[Future],
    timeout: float | None = None,
    return_when: Literal["ALL_COMPLETED", "FIRST_COMPLETED"] = "ALL_COMPLETED",
) -> Any:
    """Wait until all futures (or the first, ``return_when="FIRST_COMPLETED"``) are done.

    Returns ``DoneAndNotDoneFutures(done, not_done)``; ``ShoalTimeoutError`` when
    ``timeout`` passes first. With futures of an asynchronous client it returns an
    awaitable. Done means finished, erred, cancelled or lost: ``wait`` does not raise a
    task's exception.
    """
    futures = [fs] if isinstance(fs, Future) else list(fs)
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED):
        raise ValueError(
            f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, not {return_when!r}"
        )
    pending = list({f._state: None for f in futures if not f.done()})
    needed = _needed(futures, pending, return_when)
    if futures and futures[0].client.asynchronous:
        return _wait_async(futures, pending, needed, timeout)
    countdown = _Countdown(needed)
    _listen(pending, countdown)
    try:
        if not countdown.wait(timeout):
            raise _timeout_error(futures, timeout)
    finally:
        _unlisten(pending, countdown)
    return _split(futures)


def _needed(futures: list[Future], pending: list[FutureState], return_when: str) -> int:
    """How many of the ``pending`` states must finish before ``wait`` returns."""
    if return_when == FIRST_COMPLETED:
        all_pending = len(pending) == len({f._state for f in futures})
        return 1 if pending and all_pending else 0
    return len(pending)


def _listen(pending: list[FutureState], countdown: _Countdown) -> None:
    for state in pending:
        state.add_listener(countdown.listener)


def _unlisten(pending: list[FutureState], countdown: _Countdown) -> None:
    for state in pending:
        state.remove_listener(countdown.listener)


async def _wait_async(
    futures: list[Future], pending: list[FutureState], needed: int, timeout: float | None
) -> Any:
    countdown = _Countdown(needed, asyncio.get_running_loop())
    _listen(pending, countdown)
    try:
        await asyncio.wait_for(countdown.wait_async(), timeout)
    except TimeoutError:
        raise _timeout_error(futures, timeout) from None
    finally:
        _unlisten(pending, countdown)
    return _split(futures)


class _Countdown:
    """Set once ``needed`` listeners fired; for a thread or for a coroutine on ``loop``."""

    def __init__(self, needed: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.needed = needed
        self._lock = threading.Lock()
        self._loop = loop
        self._event = threading.Event()
        self._async_event = asyncio.Event() if loop is not None else None
        if needed <= 0:
            self._fire()

    def listener(self, _: FutureState) -> None:
        with self._lock:
            self.needed -= 1
            fire = self.needed == 0
        if fire:
            self._fire()

    def _fire(self) -> None:
        self._event.set()
        if self._loop is not None and self._async_event is not None:
            self._loop.call_soon_threadsafe(self._async_event.set)

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    async def wait_async(self) -> None:
        assert self._async_event is not None
        if not self._event.is_set():
            await self._async_event.wait()


def _split(futures: list[Future]) -> DoneAndNotDoneFutures:
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in futures if f not in done})


def _timeout_error(futures: list[Future], timeout: float | None) -> ShoalTimeoutError:
    not_done = [f for f in futures if not f.done()]
    return ShoalTimeoutError(
        f"{len(not_done)} of {len(futures)} futures were not done after {timeout}s"
    )
