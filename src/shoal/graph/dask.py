"""Dask graphs as shoal sees them: materialized, normalized, ordered, cut into batches.

Pure: no IO, no client. dask hands a scheduler a plain dict, a ``HighLevelGraph`` or an
expression (anything with ``__dask_graph__()``); all become ``{key: GraphNode}`` through
dask's task spec (``convert_legacy_graph``: ``Task``, ``Alias``, ``DataNode``, legacy
tuples). A worker runs a node by calling it with its dependencies' values.

Rules of this file:

* ``dask._task_spec`` is private dask API: every use of it is in this module, so a dask
  change breaks one place.
* A dependency that is not in the graph is *external*: a future embedded in the graph
  (anything with ``__dask_future__``) or a key persisted earlier. It must already live on
  the cluster; it is a dependency like any other, never a task we send.
* Keys go out in ``dask.order`` order, dependencies first, so a batch of them depends only
  on itself, earlier batches and external keys.
* ``fuse_outputs`` runs an output together with the one task it alone depends on (the
  finalize step ``compute`` adds, an ``Alias`` once dask fused it): one task fewer on the
  critical path, so one scheduler round trip fewer. It never fuses across annotations,
  outputs, shared dependencies or ``block_fusion``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shoal._types import Key

#: the annotations that become placement and retry options; others pass on to workers
RESTRICTION_ANNOTATIONS = ("retries", "resources", "workers", "allow_other_workers")


@dataclass(slots=True)
class DaskGraph:
    """A materialized dask graph, ready to be cut into ``update-graph`` rows."""

    #: key -> dask GraphNode (callable with a mapping of its dependencies' values)
    nodes: dict[Key, Any]
    #: annotation name -> {key: value}, as ``__dask_annotations__()`` gives them
    annotations: dict[str, dict[Key, Any]] = field(default_factory=dict)

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The keys ``key`` needs (in the graph or external)."""
        deps: frozenset[Key] = self.nodes[key].dependencies
        return deps

    def priorities(self) -> dict[Key, int]:
        """``dask.order``'s rank of each key: lower runs first."""
        if not self.nodes:
            return {}
        from dask.order import order

        rank: Any = order
        ranks: dict[Key, int] = rank(self.nodes)
        return ranks

    def annotation(self, key: Key) -> dict[str, Any]:
        """The annotations of one key (empty when it has none)."""
        return {name: per_key[key] for name, per_key in self.annotations.items() if key in per_key}


def materialize(dsk: Any) -> DaskGraph:
    """Normalize what dask hands a scheduler into ``{key: GraphNode}`` plus annotations."""
    from dask._task_spec import convert_legacy_graph
    from dask.highlevelgraph import HighLevelGraph

    annotations: dict[str, dict[Key, Any]] = {}
    if not isinstance(dsk, Mapping):
        get_annotations = getattr(dsk, "__dask_annotations__", None)
        if get_annotations is not None:
            annotations = dict(get_annotations() or {})
        dsk = dsk.__dask_graph__()
    if isinstance(dsk, HighLevelGraph):
        annotations = _hlg_annotations(dsk) or annotations
    return DaskGraph(_normalize(dict(dsk), convert_legacy_graph), annotations)


def fuse_outputs(graph: DaskGraph, outputs: Iterable[Key]) -> DaskGraph:
    """``graph`` with each output run together with its only dependency, where that is a
    task of this graph which nothing else needs and neither has annotations (see the
    rules): an output that is an ``Alias`` (what ``compute``'s finalize step becomes once
    dask fused it) takes its target's task under its own key; an output task is fused with
    the task it depends on. The outputs keep their keys; the dependency's key is gone."""
    from dask._task_spec import Alias, Task

    nodes = graph.nodes
    wanted = set(outputs)
    annotated = {key for per_key in graph.annotations.values() for key in per_key}
    candidates: dict[Key, Key] = {}  # output -> its only dependency
    for key in wanted:
        node = nodes.get(key)
        if type(node) is not Alias and not isinstance(node, Task):
            continue
        if node.block_fusion or key in annotated or len(node.dependencies) != 1:
            continue
        [dep] = node.dependencies
        inner = nodes.get(dep)
        if (
            isinstance(inner, Task)
            and not inner.block_fusion
            and dep not in wanted
            and dep not in annotated
        ):
            candidates[key] = dep
    if not candidates:
        return graph
    inner_keys = set(candidates.values())
    needed_by = Counter(d for node in nodes.values() for d in node.dependencies if d in inner_keys)
    fused = dict(nodes)
    for key, dep in candidates.items():
        if needed_by[dep] != 1:
            continue
        node = nodes[key]
        if type(node) is Alias:
            fused[key] = nodes[dep].substitute({}, key=key)
        else:
            fuse: Any = Task.fuse  # dask's key type is narrower than ours
            fused[key] = fuse(nodes[dep], node, key=key)
        del fused[dep]
    return DaskGraph(fused, graph.annotations)


def _normalize(dsk: dict[Key, Any], convert: Any) -> dict[Key, Any]:
    """``convert_legacy_graph``, skipped when every value is a task-spec node already
    (as expressions produce them) and none is an alias of itself."""
    from dask._task_spec import Alias, GraphNode

    for key, node in dsk.items():
        if not isinstance(node, GraphNode) or (type(node) is Alias and node.target == key):
            converted: dict[Key, Any] = convert(dsk)
            return converted
    return dsk


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def refer_to_futures(node: Any) -> Any:
    """``node`` with futures among its plain arguments as references (``node`` if none).

    dask recognizes duck-typed futures (``__dask_future__``) in legacy graphs and task
    containers, but a future passed straight to ``delayed(f)(future)`` stays a plain
    argument, also inside a fused task's subgraph.
    """
    from dask._task_spec import Task, TaskRef, _execute_subgraph

    if type(node) is not Task:
        return node
    producer = node.data_producer
    if node.func is _execute_subgraph:
        inner, outkey, inkeys, *deps = node.args
        new_inner = {k: refer_to_futures(t) for k, t in inner.items()}
        if all(new_inner[k] is t for k, t in inner.items()):
            return node
        found = {d for t in new_inner.values() for d in t.dependencies} - set(inner) - set(inkeys)
        refs = (TaskRef(k) for k in found)
        extra_keys = tuple(inkeys) + tuple(found)
        return Task(
            node.key, _execute_subgraph, new_inner, outkey, extra_keys, *deps, *refs,
            _data_producer=producer,
        )  # fmt: skip
    if not (_has_future(node.args) or _has_future(node.kwargs)):
        return node
    args = tuple(_to_ref(a) for a in node.args)
    kwargs = {k: _to_ref(v) for k, v in node.kwargs.items()}
    return Task(node.key, node.func, *args, _data_producer=producer, **kwargs)


def _has_future(obj: Any) -> bool:
    typ = type(obj)
    if typ in _PLAIN:
        return False
    if typ in (list, tuple, set, frozenset):
        return any(_has_future(item) for item in obj)
    if typ is dict:
        return any(_has_future(item) for item in obj.values())
    return getattr(obj, "__dask_future__", False) is True and hasattr(obj, "key")


def _to_ref(obj: Any) -> Any:
    """``obj`` with futures replaced by ``TaskRef``s (containers become task containers)."""
    from dask._task_spec import TaskRef, parse_input

    if not _has_future(obj):
        return obj
    if type(obj) in (list, tuple, set, frozenset, dict):
        return parse_input(obj)  # dask's own: futures inside become references
    return TaskRef(obj.key)


def compute_expr(collections: list[Any], optimize_graph: bool) -> tuple[Any, list[Key]]:
    """The optimized expression computing ``collections``, and one output key per collection."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    finalize: Any = FinalizeCompute
    expr: Any = finalize(collections_to_expr(collections, optimize_graph)).optimize()
    return expr, flatten_keys(expr.__dask_keys__())


def persist_expr(collections: list[Any], optimize_graph: bool) -> tuple[Any, list[list[Key]]]:
    """The optimized expression of ``collections``, and each collection's keys."""
    from dask.base import collections_to_expr

    expr: Any = collections_to_expr(collections, optimize_graph).optimize()
    return expr, [flatten_keys(keys) for keys in expr.__dask_keys__()]


def _hlg_annotations(hlg: Any) -> dict[str, dict[Key, Any]]:
    """Each layer's annotations, spread over the layer's keys (callables called per key)."""
    out: dict[str, dict[Key, Any]] = {}
    for layer in hlg.layers.values():
        if not layer.annotations:
            continue
        keys = layer.get_output_keys()
        for name, value in layer.annotations.items():
            per_key = out.setdefault(name, {})
            for key in keys:
                per_key[key] = value(key) if callable(value) else value
    return out


def restrictions_of(annotations: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``update-graph`` restrictions entry for a key's annotations (None: nothing to say).

    ``priority`` is not a restriction: it goes into the task's priority instead.
    """
    if not annotations.keys() - {"priority"}:
        return None
    workers = annotations.get("workers") or ()
    if isinstance(workers, str):
        workers = (workers,)
    extra = {
        k: v
        for k, v in annotations.items()
        if k not in RESTRICTION_ANNOTATIONS and k != "priority" and _wire_safe(v)
    }
    return {
        "retries": int(annotations.get("retries") or 0),
        "resources": dict(annotations.get("resources") or {}),
        "workers": [str(w) for w in workers],
        "allow_other_workers": bool(annotations.get("allow_other_workers")),
        "annotations": extra,
    }


def _wire_safe(value: object) -> bool:
    """Whether an annotation value can travel in a msgpack header as it is."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_wire_safe(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _wire_safe(v) for k, v in value.items())
    return False


def flatten_keys(keys: Any) -> list[Key]:
    """The keys of a (nested) list of keys, in order; a tuple is a key, not a nesting."""
    if isinstance(keys, list):
        return [k for item in keys for k in flatten_keys(item)]
    return [keys]


def repack(keys: Any, values: Mapping[Key, Any]) -> Any:
    """``keys`` with each key replaced by its value (lists nest, as dask's ``get`` does)."""
    if isinstance(keys, list):
        return [repack(item, values) for item in keys]
    return values[keys]


def frontiers(batches: list[list[Key]], deps: Mapping[Key, Iterable[Key]]) -> list[set[Key]]:
    """For each batch (in submission order), its keys that a later batch depends on.

    The scheduler forgets a task that nothing wants or depends on at the end of a batch,
    so the client wants each batch's frontier until the later batches are in.
    """
    position = {key: n for n, batch in enumerate(batches) for key in batch}
    out: list[set[Key]] = [set() for _ in batches]
    for n, batch in enumerate(batches):
        for key in batch:
            for dep in deps[key]:
                earlier = position.get(dep)
                if earlier is not None and earlier < n:
                    out[earlier].add(dep)
    return out
