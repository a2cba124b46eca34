"""What the client knows about one key: its status, and who to wake when it changes.

Every ``Future`` for a key shares one ``FutureState``.

Rules of this file:

* Status changes happen on the client's event loop only (messages from the scheduler,
  and the client's own submit/cancel/retry, which run there). Any thread may read.
* Nothing is allocated for waiting until someone waits: a ``threading.Event`` for a
  thread in ``Future.result()``, an ``asyncio.Event`` for a coroutine on the loop, and a
  listener list for ``as_completed``/``wait``/``add_done_callback``. A status change
  checks three attributes and is done.
* The race between a waiter arriving and the status changing is closed by ordering:
  the loop writes the status *before* it looks for a waiter; a waiter installs itself
  *before* it looks at the status again. Under the GIL one of the two sees the other.
* Listeners are called once each, on the thread that made the state done. They must be
  quick and must not block (user callbacks are handed to an executor by their wrapper).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from shoal._types import Address, Key
from shoal.errors import CancelledError, FutureLostError, RemoteError
from shoal.protocol.serialize import Serialized

FutureStatus = Literal["pending", "finished", "error", "cancelled", "lost"]
#: statuses in which a future is done
DONE: frozenset[str] = frozenset({"finished", "error", "cancelled", "lost"})

Listener = Callable[["FutureState"], None]

#: guards the lazy creation of events and the listener lists of every state (rarely taken)
_LOCK = threading.Lock()


class ErrorInfo:
    """A task's failure as the scheduler reported it; rebuilt into an exception on demand."""

    __slots__ = (
        "_rebuilt",
        "_remote_tb",
        "exception",
        "exception_text",
        "traceback",
        "traceback_text",
    )

    def __init__(
        self,
        exception: object,
        traceback: object,
        exception_text: str = "",
        traceback_text: str = "",
    ) -> None:
        #: the pickled exception (``Serialized``), or an exception object made locally
        self.exception = exception
        #: the pickled ``tblib.Traceback``, or None
        self.traceback = traceback
        self.exception_text = exception_text
        self.traceback_text = traceback_text
        self._rebuilt: BaseException | None = None
        self._remote_tb: TracebackType | None = None

    def rebuild(self) -> BaseException:
        """The exception with its original type and the remote traceback attached.

        Rebuilt once and cached; each call resets its traceback to the remote one, so
        raising it again and again does not grow the traceback.
        """
        if self._rebuilt is None:
            self._rebuilt = self._rebuild()
            self._remote_tb = self._rebuilt.__traceback__
        return self._rebuilt.with_traceback(self._remote_tb)

    def _rebuild(self) -> BaseException:
        if isinstance(self.exception, BaseException):
            return self.exception
        from shoal.comm.rpc import exception_from_reply

        type_name, _, text = self.exception_text.partition(": ")
        reply = {
            "status": "error",
            "exception": self.exception if isinstance(self.exception, Serialized) else None,
            "traceback": self.traceback if isinstance(self.traceback, Serialized) else None,
            "type": type_name or "Exception",
            "text": text,
            "traceback_text": self.traceback_text,
        }
        try:
            exc: BaseException = exception_from_reply(reply)
        except Exception:  # a malformed report still yields an error the user can read
            return RemoteError(type_name or "Exception", text, self.traceback_text)
        return exc


class FutureState:
    """The shared state behind every ``Future`` of one key."""

    __slots__ = (
        "_async_event",
        "_listeners",
        "_thread_event",
        "error",
        "holders",
        "key",
        "status",
        "token",
        "type_name",
        "value",
    )

    def __init__(self, key: Key, token: str | None = None) -> None:
        self.key = key
        #: "pending" until the scheduler reports the key done; back to "pending" on retry
        self.status: FutureStatus = "pending"
        #: the type of the result, once finished (as the worker named it)
        self.type_name: str | None = None
        #: workers the scheduler said hold the result (``key-in-memory``): a hint for
        #: fetching it with no ``who_has`` first; may be stale (then the scheduler is asked)
        self.holders: tuple[Address, ...] = ()
        #: a small result's serialized copy that came with ``key-in-memory`` (None if
        #: none): ``result()`` deserializes it here instead of fetching it
        self.value: Serialized | None = None
        #: digest of the task's definition, to refuse a different task under this key
        self.token = token
        #: the failure, when status is error, cancelled or lost
        self.error: ErrorInfo | None = None
        self._thread_event: threading.Event | None = None
        self._async_event: asyncio.Event | None = None
        self._listeners: list[Listener] | None = None

    # -- transitions (on the client's loop) ----------------------------------------------------
    def finish(
        self,
        type_name: str | None,
        holders: tuple[Address, ...] = (),
        value: Serialized | None = None,
    ) -> None:
        self.type_name = type_name
        self.holders = holders
        self.value = value
        self.error = None
        self.status = "finished"
        self._wake()

    def fail(self, error: ErrorInfo) -> None:
        self.value = None
        self.error = error
        self.status = "error"
        self._wake()

    def cancel(self, reason: str = "") -> None:
        message = f"{self.key!r} was cancelled" + (f": {reason}" if reason else "")
        self.value = None
        self.error = ErrorInfo(CancelledError(message), None, message)
        self.status = "cancelled"
        self._wake()

    def lose(self, reason: str = "") -> None:
        message = f"the data of {self.key!r} was lost" + (f": {reason}" if reason else "")
        self.value = None
        self.error = ErrorInfo(FutureLostError(message), None, message)
        self.status = "lost"
        self._wake()

    def reset(self) -> None:
        """Back to pending: the task runs again (retry, or resubmission after a cancel)."""
        self.status = "pending"
        self.type_name = None
        self.holders = ()
        self.value = None
        self.error = None
        if self._thread_event is not None:
            self._thread_event.clear()
        if self._async_event is not None:
            self._async_event.clear()

    def _wake(self) -> None:
        # the status is written before these reads (see the rules at the top)
        if self._thread_event is not None:
            self._thread_event.set()
        if self._async_event is not None:
            self._async_event.set()
        if self._listeners:
            self._call_listeners()

    def _call_listeners(self) -> None:
        with _LOCK:
            listeners, self._listeners = self._listeners, None
        for listener in listeners or ():
            listener(self)

    # -- observers (any thread) ----------------------------------------------------------------
    def done(self) -> bool:
        return self.status in DONE

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` once, when the state is done (now, if it is already)."""
        with _LOCK:
            if self._listeners is None:
                self._listeners = []
            self._listeners.append(listener)
        if self.status in DONE:  # it may have become done before we appended
            self._call_listeners()

    def remove_listener(self, listener: Listener) -> None:
        with _LOCK:
            if self._listeners and listener in self._listeners:
                self._listeners.remove(listener)

    def wait(self, timeout: float | None = None) -> bool:
        """Block this thread until done; False if ``timeout`` passed first."""
        if self.status in DONE:
            return True
        event = self._thread_event
        if event is None:
            with _LOCK:
                event = self._thread_event
                if event is None:
                    event = self._thread_event = threading.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status not in DONE:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            event.wait(remaining)
        return True

    async def wait_async(self) -> None:
        """Wait on the client's loop until done."""
        while self.status not in DONE:
            if self._async_event is None:
                self._async_event = asyncio.Event()
            await self._async_event.wait()

    def __repr__(self) -> str:
        return f"<FutureState {self.key!r}: {self.status}>"
