"""Futures nested in lists, tuples, sets and dicts: finding them, and putting values back.

``gather`` accepts any such structure and returns the same structure with each future
replaced by its value; ``scatter`` and ``cancel`` accept them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal._types import Key
from shoal.client.future import Future
from shoal.graph.spec import KeyRef

_CONTAINERS = (list, tuple, set, frozenset)


def pack(obj: Any, found: dict[Key, Future]) -> Any:
    """``obj`` with each ``Future`` replaced by a ``KeyRef``; the futures go in ``found``."""
    typ = type(obj)
    if typ is Future:
        found.setdefault(obj.key, obj)
        return KeyRef(obj.key)
    if typ in _CONTAINERS:
        return typ(pack(item, found) for item in obj)
    if typ is dict:
        return {k: pack(v, found) for k, v in obj.items()}
    if isinstance(obj, Future):  # a subclass
        found.setdefault(obj.key, obj)
        return KeyRef(obj.key)
    return obj


def futures_of(obj: Any) -> list[Future]:
    """The distinct futures in ``obj``, in the order first met."""
    found: dict[Key, Future] = {}
    pack(obj, found)
    return list(found.values())


_MISSING = object()


def unpack(packed: Any, data: Mapping[Key, Any], skip_missing: bool = False) -> Any:
    """Put the values of ``data`` back where ``pack`` left ``KeyRef``s.

    With ``skip_missing``, a reference whose key is not in ``data`` is left out of its
    container (a bare reference becomes None).
    """
    result = _unpack(packed, data, skip_missing)
    return None if result is _MISSING else result


def _unpack(obj: Any, data: Mapping[Key, Any], skip: bool) -> Any:
    typ = type(obj)
    if typ is KeyRef:
        if skip and obj.key not in data:
            return _MISSING
        return data[obj.key]
    if typ in _CONTAINERS:
        items = (_unpack(item, data, skip) for item in obj)
        return typ(item for item in items if item is not _MISSING)
    if typ is dict:
        out = {}
        for k, v in obj.items():
            value = _unpack(v, data, skip)
            if value is not _MISSING:
                out[k] = value
        return out
    return obj
