"""The default client as dask's scheduler: registered in ``dask.config``, and unregistered.

While a shoal client is the process's default client, ``dask.config`` holds
``scheduler=ShoalDaskScheduler(client)``, which calls ``client.get`` (so ``x.compute()``
and ``dask.compute(x)`` run on shoal, and ``dask.persist`` delegates to ``client.persist``)
and asks for shuffles and rechunks by
tasks (the other methods need a single machine, or dask.distributed). When the last
default client closes, the values that were there before come back.

Rules of this file:

* Only values we set are ever taken back: a scheduler the user configured meanwhile
  stays.
* dask is imported only when a client becomes the default, never at import time.
* What we put in ``dask.config`` survives ``copy.deepcopy(dask.config.config)`` (dask and
  user code copy the config): the scheduler object deep-copies to itself, a bound method
  would not copy at all.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.client.client import Client

#: dask settings whenever shoal runs a graph
SHOAL_DASK_CONFIG: dict[str, Any] = {
    "dataframe.shuffle.method": "tasks",
    "array.rechunk.method": "tasks",
}


class ShoalDaskScheduler:
    """dask's ``scheduler`` setting while a shoal client is the default: calls ``client.get``.

    ``__self__`` is the client, as on a bound method: ``dask.persist`` finds
    ``client.persist`` through it.
    """

    __slots__ = ("__self__",)

    def __init__(self, client: Client) -> None:
        self.__self__ = client

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__self__.get(*args, **kwargs)

    def __copy__(self) -> ShoalDaskScheduler:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ShoalDaskScheduler:
        return self  # the client is a live connection: a copy of it means the same client

    def __repr__(self) -> str:
        return f"ShoalDaskScheduler({self.__self__!r})"


_lock = threading.Lock()
_MISSING = object()
#: the values we replaced, to put back when no shoal client is the default any more
_saved: dict[str, Any] = {}


def use_as_dask_scheduler(client: Client | None) -> None:
    """Make ``client.get`` dask's scheduler; None: put back what was configured before."""
    import dask

    with _lock:
        if client is None:
            _restore(dask.config)
            return
        wanted = {"scheduler": ShoalDaskScheduler(client), **SHOAL_DASK_CONFIG}
        for name in wanted:
            if name not in _saved:
                _saved[name] = dask.config.get(name, _MISSING)
        dask.config.set(wanted)


def _restore(config: Any) -> None:
    current = config.get("scheduler", None)
    if current is not None and not _is_ours(current):
        _saved.pop("scheduler", None)  # the user chose another scheduler meanwhile: keep it
    for name, value in _saved.items():
        if value is _MISSING:
            _delete(config.config, name)
        else:
            config.set({name: value})
    _saved.clear()


def _is_ours(scheduler: Any) -> bool:
    return isinstance(scheduler, ShoalDaskScheduler)


def _delete(config: dict[str, Any], dotted: str) -> None:
    """Remove a dotted key from dask's nested config dict (if there)."""
    *parents, leaf = dotted.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)
