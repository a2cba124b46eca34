"""Every exception shoal raises, classified by where it happened.

::

    ShoalError
    ├── CommError                      a connection failed
    │   ├── CommClosedError            closed on purpose (by us, or by the peer cleanly)
    │   ├── CommBrokenError            broken: reset, EOF mid-message, unreachable peer
    │   └── HandshakeError             the peer is not one of ours (token, version, role)
    ├── ProtocolError                  bytes that are not a valid shoal message
    ├── ShoalTimeoutError (+ TimeoutError)   a deadline passed
    ├── InvalidTransition              a state machine was asked for an illegal move (a bug)
    ├── TaskError                      about a user task, seen from the client
    │   ├── CancelledError (+ FuturesCancelledError)   the future was cancelled or its
    │   │                              key released (``except concurrent.futures.
    │   │                              CancelledError`` catches it, as dask's)
    │   ├── KilledWorker               the task was running on too many workers that died
    │   └── FutureLostError            the key's data was lost and cannot be recomputed
    ├── SerializationError             a user object could not be (de)serialized
    ├── Reschedule                     raised by a task: put it back to be scheduled again
    └── RemoteError                    a remote handler failed with an exception we could not
                                       rebuild locally (its type and traceback text are kept)

``TimeoutError`` and ``FuturesCancelledError`` above are the builtin ``TimeoutError`` and
``concurrent.futures.CancelledError``: dask.distributed's ``TimeoutError`` and
``CancelledError`` are those same classes, so ``except`` clauses written for dask catch
shoal's errors too (neither is ``asyncio.CancelledError``, in dask as here).

A user task's own exception is re-raised in the caller with its original type and the
remote traceback attached; it is never wrapped in one of these.
"""

from __future__ import annotations

from concurrent.futures import CancelledError as FuturesCancelledError


class ShoalError(Exception):
    """Base of every shoal exception."""


class CommError(ShoalError):
    """A connection-level failure."""


class CommClosedError(CommError):
    """The connection was closed on purpose, by us or cleanly by the peer."""


class CommBrokenError(CommError):
    """The connection broke: reset, EOF in the middle of a message, peer unreachable."""


class HandshakeError(CommError):
    """The peer failed the connection handshake (token, protocol version, role, deadline)."""


class ProtocolError(ShoalError):
    """Bytes that are not a valid shoal message, or that break a hard limit."""


class ShoalTimeoutError(ShoalError, TimeoutError):
    """A deadline passed. Also a builtin ``TimeoutError``."""


class InvalidTransition(ShoalError):
    """A state machine was asked for a transition its table does not allow (a bug)."""

    def __init__(self, key: object, start: str, finish: str, story: list[object]) -> None:
        self.key = key
        self.start = start
        self.finish = finish
        self.story = story
        lines = "\n".join(f"  {entry}" for entry in story[-20:])
        super().__init__(f"{key!r}: invalid transition {start} -> {finish}\nstory:\n{lines}")

    def __reduce__(self) -> tuple[object, ...]:
        return (InvalidTransition, (self.key, self.start, self.finish, self.story))


class TaskError(ShoalError):
    """About a user task, as the client sees it."""


class CancelledError(TaskError, FuturesCancelledError):
    """The future was cancelled, or its key released, before it finished."""


class KilledWorker(TaskError):
    """The task was running on too many workers that died; it is not tried again."""

    def __init__(self, key: object, deaths: int, last_worker: str, reason: str) -> None:
        self.key = key
        self.deaths = deaths
        self.last_worker = last_worker
        self.reason = reason
        super().__init__(
            f"task {key!r} was running on {deaths} workers that died "
            f"(last: {last_worker}, reason: {reason}); it is not tried again"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (KilledWorker, (self.key, self.deaths, self.last_worker, self.reason))


class FutureLostError(TaskError):
    """The key's data was lost and cannot be recomputed."""


class SerializationError(ShoalError):
    """A user object could not be serialized or deserialized."""


class Reschedule(ShoalError):
    """Raised inside a task: the task is put back and scheduled again (maybe elsewhere)."""


class RemoteError(ShoalError):
    """A remote failure whose exception type could not be rebuilt here."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (RemoteError, (self.type_name, self.message, self.traceback_text))
