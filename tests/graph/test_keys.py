"""Keys: the one key_split (dask's semantics, so shoal groups keys as dask does), and
normalization to builtin types before a key goes in a message."""

from __future__ import annotations

import dask.utils
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.graph.keys import funcname, key_split, normalize_key
from shoal.protocol.messages import dumps, loads
from tests.conftest import received


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("inc-3", "inc"),
        ("inc-abc123", "inc"),
        ("inc-deadbeef", "inc"),
        ("sum-aggregate-1f2e", "sum-aggregate"),
        ("hello-world-1", "hello-world"),
        ("x", "x"),
        (("x", 0), "x"),
        (("x-1", 0, 1), "x"),
        ((("getitem-1a2b", 3), 1), "getitem"),
        ("('x-abc', 0, 1)", "x"),
        ("('rechunk-merge-f00d', 0)", "rechunk-merge"),
        (b"hello-world-1", "hello-world"),
        ("ae05086432ca935f6eba409a8ecd4896", "data"),
        ((), "tuple"),
    ],
)
def test_key_split(key: object, prefix: str) -> None:
    assert key_split(key) == prefix


@pytest.mark.parametrize("key", ["inc-3", ("x-1", 0), "('x-abc', 0, 1)", "a-b-c-1", 7, None])
def test_key_split_agrees_with_dask(key: object) -> None:
    assert key_split(key) == dask.utils.key_split(key)


def test_funcname_sees_through_partials_and_lambdas() -> None:
    import functools

    def inc(x: int) -> int:
        return x + 1

    assert funcname(functools.partial(inc, 1)) == "inc"
    assert funcname(lambda: None) == "lambda"


def test_numpy_integers_become_int_inside_tuples() -> None:
    key = ("vindex-merge", np.int64(3), (np.int32(1), np.uint8(2)))
    normal = normalize_key(key)
    assert normal == ("vindex-merge", 3, (1, 2))
    assert [type(part) for part in (normal[1], *normal[2])] == [int, int, int]
    assert hash(normal) == hash(key) and normal == key  # dask's lookups still find it


def test_subclasses_of_builtins_become_the_builtin() -> None:
    assert type(normalize_key(np.str_("x"))) is str
    assert type(normalize_key(np.float64(1.5))) is float


def test_plain_keys_are_returned_as_they_are() -> None:
    key = ("x", 1, "y")
    assert normalize_key("x") == "x"
    assert normalize_key(key) == key


_NUMPY_INTS = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32])
_PART = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**31), 2**31 - 1),
    st.builds(lambda t, v: t(abs(v) % 100), _NUMPY_INTS, st.integers()),
)
_KEYS = st.recursive(_PART, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=8)


@given(_KEYS)
def test_any_normalized_key_goes_in_a_message_and_stays_equal(key: object) -> None:
    normal = normalize_key(key)
    assert normal == key and hash(normal) == hash(key)
    assert loads(received(dumps(normal))) == normal
