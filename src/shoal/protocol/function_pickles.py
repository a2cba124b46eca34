"""Remember the by-value pickle of a ``__main__`` function while what it captures stands.

cloudpickle takes ~45 us to pickle even a one-line function defined in ``__main__`` or a
notebook, and ``submit`` in a loop pickled the same function once per call: in the client
thread, holding the GIL the scheduler loop (same process under ``LocalCluster``) needs.

A pickle by value captures the function's code, defaults, closure cells and the globals
its code names. The pickle is reused only when every one of them is the very object it
was, and is of a kind that cannot change unseen: a number, string, bytes, a tuple of
those, a module, a function or class that pickles by reference, or another ``__main__``
function that passes the same test. A function that reads a mutable global (a list, a
dict, an instance) is pickled afresh each time, exactly as before. Rebinding a global in a
notebook (``N = 10`` after ``N = 5``) is seen at the next submit.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle

#: functions remembered at once; the table is emptied when it fills (a weak table, so a
#: function nobody holds leaves it by itself)
MAX_FUNCTIONS = 512
#: how deep a chain of ``__main__`` functions calling one another is followed
MAX_DEPTH = 4

_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis)})

Fingerprint = tuple[object, ...]

#: stands for the function itself where its code names it (a recursive function)
_ITSELF = object()

_pickles: weakref.WeakKeyDictionary[types.FunctionType, tuple[Fingerprint, bytes]] = (
    weakref.WeakKeyDictionary()
)


def remembered(func: Callable[..., Any]) -> bytes | None:
    """The pickle made for ``func`` earlier, if nothing it captures changed since."""
    if type(func) is not types.FunctionType:
        return None
    entry = _pickles.get(func)
    if entry is None:
        return None
    fingerprint = _fingerprint(func)
    old, blob = entry
    if fingerprint is None or not _same(old, fingerprint):
        _pickles.pop(func, None)  # pop: another thread may have dropped it meanwhile
        return None
    return blob


def remember(func: Callable[..., Any], blob: bytes) -> None:
    """Keep ``blob`` as the pickle of ``func`` when what it captures cannot change unseen."""
    if type(func) is not types.FunctionType or len(blob) >= 100_000:
        return
    fingerprint = _fingerprint(func)
    if fingerprint is None:
        return
    if len(_pickles) >= MAX_FUNCTIONS:
        _pickles.clear()
    _pickles[func] = (fingerprint, blob)


def _same(old: Fingerprint, new: Fingerprint) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


def _fingerprint(func: types.FunctionType) -> Fingerprint | None:
    """Every object the pickle of ``func`` captured, in a fixed order; None when one of
    them could change without a new object (or pickles by value through a registered
    module, which cloudpickle would follow)."""
    if cloudpickle.list_registry_pickle_by_value():
        return None
    parts: list[object] = []
    if _collect(func, parts, {id(func)}, 0):
        return tuple(parts)
    return None


def _collect(func: types.FunctionType, parts: list[object], seen: set[int], depth: int) -> bool:
    if depth > MAX_DEPTH or func.__dict__ or func.__kwdefaults__:
        return False
    code = func.__code__
    parts += (code, func.__name__, func.__qualname__, func.__module__)
    parts.append(func.__defaults__)
    for value in func.__defaults__ or ():
        if not _stable(value, parts, seen, depth):
            return False
    for cell in func.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell: a name assigned later in the enclosing scope
            return False
        parts.append(value)
        if not _stable(value, parts, seen, depth):
            return False
    namespace = func.__globals__
    for name in sorted(set(_global_names(code))):
        if name not in namespace:
            continue  # a builtin, or a name not yet defined: pickled by reference if at all
        value = namespace[name]
        if value is func:  # recursion: a marker, so the table's value does not keep its key
            parts.append(_ITSELF)
            continue
        parts.append(value)
        if not _stable(value, parts, seen, depth):
            return False
    return True


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _stable(value: object, parts: list[object], seen: set[int], depth: int) -> bool:
    """Whether ``value`` pickles the same for as long as it is the same object."""
    kind = type(value)
    if kind in _SCALARS or kind is types.ModuleType or kind is types.BuiltinFunctionType:
        return True  # immutable, or pickled by reference (a module, ``math.sqrt``)
    if kind is tuple or kind is frozenset:
        return all(_stable(item, parts, seen, depth) for item in value)  # type: ignore[attr-defined]
    if kind is types.FunctionType or kind is type:
        module = getattr(value, "__module__", None)
        if kind is type:
            return module not in (None, "__main__")  # a __main__ class pickles its dict
        if module not in (None, "__main__") and "<locals>" not in value.__qualname__:  # type: ignore[attr-defined]
            return True  # importable: pickled by reference
        if id(value) in seen:
            return True  # recursion: this function is already being fingerprinted
        seen.add(id(value))
        return _collect(value, parts, seen, depth + 1)  # type: ignore[arg-type]
    return False
