"""Frames over ``max_frame_bytes`` travel in pieces and arrive whole (with small limits)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ProtocolError
from shoal.protocol.frames import (
    CONTINUES,
    Buffer,
    FrameDecoder,
    FrameLimits,
    encode_frames,
    nbytes,
    pieces_of,
)

SMALL = FrameLimits(max_frames=64, max_frame_bytes=16, max_message_bytes=4096)


def wire(frames: Sequence[Buffer], max_frame_bytes: int) -> bytes:
    return b"".join(bytes(b) for b in encode_frames(frames, max_frame_bytes))


def test_a_frame_over_the_limit_is_cut_into_pieces_each_within_it() -> None:
    frame = bytes(range(40))
    buffers = encode_frames([b"head", frame], max_frame_bytes=16)
    count, *lengths = struct.unpack("<5Q", bytes(buffers[0]))
    assert count == 4
    assert lengths == [4, 16 | CONTINUES, 16 | CONTINUES, 8]
    assert [nbytes(b) for b in buffers[1:]] == [4, 16, 16, 8]
    assert pieces_of(40, 16) == 3 and pieces_of(0, 16) == 1 and pieces_of(16, 16) == 1


def test_the_pieces_arrive_as_one_frame_without_a_copy() -> None:
    frame = bytes(range(40))
    (frames,) = FrameDecoder(SMALL).feed(wire([b"head", frame, b""], 16))
    assert [bytes(f) for f in frames] == [b"head", frame, b""]
    assert frames[1].obj is frames[0].obj  # views of the one payload buffer


def test_frames_within_the_limit_are_not_cut() -> None:
    assert len(encode_frames([b"x" * 16, b"y"], max_frame_bytes=16)) == 3


def test_a_last_frame_that_claims_to_continue_is_refused() -> None:
    data = struct.pack("<2Q", 1, 4 | CONTINUES) + b"abcd"
    with pytest.raises(ProtocolError, match="claims to continue"):
        FrameDecoder(SMALL).feed(data)


def test_each_piece_is_checked_against_the_limit() -> None:
    data = struct.pack("<3Q", 2, 17 | CONTINUES, 1)
    with pytest.raises(ProtocolError, match="frame of 17 bytes"):
        FrameDecoder(SMALL).feed(data)


def test_the_message_limit_counts_every_piece() -> None:
    limits = FrameLimits(max_frames=64, max_frame_bytes=16, max_message_bytes=40)
    with pytest.raises(ProtocolError, match="frame set of 48 bytes"):
        FrameDecoder(limits).feed(wire([b"z" * 48], 16))


def test_a_numpy_buffer_is_cut_as_bytes() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(10, dtype="float64")  # 80 bytes, itemsize 8
    (frames,) = FrameDecoder(SMALL).feed(wire([memoryview(array)], 16))
    assert np.frombuffer(frames[0], dtype="float64").tolist() == array.tolist()


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=120), min_size=1, max_size=6),
    limit=st.integers(1, 40),
    chunk=st.integers(1, 64),
)
def test_any_frames_round_trip_through_pieces_in_any_chunking(
    frames: list[bytes], limit: int, chunk: int
) -> None:
    limits = FrameLimits(max_frames=10_000, max_frame_bytes=limit, max_message_bytes=1 << 20)
    data = wire(frames, limit)
    decoder = FrameDecoder(limits)
    got = []
    for start in range(0, len(data), chunk):
        got.extend(decoder.feed(data[start : start + chunk]))
    assert [[bytes(f) for f in frame_set] for frame_set in got] == [frames]
    assert decoder.idle
