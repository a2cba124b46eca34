"""How a fetch between workers fails, told apart by where it failed.

* The network (the peer is unreachable, the connection broke, no answer before the
  deadline): the receiving state machine tries another holder, then asks the scheduler.
* The value itself (it cannot be pickled where it lives, or unpickled where it is
  needed): fetching again cannot help, so the key is *unreadable* and the tasks waiting
  for it fail with that error, traceback included.

Rules of this file:

* The sender never fails a whole ``get_data`` for one bad value: the others still go,
  and each bad one comes back under ``unsendable`` as an error the receiver rebuilds.
* Any other error a peer's handler raised is about the values asked for, not the
  network: it makes those keys unreadable too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from shoal._types import Key
from shoal.errors import CommError, SerializationError
from shoal.protocol.serialize import Serialized
from shoal.worker.events import ErrorInfo
from shoal.worker.execute import error_info
from shoal.worker.spill import serialized_values

#: failures of the connection, not of the values: another holder may do
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    CommError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


def is_network_failure(exc: BaseException) -> bool:
    """True when ``exc`` says the peer could not be reached or answer in time."""
    return isinstance(exc, NETWORK_ERRORS)


async def values_for_peer(
    data: MutableMapping[Key, Any], keys: Iterable[Key]
) -> tuple[dict[Key, Serialized], dict[Key, dict[str, Any]]]:
    """The pickles of ``keys`` held in ``data``, and an error for each that cannot go."""
    keys = tuple(keys)
    try:
        return await serialized_values(data, keys), {}
    except SerializationError:
        pass  # one bad value: find it, send the others
    sendable: dict[Key, Serialized] = {}
    unsendable: dict[Key, dict[str, Any]] = {}
    for key in keys:
        try:
            sendable.update(await serialized_values(data, (key,)))
        except SerializationError as exc:
            unsendable[key] = error_as_message(_cannot_send(key, exc))
    return sendable, unsendable


def _cannot_send(key: Key, exc: SerializationError) -> ErrorInfo:
    try:  # raised, so it carries the traceback of where it happened
        raise SerializationError(f"cannot send the value of {key!r} to a peer: {exc}") from exc
    except SerializationError as error:
        return error_info(error)


def error_as_message(info: ErrorInfo) -> dict[str, Any]:
    return {
        "exception": info.exception,
        "traceback": info.traceback,
        "exception_text": info.exception_text,
        "traceback_text": info.traceback_text,
    }


def error_from_message(msg: Mapping[str, Any]) -> ErrorInfo:
    return ErrorInfo(
        exception=msg.get("exception"),
        traceback=msg.get("traceback"),
        exception_text=str(msg.get("exception_text", "")),
        traceback_text=str(msg.get("traceback_text", "")),
    )


def unsendable_of(reply: Mapping[str, Any]) -> dict[Key, ErrorInfo]:
    """The per-key sender errors a ``get_data`` reply carries."""
    errors = reply.get("unsendable") or {}
    return {key: error_from_message(msg) for key, msg in errors.items()}
