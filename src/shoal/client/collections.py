"""Dask collections on shoal: ``get`` (the dask scheduler entry point), ``compute``, ``persist``.

The ``Client`` methods of the same names are thin hooks onto these functions.

* ``get(dsk, keys)`` is what ``dask.compute(x, scheduler=client.get)`` calls: ``dsk`` is a
  dict, a ``HighLevelGraph`` or an (already optimized) expression; the values come back
  in the order and nesting of ``keys``.
* ``compute(collections)`` optimizes on the client (as dask does: key names come from
  ``tokenize``, which is not stable across interpreters) and returns one future per
  collection.
* ``persist(collections)`` returns the same collections backed by shoal futures, which
  any later graph names as dependencies (``Future.__dask_future__``).

Options (``priority``, ``retries``, ``workers``, ``resources``, ``allow_other_workers``)
apply to every task that has no ``dask.annotate`` value of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from shoal._types import Key
from shoal.client import data, graph_submit
from shoal.client.dask_config import SHOAL_DASK_CONFIG
from shoal.client.future import Future
from shoal.graph.dask import (
    DaskGraph,
    compute_expr,
    flatten_keys,
    fuse_outputs,
    materialize,
    persist_expr,
    repack,
)
from shoal.loop_monitor import collection_paused

if TYPE_CHECKING:
    from shoal.client.client import Client
    from shoal.client.future_state import FutureState

#: keyword arguments of get/compute/persist that become default annotations
OPTION_NAMES = ("priority", "retries", "workers", "resources", "allow_other_workers")


def options_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The task options among ``kwargs`` (others, such as dask's own, are ignored)."""
    options = {k: kwargs[k] for k in OPTION_NAMES if kwargs.get(k) not in (None, 0, False)}
    workers = options.get("workers")
    if isinstance(workers, str):
        options["workers"] = [workers]
    elif workers is not None:
        options["workers"] = list(workers)
    return options


@contextlib.contextmanager
def shoal_dask_config() -> Iterator[None]:
    """dask settings for graphs that shoal runs: shuffles and rechunks by tasks."""
    import dask

    with dask.config.set(SHOAL_DASK_CONFIG):
        yield


# -- submitting a materialized graph ---------------------------------------------------------------
def submit_graph(
    client: Client, graph: DaskGraph, outputs: list[Key], options: Mapping[str, Any]
) -> Any:
    """Futures for ``outputs`` (a list, or an awaitable of one for an asynchronous client)."""
    if client.asynchronous:
        return _submit_graph_async(client, graph, outputs, options)
    core = client._running_core()
    # collection stays paused until the rows are sent and dropped: a pass at the end of
    # ``prepare`` would scan them all (0.26 s for 100,000 tasks; loop_monitor)
    with collection_paused():
        prepared = graph_submit.prepare(graph, outputs, options)
        states = None
        if threading.get_ident() != core.loop_thread:  # a small new graph: no round trip
            states = graph_submit.send_soon(core, prepared)
        if states is None:
            states = cast("list[FutureState]", client._run(graph_submit.send(core, prepared)))
        del prepared
    return [Future._adopt(state, client) for state in states]


async def _submit_graph_async(
    client: Client, graph: DaskGraph, outputs: list[Key], options: Mapping[str, Any]
) -> list[Future]:
    core = client._running_core()
    prepared = await asyncio.to_thread(graph_submit.prepare, graph, outputs, options)
    states = await graph_submit.send(core, prepared)
    return [Future._adopt(state, client) for state in states]


# -- get -------------------------------------------------------------------------------------------
def get(client: Client, dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Run a dask graph; the values of ``keys``, nested as ``keys`` is."""
    outputs = flatten_keys(keys)
    options = options_of(kwargs)
    if client.asynchronous:
        with collection_paused():
            graph = materialize(dsk)
        return _get_async(client, graph, keys, outputs, options)
    with collection_paused():  # until the graph is sent and dropped (loop_monitor)
        graph = materialize(dsk)
        futures = submit_graph(client, graph, outputs, options)
        del graph
    try:
        values = client.gather(futures)
    finally:
        for future in futures:
            future.release()
    return repack(keys, dict(zip(outputs, values, strict=True)))


async def _get_async(
    client: Client, graph: DaskGraph, keys: Any, outputs: list[Key], options: dict[str, Any]
) -> Any:
    futures = await _submit_graph_async(client, graph, outputs, options)
    try:
        values = await data.gather(client._running_core(), futures)
    finally:
        for future in futures:
            future.release()
    return repack(keys, dict(zip(outputs, values, strict=True)))


# -- compute and persist -------------------------------------------------------------------------
def _split(collections: Any) -> tuple[list[Any], bool]:
    """The collections as a list, and whether a single one was given."""
    if isinstance(collections, list | tuple):
        return list(collections), False
    return [collections], True


def compute(client: Client, collections: Any, optimize_graph: bool = True, **kwargs: Any) -> Any:
    """A future per dask collection (objects that are not collections come back as they are)."""
    from dask.base import is_dask_collection

    items, single = _split(collections)
    wanted = [c for c in items if is_dask_collection(c)]
    if not wanted:
        return items[0] if single else items
    with collection_paused():  # until the graph is sent and dropped (loop_monitor)
        with shoal_dask_config():
            expr, outputs = compute_expr(wanted, optimize_graph)
            graph = materialize(expr)
            if optimize_graph:
                graph = fuse_outputs(graph, outputs)
        result = submit_graph(client, graph, outputs, options_of(kwargs))
        del expr, graph

    def place(futures: list[Future]) -> Any:
        found = iter(futures)
        out = [next(found) if is_dask_collection(c) else c for c in items]
        return out[0] if single else out

    return _then(client, result, place)


def persist(client: Client, collections: Any, optimize_graph: bool = True, **kwargs: Any) -> Any:
    """The collections, each rebuilt on shoal futures for its keys (computing from now on)."""
    from dask.base import is_dask_collection

    items, single = _split(collections)
    wanted = [c for c in items if is_dask_collection(c)]
    if not wanted:
        return items[0] if single else items
    with collection_paused():  # until the graph is sent and dropped (loop_monitor)
        with shoal_dask_config():
            expr, per_collection = persist_expr(wanted, optimize_graph)
            graph = materialize(expr)
        outputs = [key for keys in per_collection for key in keys]
        result = submit_graph(client, graph, outputs, options_of(kwargs))
        del expr, graph

    def rebuild(futures: list[Future]) -> Any:
        by_key = dict(zip(outputs, futures, strict=True))
        rebuilt = iter(
            _rebuild(c, {k: by_key[k] for k in keys})
            for c, keys in zip(wanted, per_collection, strict=True)
        )
        out = [next(rebuilt) if is_dask_collection(c) else c for c in items]
        return out[0] if single else out

    return _then(client, result, rebuild)


def _rebuild(collection: Any, futures: dict[Key, Future]) -> Any:
    rebuild, args = collection.__dask_postpersist__()
    return rebuild(futures, *args)


def _then(client: Client, result: Any, fn: Any) -> Any:
    """``fn(result)``, or an awaitable of it for an asynchronous client."""
    if not client.asynchronous:
        return fn(result)

    async def later() -> Any:
        return fn(await result)

    return later()
