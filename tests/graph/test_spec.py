"""The one nested-container walker (``find_refs`` / ``substitute``): futures in lists,
tuples, sets and dicts become ``KeyRef``s, and values go back where they were."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.graph.spec import KeyRef, find_refs, substitute


class Keyed:
    """Anything with ``__shoal_key__`` counts as a future."""

    def __init__(self, key: str) -> None:
        self.__shoal_key__ = key


def test_futures_become_refs_and_are_found_in_the_order_met() -> None:
    a, b = Keyed("a"), Keyed("b")
    found: dict[Any, Any] = {}
    packed = find_refs([b, (a, 1), {"k": {b}}, frozenset([a])], found)
    assert list(found) == ["b", "a"] and found["b"] is b and found["a"] is a
    assert type(packed[1]) is tuple and type(packed[3]) is frozenset
    assert type(packed[0]) is KeyRef and packed[0].key == "b"
    assert substitute(packed, {"a": 1, "b": 2}) == [2, (1, 1), {"k": {2}}, frozenset([1])]


def test_refs_already_there_are_found_and_kept() -> None:
    ref = KeyRef("x")
    found: dict[Any, Any] = {}
    assert find_refs([ref], found) == [ref] and found == {"x": ref}


def test_classes_with_the_attribute_and_plain_objects_stay_as_they_are() -> None:
    found: dict[Any, Any] = {}
    obj = object()
    assert find_refs([Keyed, obj, 1, "s", None], found) == [Keyed, obj, 1, "s", None]
    assert found == {}


def test_a_missing_value_raises_or_is_left_out() -> None:
    packed = find_refs({"a": Keyed("a"), "b": [Keyed("b"), 3]}, {})
    with pytest.raises(KeyError):
        substitute(packed, {"a": 1})
    assert substitute(packed, {"a": 1}, skip_missing=True) == {"a": 1, "b": [3]}
    assert substitute(KeyRef("gone"), {}, skip_missing=True) is None


leaves = st.one_of(st.integers(), st.text(max_size=3), st.sampled_from("abc").map(Keyed))
nests = st.recursive(
    leaves,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.lists(kids, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=2), kids, max_size=3)
    ),
    max_leaves=12,
)


def _plain(obj: Any, values: dict[str, int]) -> Any:
    if isinstance(obj, Keyed):
        return values[obj.__shoal_key__]
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(x, values) for x in obj)
    if isinstance(obj, dict):
        return {k: _plain(v, values) for k, v in obj.items()}
    return obj


@given(nests)
def test_substitute_undoes_find_refs(obj: Any) -> None:
    found: dict[Any, Any] = {}
    packed = find_refs(obj, found)
    values = {key: ord(key) for key in found}
    assert substitute(packed, values) == _plain(obj, values)
    assert substitute(packed, values, skip_missing=True) == _plain(obj, values)
