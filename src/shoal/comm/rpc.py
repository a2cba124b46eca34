"""Replies to rpc requests, and remote exceptions raised here with their original type.

A reply is ``{"status": "OK", "result": ...}`` or ``{"status": "error", ...}`` carrying the
exception and its traceback (tblib) as ``Serialized`` values plus plain-text fallbacks.

Rules of this file:

* Building a reply never fails: whatever cannot be pickled is sent as ``None`` and the
  receiver falls back to ``RemoteError(type, text, traceback_text)``.
* Every request waits for its reply within a deadline (``exchange``): a peer that accepts
  and never answers raises ``ShoalTimeoutError`` naming the peer and the op.
* Rebuilding one unpickles, so it happens only for authenticated peers and only when the
  caller allows it (``deserialize=False`` for parties that never unpickle: the scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

import tblib

from shoal.errors import ProtocolError, RemoteError, SerializationError, ShoalTimeoutError
from shoal.protocol.serialize import Serialized, serialize
from shoal.protocol.serialize import deserialize as _unpickle

if TYPE_CHECKING:
    from shoal.comm.core import Comm


async def exchange(comm: Comm, msg: dict[str, Any], timeout: float | None) -> Any:
    """Write the request ``msg`` and read its reply, both within ``timeout`` seconds."""
    if timeout is None:
        await comm.write(msg)
        return await comm.read()
    try:
        if sys.version_info >= (3, 11):  # a deadline on this task: no task of its own
            async with asyncio.timeout(timeout):
                await comm.write(msg)
                return await comm.read()
        return await asyncio.wait_for(_write_then_read(comm, msg), timeout)
    except asyncio.TimeoutError:
        raise ShoalTimeoutError(
            f"{comm.peer_address} did not answer {msg.get('op')!r} within {timeout}s"
        ) from None


async def _write_then_read(comm: Comm, msg: dict[str, Any]) -> Any:
    await comm.write(msg)
    return await comm.read()


def ok_reply(result: Any) -> dict[str, Any]:
    """A successful reply."""
    return {"status": "OK", "result": result}


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _try_serialize(obj: object) -> Serialized | None:
    try:
        return serialize(obj)
    except Exception:
        return None


def error_reply(exc: BaseException) -> dict[str, Any]:
    """A failed reply: ``exc`` and its traceback, as objects where possible and as text."""
    tb = exc.__traceback__
    return {
        "status": "error",
        "exception": _try_serialize(exc),
        "traceback": _try_serialize(tblib.Traceback(tb)) if tb is not None else None,
        "type": _type_name(exc),
        "text": str(exc),
        "traceback_text": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


def _text(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key)
    return value if isinstance(value, str) else ""


def _fallback(reply: dict[str, Any]) -> RemoteError:
    return RemoteError(
        _text(reply, "type") or "Exception", _text(reply, "text"), _text(reply, "traceback_text")
    )


def _rebuild(reply: dict[str, Any]) -> BaseException | None:
    value = reply.get("exception")
    if not isinstance(value, Serialized):
        return None
    try:
        exc = _unpickle(value)
    except SerializationError:
        return None
    if not isinstance(exc, BaseException):
        return None
    tb_value = reply.get("traceback")
    if isinstance(tb_value, Serialized):
        # a traceback is a nicety: keep the exception without it if it cannot be rebuilt
        with contextlib.suppress(Exception):
            exc = exc.with_traceback(_unpickle(tb_value).as_traceback())
    return exc


def exception_from_reply(reply: dict[str, Any], *, deserialize: bool = True) -> BaseException:
    """The exception an error reply carries: its original type and traceback if possible."""
    if not isinstance(reply, dict) or reply.get("status") != "error":
        raise ProtocolError(f"not an error reply: {reply!r:.200}")
    exc = _rebuild(reply) if deserialize else None
    return exc if exc is not None else _fallback(reply)


def raise_remote(reply: dict[str, Any], *, deserialize: bool = True) -> NoReturn:
    """Raise the exception an error reply carries, with the remote traceback attached."""
    exc = exception_from_reply(reply, deserialize=deserialize)
    try:
        raise exc
    finally:
        del exc  # no reference cycle through this frame


def unwrap_reply(reply: Any, *, deserialize: bool = True) -> Any:
    """The result of an rpc reply, or raise the remote exception it carries."""
    if isinstance(reply, dict):
        status = reply.get("status")
        if status == "OK":
            return reply.get("result")
        if status == "error":
            raise_remote(reply, deserialize=deserialize)
    raise ProtocolError(f"malformed rpc reply: {reply!r:.200}")
