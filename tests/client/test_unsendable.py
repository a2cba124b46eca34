"""A message that cannot be encoded fails the futures of the keys it names."""

from __future__ import annotations

import pytest

from shoal.client.refs import KeyTable
from shoal.client.unsendable import failed_futures_of, keys_of
from shoal.errors import SerializationError


class Unsendable:
    def __repr__(self) -> str:
        return "Unsendable()"


def test_keys_of_an_update_graph_are_its_rows_and_wanted_keys() -> None:
    msg = {"op": "update-graph", "tasks": [("a", None, ()), ("b", None, ("a",))], "wanted": ["b"]}
    assert keys_of(msg) == ["a", "b"]
    assert keys_of({"op": "client-releases-keys", "keys": ["x", "y"]}) == ["x", "y"]
    assert keys_of("not a message") == []


def test_the_futures_of_an_unsendable_graph_err_naming_the_bad_key() -> None:
    table = KeyTable()
    bad = ("x", Unsendable())
    states = table.acquire_many(["good", bad], [None, None])
    msg = {"op": "update-graph", "tasks": [("good", None, ()), (bad, None, ())], "wanted": [bad]}
    failed = failed_futures_of(table, msg, TypeError("Unsendable cannot go in a message"))
    assert failed == ["good", bad]
    for state in states:
        assert state.status == "error"
        exc = state.error.rebuild() if state.error is not None else None
        assert isinstance(exc, SerializationError)
        assert "('x', Unsendable())" in str(exc) and "update-graph" in str(exc)


def test_a_done_future_is_left_alone() -> None:
    table = KeyTable()
    (state,) = table.acquire_many(["k"], [None])
    state.finish("int")
    assert failed_futures_of(table, {"op": "x", "key": "k"}, TypeError("no")) == []
    assert state.status == "finished"


def test_unhashable_keys_do_not_break_the_handler() -> None:
    table = KeyTable()
    with pytest.raises(TypeError):
        hash(["a"])
    assert failed_futures_of(table, {"op": "x", "keys": [["a"]]}, TypeError("no")) == []
