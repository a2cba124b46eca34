"""Turning submit/map calls into update-graph rows: keys, references, pickling, options."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import shoal.client.tasks as tasks
from shoal.client.tasks import TaskOptions, build_map, build_submit, spec_token
from shoal.errors import SerializationError
from shoal.graph.spec import run_spec
from shoal.protocol.serialize import deserialize

NO_OPTIONS = TaskOptions()


def inc(x: int, y: int = 1) -> int:
    return x + y


class FakeFuture:
    """Anything with ``__shoal_key__`` counts as a future in the arguments."""

    def __init__(self, key: str) -> None:
        self.__shoal_key__ = key


def submit(*args: Any, key: Any = None, pure: bool = True, **kwargs: Any) -> tasks.TaskBatch:
    return build_submit(inc, args, kwargs, key=key, pure=pure, options=NO_OPTIONS)


def test_a_pure_call_has_a_deterministic_key_named_after_the_function() -> None:
    [key] = submit(1).keys
    assert key == submit(1).keys[0]
    assert isinstance(key, str) and key.startswith("inc-")
    assert submit(2).keys != [key]


def test_submit_and_map_name_the_same_call_alike() -> None:
    mapped = build_map(inc, [[1, 2]], {}, key=None, pure=True, options=NO_OPTIONS)
    assert mapped.keys[0] == submit(1).keys[0]
    assert mapped.keys[1] == submit(2).keys[0]


def test_impure_calls_get_fresh_keys() -> None:
    assert submit(1, pure=False).keys != submit(1, pure=False).keys


def test_an_impure_map_names_every_call_uniquely_and_unlike_the_next_map() -> None:
    def keys() -> list[Any]:
        return build_map(inc, [[1] * 1000], {}, key=None, pure=False, options=TaskOptions()).keys

    first, second = keys(), keys()
    assert len(set(first)) == len(first) == 1000
    assert not set(first) & set(second)
    assert all(k.startswith("inc-") and len(k) == len("inc-") + 32 for k in first)


def test_a_row_is_key_spec_dependencies_priority_token() -> None:
    batch = submit(1, key="k")
    [(key, spec, deps, priority, token)] = batch.rows
    assert key == "k" and deps == ()
    assert priority[0] == 0
    assert token == spec_token(spec)
    assert run_spec(deserialize(spec), {}) == 2


def test_futures_nested_in_arguments_become_dependencies() -> None:
    a, b, c = FakeFuture("a"), FakeFuture("b"), FakeFuture("c")
    batch = build_submit(
        lambda xs, d, y=0: xs[0] + xs[1][0] + d["k"][0] + y,
        ([a, (b, 1)],),
        {"d": {"k": [c]}, "y": 10},
        key="total",
        pure=True,
        options=NO_OPTIONS,
    )
    [(_, spec, deps, _, _)] = batch.rows
    assert set(deps) == {"a", "b", "c"}
    _, args, _, has_refs = deserialize(spec)
    assert has_refs and args[0][0].key == "a"
    assert run_spec(deserialize(spec), {"a": 1, "b": 2, "c": 3}) == 16


def test_substituted_values_reach_the_function() -> None:
    batch = build_submit(
        lambda xs, d: xs[0] + xs[1][0] + d["k"],
        ([FakeFuture("a"), (FakeFuture("b"),)],),
        {"d": {"k": FakeFuture("c")}},
        key="sum",
        pure=True,
        options=NO_OPTIONS,
    )
    assert run_spec(deserialize(batch.rows[0][1]), {"a": 1, "b": 10, "c": 100}) == 111


def test_a_non_picklable_argument_fails_naming_its_type_and_place() -> None:
    with pytest.raises(SerializationError, match=r"argument 1 of inc\(\).*lock") as info:
        submit(1, [1, threading.Lock()])
    assert "inside a list" in str(info.value)


def test_a_non_picklable_keyword_argument_is_named() -> None:
    with pytest.raises(SerializationError, match="keyword argument 'y'"):
        submit(1, y=threading.Lock())


def test_map_pickles_the_function_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = tasks.dumps_function  # type: ignore[attr-defined]

    def counting(func: Any) -> bytes:
        calls.append(func)
        return original(func)

    monkeypatch.setattr(tasks, "dumps_function", counting)
    batch = build_map(inc, [range(100)], {}, key=None, pure=True, options=NO_OPTIONS)
    assert len(batch.rows) == 100 and len(calls) == 1


def test_map_zips_several_iterables_and_shares_keyword_arguments() -> None:
    batch = build_map(inc, [[1, 2, 3], [10, 20, 30]], {}, key=None, pure=True, options=NO_OPTIONS)
    assert [run_spec(deserialize(r[1]), {}) for r in batch.rows] == [11, 22, 33]
    batch = build_map(inc, [[1, 2]], {"y": 5}, key=None, pure=True, options=NO_OPTIONS)
    assert [run_spec(deserialize(r[1]), {}) for r in batch.rows] == [6, 7]


def test_map_keys_from_a_prefix_or_a_list() -> None:
    batch = build_map(inc, [[1, 2]], {}, key="step", pure=True, options=NO_OPTIONS)
    assert all(isinstance(k, str) and k.startswith("step-") for k in batch.keys)
    batch = build_map(inc, [[1, 2]], {}, key=["a", ("b", 0)], pure=True, options=NO_OPTIONS)
    assert batch.keys == ["a", ("b", 0)]
    with pytest.raises(ValueError, match="2 keys for 3 calls"):
        build_map(inc, [[1, 2, 3]], {}, key=["a", "b"], pure=True, options=NO_OPTIONS)


def test_priority_orders_by_user_priority_then_submission() -> None:
    options = TaskOptions.make(priority=5)
    batch = build_map(inc, [[1, 2]], {}, key=None, pure=True, options=options)
    first, second = (row[3] for row in batch.rows)
    assert first[0] == -5 and first < second


def test_restrictions_only_when_there_are_any() -> None:
    assert TaskOptions.make().restrictions() is None
    options = TaskOptions.make(workers="tcp://w:1", retries=2, resources={"GPU": 1})
    assert options.restrictions() == {
        "retries": 2,
        "resources": {"GPU": 1},
        "workers": ["tcp://w:1"],
        "allow_other_workers": False,
        "annotations": {},
    }
    with pytest.raises(ValueError, match="retries"):
        TaskOptions.make(retries=-1)


def test_bad_calls_are_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        build_submit(1, (), {}, key=None, pure=True, options=NO_OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be"):
        submit(1, key=3)
    with pytest.raises(TypeError, match="at least one iterable"):
        build_map(inc, [], {}, key=None, pure=True, options=NO_OPTIONS)
