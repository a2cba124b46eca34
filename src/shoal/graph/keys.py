"""Task keys: splitting them into prefixes for grouping, normalizing what users give,
naming submitted calls.

One ``key_split`` serves the whole package (scheduler task groups, the dashboard, the
client's reprs), with dask's semantics so that shoal groups keys exactly as dask does:
``"inc-3"`` -> ``"inc"``, ``"('x-abc', 0, 1)"`` -> ``"x"``, ``("x-1", 0)`` -> ``"x"``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

#: dask's ``key_split``, imported at the first call: importing dask.utils imports all of
#: dask, which a worker process does only once it has registered (shoal.worker.warm_imports)
_dask_key_split: Callable[[object], str] | None = None


def key_split(key: object) -> str:
    """The human name of a key's group (dask's ``key_split``, cached by dask)."""
    if isinstance(key, tuple):
        # dask indexes ``key[0]`` unguarded; a malformed empty key must not raise here
        return key_split(key[0]) if key else "tuple"
    split = _dask_key_split or _import_key_split()
    return str(split(key))


def _import_key_split() -> Callable[[object], str]:
    global _dask_key_split
    from dask.utils import key_split as dask_key_split

    _dask_key_split = dask_key_split
    return dask_key_split


def normalize_key(key: Any) -> Any:
    """``key`` made of the builtin types a message carries: numpy integers (as dask.array's
    ``vindex`` and ``diagonal`` put in keys) become ``int``, inside tuples too; subclasses
    of ``str``, ``bytes`` and ``float`` become the builtin. Equal and hash-equal to
    ``key``, so dask's own lookups by the original key still find it."""
    typ = type(key)
    if typ is str or typ is int or typ is float or typ is bytes:
        return key
    if typ is tuple:
        return tuple(normalize_key(part) for part in key)
    if isinstance(key, bool):
        return bool(key)
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bytes):
        return bytes(key)
    if isinstance(key, float):
        return float(key)
    if hasattr(typ, "__index__"):  # numpy integers, and any other exact integer type
        return operator.index(key)
    return key


def funcname(func: Callable[..., Any]) -> str:
    """A short readable name for ``func`` to prefix its task keys with."""
    while hasattr(func, "func"):  # functools.partial and friends
        func = func.func
    name = getattr(func, "__name__", None) or type(func).__name__
    return "lambda" if name == "<lambda>" else name
