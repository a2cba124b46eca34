"""Task keys: naming new ones, normalizing what users give, and splitting them into
prefixes for grouping."""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable
from typing import Any

from shoal._types import Key

_HEX_TAIL = re.compile(r"-[0-9a-f]{8,}$")


def key_split(key: object) -> str:
    """The human name of a key's group: ``"inc-1f3a..."`` -> ``"inc"``, ``("x", 0)`` -> ``"x"``."""
    if isinstance(key, tuple) and key:
        key = key[0]
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if not isinstance(key, str):
        return "other"
    return _HEX_TAIL.sub("", key) or key


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


def new_key(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pure: bool
) -> Key:
    """A key for a submitted call: deterministic when ``pure``, unique otherwise."""
    if pure:
        from dask.base import tokenize

        token = tokenize(func, args, kwargs)
    else:
        token = uuid.uuid4().hex
    return f"{funcname(func)}-{token}"
