"""A message to the scheduler that cannot be encoded fails the futures it concerns.

The scheduler stream hands such a message here (``BatchedStream.on_unencodable``)
instead of dropping it: every key the message names (the rows of an ``update-graph``,
its wanted keys, a ``keys`` list or a ``key``) that this client holds a future for errs
with a ``SerializationError`` naming the keys that cannot go, so ``future.result()``
raises at once instead of waiting forever.

Rules of this file:

* Runs on the client's loop (the stream's flusher calls it); never raises.
* Keys are normalized before they are sent (``shoal.graph.keys.normalize_key``), so
  reaching here means a key or value no message can carry: it is a user error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shoal._types import Key
from shoal.client.future_state import ErrorInfo
from shoal.client.refs import KeyTable
from shoal.errors import SerializationError
from shoal.protocol.messages import dumps


def keys_of(msg: Any) -> list[Key]:
    """Every key a client message names, in order, without repeats."""
    if not isinstance(msg, dict):
        return []
    return list(dict.fromkeys(key for key in _keys(msg) if _hashable(key)))


def _keys(msg: dict[str, Any]) -> Iterator[Key]:
    for row in msg.get("tasks") or ():
        if isinstance(row, list | tuple) and row:
            yield row[0]
    for field in ("wanted", "keys"):
        value = msg.get(field)
        if isinstance(value, list | tuple):
            yield from value
    if "key" in msg:
        yield msg["key"]


def _unencodable(keys: list[Key]) -> list[Key]:
    bad = []
    for key in keys:
        try:
            dumps(key)
        except (TypeError, ValueError, OverflowError):
            bad.append(key)
    return bad


def unsendable_error(msg: Any, exc: Exception) -> SerializationError:
    """The error the futures of ``msg`` get: it names the keys at fault."""
    keys = keys_of(msg)
    bad = _unencodable(keys)
    op = msg.get("op") if isinstance(msg, dict) else None
    if bad:
        names = ", ".join(repr(k) for k in bad[:5]) + (" ..." if len(bad) > 5 else "")
        text = f"cannot send the key(s) {names} to the scheduler ({op}): {exc}"
    else:
        names = ", ".join(repr(k) for k in keys[:5]) + (" ..." if len(keys) > 5 else "")
        text = f"cannot send the {op!r} message for {names} to the scheduler: {exc}"
    return SerializationError(text)


def fail_unsendable(table: KeyTable, msg: Any, exc: Exception) -> None:
    """Fail the futures of every key ``msg`` names (``BatchedStream.on_unencodable``)."""
    failed_futures_of(table, msg, exc)


def failed_futures_of(table: KeyTable, msg: Any, exc: Exception) -> list[Key]:
    """Fail the futures of every key ``msg`` names; returns the keys failed."""
    error = unsendable_error(msg, exc)
    failed = []
    for key in keys_of(msg):
        state = table.states.get(key)
        if state is not None and not state.done():
            state.fail(ErrorInfo(error, None, str(error)))
            failed.append(key)
    return failed


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
