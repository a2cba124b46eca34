"""shoal.protocol.serialize: user objects <-> ``Serialized``, big buffers never copied."""

from __future__ import annotations

import functools
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import SerializationError
from shoal.protocol.frames import FrameDecoder, encode_frames
from shoal.protocol.messages import dumps, loads
from shoal.protocol.serialize import OUT_OF_BAND_BYTES, Serialized, deserialize, serialize


def through_the_wire(obj: object) -> Any:
    """``obj`` serialized, sent as a message over bytes, received, loaded, deserialized."""
    wire = b"".join(bytes(f) for f in encode_frames(dumps({"op": "x", "v": serialize(obj)})))
    [frames] = FrameDecoder().feed(wire)
    return deserialize(loads(frames)["v"])


def shares_memory(buffer: Any, array: np.ndarray[Any, Any]) -> bool:
    return bool(np.shares_memory(np.frombuffer(buffer, dtype=np.uint8), array))


# -- plain objects -------------------------------------------------------------------------

python_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.complex_numbers(allow_nan=False),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.frozensets(st.integers(), max_size=4),
    ),
    max_leaves=20,
)


@given(python_values)
def test_python_values_round_trip(value: object) -> None:
    assert deserialize(serialize(value)) == value
    assert through_the_wire(value) == value


@settings(deadline=None, max_examples=30)
@given(
    st.sampled_from(["u1", "i4", "f8", "c16"]),
    st.lists(st.integers(min_value=0, max_value=70), min_size=0, max_size=3),
    st.sampled_from(["C", "F"]),
)
def test_numpy_arrays_round_trip(dtype: str, shape: list[int], order: str) -> None:
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape, order=order)  # type: ignore[call-overload]
    for back in (deserialize(serialize(array)), through_the_wire(array)):
        assert back.dtype == array.dtype
        np.testing.assert_array_equal(back, array)


def test_non_contiguous_array_round_trips() -> None:
    array = np.arange(200_000, dtype="f8").reshape(400, 500)[::3, ::2]
    np.testing.assert_array_equal(through_the_wire(array), array)


# -- large buffers: out of band, never copied ------------------------------------------------


def test_large_array_is_not_copied_on_send() -> None:
    array = np.arange(1 << 18, dtype="f8")  # 2 MiB
    value = serialize(array)
    assert len(value.buffers) == 1
    assert shares_memory(value.buffers[0], array)
    assert len(value.header) < 1024  # the pickle stream holds no array data

    out = encode_frames(dumps({"op": "put", "data": value}))
    big = [f for f in out if isinstance(f, memoryview) and f.nbytes == array.nbytes]
    assert len(big) == 1
    assert shares_memory(big[0], array)
    assert sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in out) < (
        array.nbytes + 1024
    )


def test_small_array_stays_in_band() -> None:
    array = np.arange(OUT_OF_BAND_BYTES // 16, dtype="f8")
    value = serialize(array)
    assert value.buffers == ()
    np.testing.assert_array_equal(deserialize(value), array)


def test_large_array_is_not_copied_on_receive() -> None:
    array = np.arange(1 << 17, dtype="i8")
    wire = b"".join(bytes(f) for f in encode_frames(dumps(serialize(array))))
    [frames] = FrameDecoder().feed(wire)
    back = deserialize(loads(frames))
    np.testing.assert_array_equal(back, array)
    [big] = [f for f in frames if f.nbytes == array.nbytes]
    assert shares_memory(big, back)


def test_serialized_nbytes() -> None:
    value = serialize(np.zeros(1 << 16))
    assert value.nbytes == len(value.header) + (1 << 19)


# -- code by value ---------------------------------------------------------------------------


def test_lambda_round_trips() -> None:
    square = through_the_wire(lambda x: x * x)
    assert square(7) == 49


def test_closure_round_trips() -> None:
    offset = 10

    def add(x: int) -> int:
        return x + offset

    assert through_the_wire(add)(5) == 15
    partial = through_the_wire(functools.partial(add, 1))
    assert partial() == 11


def test_local_class_round_trips() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def norm2(self) -> int:
            return self.x * self.x + self.y * self.y

    back = through_the_wire(Point(3, 4))
    assert back.norm2() == 25


MAIN_SOURCE = """
SCALE = 3

def triple(x):
    return x * SCALE

class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return triple(self.value)
"""


@pytest.fixture
def main_namespace() -> dict[str, Any]:
    """Functions and classes defined as if in a script run as ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<script>", "exec"), namespace)
    return namespace


def test_main_function_and_class_round_trip(main_namespace: dict[str, Any]) -> None:
    assert main_namespace["triple"].__module__ == "__main__"
    assert through_the_wire(main_namespace["triple"])(2) == 6
    assert through_the_wire(main_namespace["Box"](5)).get() == 15


def test_main_objects_go_by_value_even_when_pickle_finds_them(
    main_namespace: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sender's __main__ has the function, so plain pickle would refer to it by name;
    # the receiver's __main__ does not, so it must travel by value
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "triple", main_namespace["triple"], raising=False)
    assert b"__main__" in pickle.dumps(main_namespace["triple"], protocol=5)
    value = serialize(main_namespace["triple"])
    monkeypatch.undo()
    assert not hasattr(main, "triple")
    assert deserialize(value)(4) == 12


# -- failures name the culprit -----------------------------------------------------------------


class Unpicklable:
    def __reduce__(self) -> str | tuple[Any, ...]:
        raise RuntimeError("no pickling for you")


def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (threading.Lock, "lock"),
        (_generator, "generator"),
        (Unpicklable, "Unpicklable"),
        (lambda: {"nested": [threading.Lock()]}, "dict"),
    ],
)
def test_unserializable_objects_name_the_type(make: Callable[[], object], name: str) -> None:
    with pytest.raises(SerializationError, match=f"cannot serialize {name} object"):
        serialize(make())


def test_long_reprs_are_shortened() -> None:
    class Loud(Unpicklable):
        def __repr__(self) -> str:
            return "x" * 500

    with pytest.raises(SerializationError) as info:
        serialize(Loud())
    assert "x" * 77 + "..." in str(info.value)
    assert "x" * 81 not in str(info.value)


def test_broken_repr_does_not_hide_the_error() -> None:
    class Shy(Unpicklable):
        def __repr__(self) -> str:
            raise ValueError("no repr either")

    with pytest.raises(SerializationError, match="cannot serialize Shy object <Shy>"):
        serialize(Shy())


@pytest.mark.parametrize(
    "value",
    [
        Serialized(b"not a pickle"),
        Serialized(b""),
        Serialized(pickle.dumps(1)[:-1]),
        Serialized(memoryview(b"\x80\x05junk")),
    ],
)
def test_deserialize_failures_raise_serialization_error(value: Serialized) -> None:
    with pytest.raises(SerializationError, match="cannot deserialize"):
        deserialize(value)


def test_deserialize_needs_the_out_of_band_buffers() -> None:
    value = serialize(np.zeros(OUT_OF_BAND_BYTES, dtype="u1"))
    assert len(value.buffers) == 1
    with pytest.raises(SerializationError, match="cannot deserialize"):
        deserialize(Serialized(value.header, ()))


def test_unknown_module_on_the_receiving_side() -> None:
    module = Unpicklable.__module__.encode()
    stream = pickle.dumps(Unpicklable, protocol=5).replace(module, b"z" * len(module))
    with pytest.raises(SerializationError, match="ModuleNotFoundError"):
        deserialize(Serialized(stream))


def test_large_bytes_travel_out_of_band_and_come_back_as_bytes() -> None:
    data = bytes(range(256)) * 1024
    for value in (data, bytearray(data)):
        blob = serialize(value)
        assert len(blob.header) < 200  # the payload is not in the pickle stream
        assert len(blob.buffers) == 1 and blob.buffers[0].obj is value  # not copied on send
        back = deserialize(blob)
        assert type(back) is type(value) and back == value


def test_a_run_spec_leaves_out_the_docstring_a_curry_copied() -> None:
    import dask.array as da
    import numpy as np

    from shoal.graph.dask import materialize

    nodes = materialize(da.ones(8, chunks=4)).nodes
    node = next(iter(nodes.values()))  # a ones_like task: a curry wearing numpy's docstring
    plain, slim = serialize(node), serialize(node, task=True)
    assert b"Return an array of ones" in plain.header
    assert b"Return an array of ones" not in slim.header
    assert len(slim.header) < len(plain.header) - 1000
    restored = deserialize(slim)
    assert np.array_equal(restored({}), np.ones(4))
    assert deserialize(plain).func.func.__name__ == restored.func.func.__name__ == "ones_like"


def test_a_task_curry_keeps_the_rest_of_what_it_carries() -> None:
    from toolz import curry  # type: ignore[import-untyped]

    def scale(x: int, by: int) -> int:
        return x * by

    curried = curry(scale, by=3)
    curried.__name__ = "tripled"
    curried.note = "kept"  # type: ignore[attr-defined]
    back = deserialize(serialize(curried, task=True))
    assert back(2) == 6 and back.__name__ == "tripled" and back.note == "kept"
    assert serialize(b"plain", task=True).header == serialize(b"plain").header
