"""shoal.protocol.messages: messages <-> frames, with ``Serialized`` values anywhere."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ProtocolError
from shoal.protocol.frames import FrameDecoder, encode_frames
from shoal.protocol.messages import dumps, loads, wire_safe
from shoal.protocol.serialize import OUT_OF_BAND_BYTES, Serialized
from tests.conftest import received

# -- strategies ----------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
small_bytes = st.binary(max_size=40)
#: headers large enough to travel as a frame of their own; few distinct ones, cheap to make
large_headers = st.integers(min_value=0, max_value=300).map(
    lambda n: bytes([n % 251]) * (OUT_OF_BAND_BYTES + n)
)
serialized_values = st.builds(
    Serialized,
    header=st.one_of(small_bytes, large_headers),
    buffers=st.lists(small_bytes.map(lambda b: memoryview(b)), max_size=3).map(tuple),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.text(max_size=20),
    small_bytes,
)
keys = st.one_of(scalars, st.tuples(scalars, scalars))
messages = st.recursive(
    st.one_of(scalars, serialized_values),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=25,
)


def normal(value: Any) -> Any:
    """A hashable, type-exact form of a message, for comparing what went in with what came out.

    Lists and tuples are both arrays on the wire (they come back as tuples); floats are
    compared bit for bit (so NaN equals itself and -0.0 differs from 0.0).
    """
    if isinstance(value, Serialized):
        return ("Serialized", bytes(value.header), tuple(bytes(b) for b in value.buffers))
    if isinstance(value, list | tuple):
        return ("array", tuple(normal(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((normal(k), normal(v)) for k, v in value.items()))
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


# -- round trips ---------------------------------------------------------------------------


@settings(deadline=None)
@given(messages)
def test_round_trip(msg: Any) -> None:
    assert normal(loads(received(dumps(msg)))) == normal(msg)


@settings(deadline=None)
@given(messages)
def test_round_trip_through_the_wire(msg: Any) -> None:
    frames = dumps(msg)
    wire = b"".join(bytes(f) for f in encode_frames(frames))
    decoder = FrameDecoder()
    [received] = decoder.feed(wire)
    assert [bytes(f) for f in received] == [bytes(f) for f in frames]
    assert normal(loads(received)) == normal(msg)
    assert decoder.idle


@settings(deadline=None)
@given(messages)
def test_received_messages_can_be_forwarded(msg: Any) -> None:
    # the scheduler forwards run specs it received without opening them
    def send_and_receive(message: Any) -> Any:
        wire = b"".join(bytes(f) for f in encode_frames(dumps(message)))
        [frames] = FrameDecoder().feed(wire)
        return loads(frames)

    assert normal(send_and_receive(send_and_receive(msg))) == normal(msg)


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=5), messages, max_size=3), st.text(min_size=1))
def test_op_map_round_trip(body: dict[str, Any], op: str) -> None:
    msg = {**body, "op": op}  # the op wins over a body field of the same name
    back = loads(received(dumps(msg)))
    assert back["op"] == op
    assert normal(back) == normal(msg)


@settings(deadline=None)
@given(st.lists(serialized_values, min_size=1, max_size=5))
def test_serialized_values_use_frames_after_the_header(values: list[Serialized]) -> None:
    frames = dumps({"op": "x", "values": values})
    large = sum(len(v.header) >= OUT_OF_BAND_BYTES for v in values)
    assert len(frames) == 1 + large + sum(len(v.buffers) for v in values)
    assert len(frames[0]) < OUT_OF_BAND_BYTES


def test_arrays_come_back_as_tuples_and_tuple_keys_stay_hashable() -> None:
    msg = {"keys": [("x", 1), ("y", 2)], ("x", 1): [1, [2, 3]]}
    back = loads(received(dumps(msg)))
    assert back == {"keys": (("x", 1), ("y", 2)), ("x", 1): (1, (2, 3))}


def test_sets_travel_as_arrays() -> None:
    back = loads(received(dumps({"who": {"a", "b"}, "frozen": frozenset([3])})))
    assert sorted(back["who"]) == ["a", "b"]
    assert back["frozen"] == (3,)


def test_large_buffers_are_not_copied() -> None:
    big = bytearray(b"z" * (2 * OUT_OF_BAND_BYTES))
    value = Serialized(b"head", (memoryview(big),))
    frames = dumps({"op": "put", "v": value})
    assert frames[1] is value.buffers[0]


def test_out_of_band_header_comes_back_as_a_view_of_its_frame() -> None:
    header = b"h" * OUT_OF_BAND_BYTES
    frames = dumps(Serialized(header, ()))
    assert len(frames) == 2
    views = [memoryview(bytes(f)) for f in frames]
    back = loads(views)
    assert bytes(back.header) == header
    assert back.header.obj is views[1].obj  # a view of the received frame, not a copy


def test_unsupported_objects_are_refused_by_name() -> None:
    class Thing:
        pass

    with pytest.raises(TypeError, match="Thing"):
        dumps({"op": "x", "thing": Thing()})


# -- malformed input -----------------------------------------------------------------------


def _ext(data: object, code: int = 1) -> bytes:
    packed: bytes = msgpack.packb(msgpack.ExtType(code, msgpack.packb(data)))
    return packed


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([], "empty frame set"),
        ([b""], "malformed message header"),
        ([b"\xc1"], "malformed message header"),  # 0xc1 is never used
        ([b"\x93\x01\x02"], "malformed message header"),  # truncated array
        ([b"\x01\x02"], "malformed message header"),  # extra data
        ([b"\xdd\xff\xff\xff\xff"], "malformed message header"),  # array of 2**32-1
        ([b"\x81\x80\x01"], "malformed message header"),  # a map as a map key
        ([_ext(None, code=7)], "unknown msgpack extension type 7"),
        ([msgpack.packb(msgpack.ExtType(1, b"\xc1"))], "malformed serialized value"),
        ([_ext((b"h", "1", 0))], "bad frame indices"),
        ([_ext((b"h", 1, None))], "bad frame indices"),
        ([_ext((b"h", 1, 1))], "not there"),
        ([_ext((b"h", 0, 1)), b"x"], "not there"),
        ([_ext((b"h", 1, -1)), b"x"], "not there"),
        ([_ext((b"h", 1, 2)), b"x"], "not there"),
        ([_ext((0, 1, 0))], "not there"),
        ([_ext((2, 1, 0)), b"x"], "not there"),
        ([_ext(("h", 1, 0))], "bad header"),
        ([_ext((1.5, 1, 0))], "bad header"),
        ([_ext((b"h", 1))], "malformed serialized value"),
        ([_ext(7)], "malformed serialized value"),
    ],
)
def test_malformed_frames_raise_protocol_error(frames: list[bytes], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        loads(frames)


def test_serialized_value_may_point_at_its_frames() -> None:
    back = loads([_ext((2, 1, 1)), b"buffer", b"header"])
    assert bytes(back.header) == b"header"
    assert [bytes(b) for b in back.buffers] == [b"buffer"]


def test_wire_safe_keeps_what_travels_and_reprs_the_rest() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    entry = ("key", "released", frozenset({"a"}), {"n": [1, Opaque()]}, None, 2.5, b"x")
    safe = wire_safe(entry)
    assert safe == ("key", "released", ("a",), {"n": (1, "<opaque>")}, None, 2.5, b"x")
    assert loads(received(dumps(safe))) == safe
