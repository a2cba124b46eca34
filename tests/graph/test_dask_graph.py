"""Dask graphs normalized, ordered and cut into batches; the scheduler takes the batches."""

from __future__ import annotations

import operator
from typing import Any

import dask
import dask.array as da
import pytest
from dask._task_spec import Alias, DataNode, Task, TaskRef

from shoal._types import Key
from shoal.client import graph_submit
from shoal.client.graph_submit import prepare
from shoal.graph.dask import (
    flatten_keys,
    frontiers,
    fuse_outputs,
    materialize,
    refer_to_futures,
    repack,
    restrictions_of,
)
from shoal.protocol.serialize import deserialize
from shoal.scheduler.events import ClientConnected, KeysReleased
from shoal.scheduler.instructions import KeyInMemory
from tests.scheduler.helpers import (
    computes,
    finished,
    handle,
    join,
    new_state,
    of_type,
    sid,
    submit,
    task,
)


class DuckFuture:
    """What dask accepts as a future of another scheduler."""

    __dask_future__ = True

    def __init__(self, key: str) -> None:
        self.key = key


def run(nodes: dict[Any, Any], key: Any) -> Any:
    """Run a normalized graph in this process, the way workers call nodes."""
    values: dict[Any, Any] = {}

    def value(k: Any) -> Any:
        if k not in values:
            node = nodes[k]
            values[k] = node({d: value(d) for d in node.dependencies})
        return values[k]

    return value(key)


def test_legacy_tuples_aliases_and_literals_become_nodes() -> None:
    graph = materialize({"a": 1, "b": (operator.add, "a", 2), "c": "b", "d": [1, "a"]})
    assert isinstance(graph.nodes["a"], DataNode)
    assert isinstance(graph.nodes["b"], Task)
    assert isinstance(graph.nodes["c"], Alias)
    assert graph.dependencies("b") == {"a"}
    assert run(graph.nodes, "c") == 3
    assert run(graph.nodes, "d") == [1, 1]


def test_expressions_and_their_annotations() -> None:
    with dask.annotate(retries=3, workers="w1", priority=5):
        x = da.ones(10, chunks=5) + 1
    from dask.base import collections_to_expr

    graph = materialize(collections_to_expr([x], False))
    key = (x.name, 0)
    assert graph.annotation(key) == {"retries": 3, "workers": ["w1"], "priority": 5}
    assert restrictions_of(graph.annotation(key)) == {
        "retries": 3,
        "resources": {},
        "workers": ["w1"],
        "allow_other_workers": False,
        "annotations": {},
    }
    assert restrictions_of({"priority": 1}) is None


def test_futures_left_as_plain_arguments_become_dependencies() -> None:
    future = DuckFuture("remote")
    direct = materialize(dask.delayed(operator.add)(future, 1))
    inside = materialize(dask.delayed(sum)([future, 1]))
    for graph in (direct, inside):
        [node] = graph.nodes.values()
        assert not node.dependencies  # dask missed it
        node = refer_to_futures(node)
        assert node.dependencies == {"remote"}
        assert node({"remote": 41}) == 42
    assert refer_to_futures(node) is node


def inc(x: int) -> int:
    return x + 1


def test_compute_s_finalize_alias_runs_in_the_task_it_names() -> None:
    from shoal.graph.dask import compute_expr

    expr, outputs = compute_expr([(da.ones(16, chunks=4) + 1).sum()], True)
    graph = materialize(expr)
    [out] = outputs
    assert type(graph.nodes[out]) is Alias  # what dask leaves: one task just to rename
    fused = fuse_outputs(graph, outputs)
    assert len(fused.nodes) == len(graph.nodes) - 1
    assert isinstance(fused.nodes[out], Task)
    assert fused.dependencies(out) == graph.dependencies(graph.nodes[out].target)
    assert run(fused.nodes, out) == run(graph.nodes, out) == 32


def test_an_output_task_is_fused_with_the_task_only_it_needs() -> None:
    graph = materialize({"a": (inc, "x"), "b": (inc, "a"), "x": 1})
    fused = fuse_outputs(graph, ["b"])
    assert set(fused.nodes) == {"b", "x"}
    assert fused.dependencies("b") == {"x"}
    assert run(fused.nodes, "b") == 3


@pytest.mark.parametrize(
    ("dsk", "outputs", "annotations"),
    [
        ({"a": (inc, 1), "b": (inc, "a")}, ["a", "b"], {}),  # the dependency is wanted too
        ({"a": (inc, 1), "b": (inc, "a"), "c": (inc, "a")}, ["b"], {}),  # others need it
        ({"a": (inc, 1), "b": (inc, "a")}, ["b"], {"retries": {"a": 2}}),  # annotated
        ({"a": (inc, 1), "b": (operator.add, "a", "a2"), "a2": 1}, ["b"], {}),  # two deps
        ({"b": Task("b", inc, TaskRef("remote"))}, ["b"], {}),  # not in the graph
    ],
)
def test_outputs_are_not_fused_across_what_must_stay_apart(
    dsk: dict[str, Any], outputs: list[str], annotations: dict[str, dict[Key, Any]]
) -> None:
    graph = materialize(dsk)
    graph.annotations = annotations
    assert fuse_outputs(graph, outputs).nodes == graph.nodes


def test_keys_flatten_and_repack_with_tuples_as_keys() -> None:
    keys = [["a", ("x", 0)], ("x", 1)]
    assert flatten_keys(keys) == ["a", ("x", 0), ("x", 1)]
    assert repack(keys, {"a": 1, ("x", 0): 2, ("x", 1): 3}) == [[1, 2], 3]
    assert repack(("x", 0), {("x", 0): 7}) == 7


def test_frontiers_are_the_keys_later_batches_need() -> None:
    deps: dict[Key, list[Key]] = {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["c", "outside"]}
    assert frontiers([["a"], ["b"], ["c", "d"]], deps) == [{"a"}, {"b"}, set()]


def test_prepare_orders_pickles_once_and_cuts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_submit, "MAX_TASKS_PER_MESSAGE", 3)
    x = da.arange(40, chunks=5)
    graph = materialize(dask.base.collections_to_expr([(x + 1).sum()], False).optimize())
    outputs = flatten_keys(
        dask.base.collections_to_expr([(x + 1).sum()]).optimize().__dask_keys__()
    )
    prepared = prepare(graph, outputs, {"retries": 1, "priority": 2})
    rows = [row for batch in prepared.batches for row in batch]
    assert sorted(map(str, (r[0] for r in rows))) == sorted(map(str, graph.nodes))
    assert all(len(batch) <= 3 for batch in prepared.batches)
    seen: set[Any] = set()
    for row in rows:  # dependencies first
        assert all(d in seen for d in row[2])
        seen.add(row[0])
        assert row[3][0] == -2  # the priority option, negated: higher runs first
    assert all(r[0] in restrictions for batch, restrictions in zip(
        prepared.batches, prepared.restrictions, strict=True) for r in batch)  # fmt: skip
    node = deserialize(rows[0][1])
    assert node.key == rows[0][0]
    assert not prepared.frontiers[-1] and any(prepared.frontiers)


def test_scheduler_takes_a_graph_in_batches_and_keeps_the_frontier() -> None:
    state = new_state()
    handle(state, join("w1", nthreads=4), ClientConnected(client="c1", stimulus_id=sid()))
    # batch 1 wants its frontier ("b"), batch 2 needs it and wants the output
    first = handle(state, submit([task("a"), task("b", "a")], wanted=["b"]))
    (ct_a,) = computes(first)
    second = handle(state, submit([task("c", "b"), task("d", "c", "a")], wanted=["d"]))
    assert not computes(second)
    handle(state, KeysReleased(client="c1", keys=("b",), stimulus_id=sid()))
    assert {"a", "b", "c", "d"} <= set(state.tasks)
    pending = [ct_a]
    done: list[Any] = []
    while pending:
        ct = pending.pop()
        instructions = handle(state, finished(ct))
        pending.extend(computes(instructions))
        done.extend(i.key for i in of_type(instructions, KeyInMemory))
    assert "d" in done and state.tasks["d"].state == "memory"
