"""Run specs: what a worker runs for a task, and how dependencies are substituted.

A run spec travels as one ``Serialized`` blob that only workers open. For calls made by
``Client.submit``/``map`` it is the tuple ``(function, args, kwargs, has_refs)`` where
``function`` is itself pickled bytes (so ``map`` pickles the function once, and workers
cache the unpickled function by its bytes) and ``KeyRef`` placeholders in ``args`` and
``kwargs`` stand for dependencies. For dask graphs it is a dask task-spec node, which is
called with a mapping of dependency values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shoal._types import Key
from shoal.protocol.serialize import dumps_function, loads_function

__all__ = ["KeyRef", "dumps_function", "find_refs", "make_call_spec", "run_spec", "substitute"]


class KeyRef:
    """Stands for the value of another task inside a call's arguments."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (KeyRef, (self.key,))

    def __repr__(self) -> str:
        return f"KeyRef({self.key!r})"


_CONTAINERS = (list, tuple, set, frozenset)
_ATOMS = (int, float, str, bytes, bool)


def find_refs(obj: Any, found: dict[Key, Any]) -> Any:
    """``obj`` with each future (anything with ``__shoal_key__``) replaced by a ``KeyRef``,
    inside lists, tuples, sets and dicts. ``found`` gets each key, mapped to the first
    object met for it (a future, or a ``KeyRef`` already there), in the order met."""
    typ = type(obj)
    if typ in _ATOMS or obj is None:
        return obj
    if typ is KeyRef:
        found.setdefault(obj.key, obj)
        return obj
    if typ in _CONTAINERS:
        return typ(find_refs(item, found) for item in obj)
    if typ is dict:
        return {k: find_refs(v, found) for k, v in obj.items()}
    key = getattr(obj, "__shoal_key__", None)
    if key is not None and not isinstance(obj, type):
        found.setdefault(key, obj)
        return KeyRef(key)
    return obj


_MISSING = object()


def substitute(obj: Any, data: Mapping[Key, Any], skip_missing: bool = False) -> Any:
    """Put the values of ``data`` where ``find_refs`` left ``KeyRef``s.

    With ``skip_missing``, a reference whose key is not in ``data`` is left out of its
    container (a bare reference becomes None); without, it raises ``KeyError``.
    """
    result = _substitute(obj, data, skip_missing)
    return None if result is _MISSING else result


def _substitute(obj: Any, data: Mapping[Key, Any], skip: bool) -> Any:
    typ = type(obj)
    if typ is KeyRef:
        if skip and obj.key not in data:
            return _MISSING
        return data[obj.key]
    if typ in _CONTAINERS:
        items = (_substitute(item, data, skip) for item in obj)
        return typ(item for item in items if item is not _MISSING)
    if typ is dict:
        out = {}
        for k, v in obj.items():
            value = _substitute(v, data, skip)
            if value is not _MISSING:
                out[k] = value
        return out
    return obj


def make_call_spec(
    func_blob: bytes, args: tuple[Any, ...], kwargs: dict[str, Any], has_refs: bool
) -> tuple[Any, ...]:
    return (func_blob, args, kwargs, has_refs)


def run_spec(spec: Any, data: Mapping[Key, Any]) -> Any:
    """Run a deserialized spec with its dependencies' values."""
    if type(spec) is tuple and len(spec) == 4 and type(spec[0]) is bytes:
        func_blob, args, kwargs, has_refs = spec
        func = loads_function(func_blob)
        if has_refs:
            args = substitute(args, data)
            kwargs = substitute(kwargs, data)
        return func(*args, **kwargs)
    if callable(spec):  # a dask task-spec node: called with its dependencies' values
        return spec(data)
    raise TypeError(f"not a run spec: {type(spec).__name__}")
