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


def find_refs(obj: Any, found: set[Key]) -> Any:
    """Replace futures (anything with ``__shoal_key__``) by ``KeyRef``s, collecting their keys."""
    typ = type(obj)
    if typ in (int, float, str, bytes, bool) or obj is None:
        return obj
    key = getattr(obj, "__shoal_key__", None)
    if key is not None and not isinstance(obj, type):
        found.add(key)
        return KeyRef(key)
    if typ is KeyRef:
        found.add(obj.key)
        return obj
    if typ in (list, tuple, set, frozenset):
        return typ(find_refs(item, found) for item in obj)
    if typ is dict:
        return {k: find_refs(v, found) for k, v in obj.items()}
    return obj


def substitute(obj: Any, data: Mapping[Key, Any]) -> Any:
    """Replace ``KeyRef``s in ``obj`` by the values in ``data``."""
    typ = type(obj)
    if typ is KeyRef:
        return data[obj.key]
    if typ in (list, tuple, set, frozenset):
        return typ(substitute(item, data) for item in obj)
    if typ is dict:
        return {k: substitute(v, data) for k, v in obj.items()}
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
