"""Keys are normalized to builtin types before they go in a message."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shoal.graph.keys import normalize_key
from shoal.protocol.messages import dumps, loads


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
    assert loads(dumps(normal)) == normal
