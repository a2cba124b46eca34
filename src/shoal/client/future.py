"""``Future``: a handle on a task's result that lives in the cluster.

Many ``Future`` objects may share one key; they share its ``FutureState`` and count as
references in the client's ``KeyTable``. When the last one is garbage-collected the
client tells the scheduler it no longer wants the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shoal._types import Key
from shoal.client import results
from shoal.client.future_state import FutureState
from shoal.client.modes import Maybe, Mode
from shoal.graph.keys import key_split
from shoal.graph.spec import find_refs

if TYPE_CHECKING:
    from shoal.client.client import Client

logger = logging.getLogger("shoal.client")

_callback_executor: ThreadPoolExecutor | None = None


def _run_callback(fn: Callable[[Future], object], future: Future) -> None:
    """Run a user's done-callback in the callback thread, never on the client's loop."""
    global _callback_executor
    if _callback_executor is None:
        _callback_executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-callbacks")
    _callback_executor.submit(_call_logged, fn, future)


def _call_logged(fn: Callable[[Future], object], future: Future) -> None:
    try:
        fn(future)
    except Exception:
        logger.exception("done-callback %r of %r failed", fn, future)


class Future:
    """The result of a task, computed remotely; a reference that keeps the result alive.

    ``Future(key, client)`` makes another reference to ``key`` (the client asks the
    scheduler for it if it held none). Usually futures come from ``Client.submit``,
    ``Client.map`` and ``Client.scatter``. With an asynchronous client, ``result()``,
    ``exception()`` and ``traceback()`` return awaitables and ``await future`` gives the
    result.
    """

    __slots__ = ("__weakref__", "_client", "_key", "_released", "_state")

    #: dask turns a future found in a graph into a dependency on its key
    __dask_future__ = True

    def __init__(self, key: Key, client: Client | None = None) -> None:
        if client is None:
            from shoal.client.default import default_client

            client = default_client()
        self._client = client
        self._key = key
        self._released = False
        self._state: FutureState = client._acquire(key)

    @classmethod
    def _adopt(cls, state: FutureState, client: Client) -> Future:
        """A future for a state whose reference was already counted (submit, map, scatter)."""
        future = cls.__new__(cls)
        future._client = client
        future._key = state.key
        future._released = False
        future._state = state
        return future

    # -- what it is ----------------------------------------------------------------------------
    @property
    def key(self) -> Key:
        """The task's key."""
        return self._key

    @property
    def __shoal_key__(self) -> Key:
        return self._key

    @property
    def client(self) -> Client:
        """The client this future belongs to."""
        return self._client

    @property
    def status(self) -> str:
        """One of 'pending', 'finished', 'error', 'cancelled', 'lost'."""
        return self._state.status

    @property
    def type(self) -> str | None:
        """The name of the result's type, once finished."""
        return self._state.type_name

    def done(self) -> bool:
        """Whether the task is finished, erred, cancelled or lost."""
        return self._state.done()

    def cancelled(self) -> bool:
        """Whether the future was cancelled."""
        return self._state.status == "cancelled"

    # -- results ---------------------------------------------------------------------------------
    def result(self, timeout: float | None = None) -> Any:
        """The task's value, fetched from the worker that holds it.

        Waits up to ``timeout`` seconds (``ShoalTimeoutError`` after). A failed task
        raises its own exception, original type and remote traceback included; a
        cancelled future raises ``CancelledError``.
        """
        return results.result(self, timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception once done (None if it succeeded)."""
        return results.exception(self, timeout)  # type: ignore[no-any-return]

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        """The remote traceback of the task's exception once done (None if it succeeded)."""
        return results.traceback(self, timeout)  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, Any]:
        if self._client.asynchronous:
            return results.result(self, None).__await__()  # type: ignore[no-any-return]
        return asyncio.to_thread(self.result).__await__()

    # -- actions ---------------------------------------------------------------------------------
    def cancel(self, force: bool = False) -> Maybe[None]:
        """Cancel the task (``force``: even if other clients want it); on a future of an
        asynchronous client, an awaitable."""
        client: Client[Mode] = self._client
        return client.cancel([self], force=force)

    def retry(self) -> Maybe[None]:
        """Run the task again if it erred (an awaitable, for an asynchronous client)."""
        client: Client[Mode] = self._client
        return client.retry([self])

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        """Call ``fn(future)`` once when done, in a separate thread (now if already done)."""

        def listener(_: FutureState) -> None:
            _run_callback(fn, self)

        self._state.add_listener(listener)

    def release(self) -> None:
        """Drop this reference now instead of at garbage collection."""
        if not self._released:
            self._released = True
            self._client._table.drop(self._key)

    def __del__(self) -> None:
        # at interpreter shutdown, or on a half-built object, there is nothing to release
        with contextlib.suppress(Exception):
            self.release()

    # -- identity --------------------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        counter = getattr(_pickling, "futures", None)
        if counter is not None:  # inside ``futures_pickled()``: count us
            counter.append(self._key)
        return (_rebind, (self._key,))

    def __dask_tokenize__(self) -> tuple[str, Key]:
        return ("shoal.Future", self._key)

    def __repr__(self) -> str:
        state = self._state
        if state.status == "finished" and state.type_name:
            return f"<Future: finished, type: {state.type_name}, key: {_short(self._key)}>"
        return f"<Future: {state.status}, key: {_short(self._key)}>"

    def _repr_html_(self) -> str:
        return f"<b>Future: {key_split(self._key)}</b> status: {self.status}"


#: set by ``futures_pickled`` on this thread: the keys of the futures pickled meanwhile
_pickling = threading.local()


@contextlib.contextmanager
def futures_pickled() -> Generator[list[Key], None, None]:
    """Within the block, the futures pickled on this thread are listed (by key) in the
    list it gives: a pickled graph node that holds futures is spotted exactly."""
    previous = getattr(_pickling, "futures", None)
    found: list[Key] = []
    _pickling.futures = found
    try:
        yield found
    finally:
        _pickling.futures = previous


def futures_of(obj: Any) -> list[Future]:
    """The distinct futures in ``obj`` (also inside lists, tuples, sets and dicts), in the
    order first met."""
    found: dict[Key, Any] = {}
    find_refs(obj, found)
    return [f for f in found.values() if isinstance(f, Future)]


def _short(key: Key) -> str:
    return key if isinstance(key, str) else repr(key)


def _rebind(key: Key) -> Future:
    """An unpickled future: a new reference held by the client current here."""
    from shoal.client.default import get_client

    return Future(key, get_client())
