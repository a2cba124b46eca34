"""Turning ``submit`` and ``map`` calls into the rows of an ``update-graph`` message.

Runs in the caller's thread (never on the loop) and does no IO: naming keys, finding the
futures among the arguments, pickling each run spec once, digesting it into a token.

Rules of this file:

* ``map`` pickles and tokenizes the function once, then does the least per task: one
  ``find_refs`` over the arguments, one ``serialize``, one digest. Nothing here allocates
  a coroutine, a lock or an event.
* ``submit(f, x)`` and ``map(f, [x])`` name their task alike, so they share the key.
* A run spec that cannot be pickled fails here, in the caller, with an error naming the
  offending argument and its type.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal._types import Key
from shoal.errors import SerializationError
from shoal.graph.keys import funcname
from shoal.graph.spec import dumps_function, find_refs, make_call_spec
from shoal.protocol.serialize import Serialized, serialize

#: submission order, shared by every client of the process (thread-safe under the GIL)
_submission_order = itertools.count()

#: one row of ``update-graph``: (key, run_spec, dependencies, priority, token)
Row = tuple[Key, Serialized, tuple[Key, ...], tuple[float, ...], str]

#: most tasks in one ``update-graph`` message: the scheduler handles one in one loop turn
#: (~100 ms for 500 no-op tasks on a loaded machine: 2 cores, load 7), so a bigger one goes
#: in several
MAX_ROWS_PER_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Placement and retry options shared by the tasks of one ``submit`` or ``map``."""

    #: addresses or names of the workers allowed to run the tasks (empty: any)
    workers: tuple[str, ...] = ()
    allow_other_workers: bool = False
    retries: int = 0
    #: higher runs first
    priority: float = 0
    #: abstract resources each task holds while it runs, e.g. ``{"GPU": 1}``
    resources: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        workers: str | Iterable[str] | None = None,
        allow_other_workers: bool = False,
        retries: int | None = 0,
        priority: float = 0,
        resources: Mapping[str, float] | None = None,
    ) -> TaskOptions:
        """Options from the user's arguments, checked."""
        if isinstance(workers, str):
            workers = (workers,)
        retries = retries or 0
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        return cls(
            tuple(workers or ()),
            bool(allow_other_workers),
            retries,
            priority,
            dict(resources or {}),
        )

    def restrictions(self) -> dict[str, Any] | None:
        """The ``restrictions`` entry for each task, or None when there is nothing to say."""
        if not (self.workers or self.retries or self.resources or self.allow_other_workers):
            return None
        return {
            "retries": self.retries,
            "resources": dict(self.resources),
            "workers": list(self.workers),
            "allow_other_workers": self.allow_other_workers,
            "annotations": {},
        }


@dataclass(slots=True)
class TaskBatch:
    """The tasks of one ``submit`` or ``map``, in call order (keys may repeat)."""

    keys: list[Key]
    rows: list[Row]
    #: the ``restrictions`` entry shared by every task, or None
    restrictions: dict[str, Any] | None = None

    @property
    def tokens(self) -> list[str]:
        return [row[4] for row in self.rows]


def spec_token(spec: Serialized) -> str:
    """A digest of a serialized run spec: two tasks with equal tokens are the same task."""
    digest = hashlib.blake2b(spec.header, digest_size=16)
    for buffer in spec.buffers:
        digest.update(buffer)
    return digest.hexdigest()


def _func_token(func: Callable[..., Any]) -> str:
    from dask.base import tokenize

    return str(tokenize(func))


def _call_key(name: str, func_token: str | None, args: Any, kwargs: Any) -> str:
    if func_token is None:  # impure
        return f"{name}-{uuid.uuid4().hex}"
    return _pure_key(name, func_token, args, kwargs)


def _pure_key(name: str, func_token: str, args: Any, kwargs: Any) -> str:
    from dask.base import tokenize

    token = tokenize(func_token, args, kwargs) if kwargs else tokenize(func_token, args)
    return f"{name}-{token}"


def _check_key(key: object) -> Key:
    if isinstance(key, str | tuple):
        return key
    raise TypeError(f"a key must be a str or a tuple, not {type(key).__name__}: {key!r}")


def build_submit(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    key: Key | None,
    pure: bool,
    options: TaskOptions,
) -> TaskBatch:
    """The one task of ``submit(func, *args, **kwargs)``."""
    if not callable(func):
        raise TypeError(f"submit needs a callable first, not {type(func).__name__}")
    name = funcname(func)
    if key is None:
        key = _call_key(name, _func_token(func) if pure else None, args, kwargs)
    key = _check_key(key)
    maker = _SpecMaker(func, kwargs, options)
    return TaskBatch([key], [maker.row(key, args)], options.restrictions())


def build_map(
    func: Callable[..., Any],
    iterables: Sequence[Iterable[Any]],
    kwargs: dict[str, Any],
    *,
    key: str | Sequence[Key] | None,
    pure: bool,
    options: TaskOptions,
) -> TaskBatch:
    """The tasks of ``map(func, *iterables, **kwargs)``: one per tuple of arguments."""
    if not callable(func):
        raise TypeError(f"map needs a callable first, not {type(func).__name__}")
    if not iterables:
        raise TypeError("map needs at least one iterable of arguments")
    calls = list(zip(*iterables, strict=False))
    keys = _map_keys(func, calls, kwargs, key, pure)
    maker = _SpecMaker(func, kwargs, options)
    rows = [maker.row(k, args) for k, args in zip(keys, calls, strict=True)]
    return TaskBatch(keys, rows, options.restrictions())


def _map_keys(
    func: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    kwargs: dict[str, Any],
    key: str | Sequence[Key] | None,
    pure: bool,
) -> list[Key]:
    if key is not None and not isinstance(key, str):
        keys = [_check_key(k) for k in key]
        if len(keys) != len(calls):
            raise ValueError(f"map got {len(keys)} keys for {len(calls)} calls")
        return keys
    name = key if isinstance(key, str) else funcname(func)
    if not pure:
        # one random draw per call, then a counter: as unique as a uuid4 per key (64
        # random bits name the call), 32 hex digits like one, and no system call per task
        # (a million uuid4 cost 9 s of the submit)
        base = uuid.uuid4().hex[:16]
        return [f"{name}-{base}{n:016x}" for n in range(len(calls))]
    func_token = _func_token(func)
    return [_pure_key(name, func_token, args, kwargs) for args in calls]


class _SpecMaker:
    """Pickles one function once, then run specs for it, one per call."""

    def __init__(self, func: Callable[..., Any], kwargs: dict[str, Any], options: TaskOptions):
        self.name = funcname(func)
        self.blob = dumps_function(func)
        self.kwarg_refs: dict[Key, Any] = {}
        self.kwargs = kwargs
        self.packed_kwargs = find_refs(kwargs, self.kwarg_refs) if kwargs else kwargs
        self.priority = -options.priority

    def row(self, key: Key, args: tuple[Any, ...]) -> Row:
        refs = dict(self.kwarg_refs)
        packed_args = find_refs(args, refs)
        spec = make_call_spec(self.blob, packed_args, self.packed_kwargs, bool(refs))
        try:
            blob = serialize(spec, carries=self.blob)
        except SerializationError as exc:
            raise _explain(self.name, args, self.kwargs, exc) from exc
        deps = tuple(refs)
        return (key, blob, deps, (self.priority, next(_submission_order)), spec_token(blob))


def _explain(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: SerializationError
) -> SerializationError:
    """An error naming the argument that cannot be pickled, and its type."""
    places = [(f"argument {i}", value) for i, value in enumerate(args)]
    places += [(f"keyword argument {k!r}", value) for k, value in kwargs.items()]
    for where, value in places:
        found = _unpicklable(value)
        if found is not None:
            culprit, error = found
            inside = "" if culprit is value else f" (inside a {type(value).__name__})"
            return SerializationError(
                f"cannot send {where} of {name}(): a {type(culprit).__name__} object"
                f"{inside} cannot be pickled: {error}"
            )
    return SerializationError(f"cannot send the task {name}(): {exc}")


def _unpicklable(value: Any) -> tuple[Any, SerializationError] | None:
    """The innermost part of ``value`` that cannot be pickled, and why; None if it can."""
    try:
        serialize(value)
    except SerializationError as exc:
        children: Iterable[Any] = ()
        if isinstance(value, list | tuple | set | frozenset):
            children = value
        elif isinstance(value, dict):
            children = value.values()
        for child in children:
            found = _unpicklable(child)
            if found is not None:
                return found
        return value, exc
    return None
