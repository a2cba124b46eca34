"""``shoal.progress``: a progress bar over futures (or persisted dask collections).

(This module is not named ``progress``: importing a submodule ``shoal.progress`` would
replace the function ``shoal.progress`` with the module.)

Rules of this file:

* It blocks until every future is done (finished, erred, cancelled or lost), updating one
  bar per completion, and never raises a task's error: the caller's ``gather`` or
  ``result`` does that. Failures show in the bar as ``erred=N``.
* The bar is ``tqdm.auto``: a text bar in a terminal, a widget in a notebook.
* A dask collection counts through the futures its graph holds, so persist it first
  (``progress(client.persist(x))``); one that holds none is refused with that advice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm

from shoal.client.as_completed import as_completed
from shoal.client.future import Future, futures_of


def progress(*objs: Any, desc: str = "tasks", file: IO[str] | None = None) -> None:
    """Show a progress bar until every future in ``objs`` is done.

    ``objs`` are futures, lists, tuples, sets and dicts of them, or persisted dask
    collections. Returns once all are done; task errors are counted, not raised.
    """
    futures = futures_in(objs)
    erred = 0
    with tqdm(total=len(futures), desc=desc, unit="task", file=file, dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            if future.status != "finished":
                erred += 1
                bar.set_postfix(erred=erred, refresh=False)
            bar.update()


def futures_in(objs: Iterable[Any]) -> list[Future]:
    """The distinct futures in ``objs`` (containers and persisted dask collections)."""
    found: dict[object, Future] = {}
    for obj in objs:
        for future in _futures_of_one(obj):
            found.setdefault(future.key, future)
    return list(found.values())


def _futures_of_one(obj: Any) -> list[Future]:
    from dask.base import is_dask_collection

    if isinstance(obj, list | tuple | set | frozenset):
        return [f for item in obj for f in _futures_of_one(item)]
    if isinstance(obj, dict):
        return [f for item in obj.values() for f in _futures_of_one(item)]
    if not is_dask_collection(obj):
        return futures_of(obj)
    futures = [v for v in obj.__dask_graph__().values() if isinstance(v, Future)]
    if not futures:
        raise TypeError(
            f"{type(obj).__name__} holds no shoal futures: persist it first, "
            "e.g. progress(client.persist(x))"
        )
    return futures


__all__ = ["futures_in", "progress"]
