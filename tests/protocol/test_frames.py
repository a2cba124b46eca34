"""shoal.protocol.frames: frame sets in any chunking, and hard limits before allocation."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ProtocolError
from shoal.protocol.frames import HANDSHAKE_LIMITS, Buffer, FrameDecoder, FrameLimits, encode_frames

frame_sets = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


def wire(*frame_sets: Sequence[Buffer]) -> bytes:
    return b"".join(bytes(part) for frames in frame_sets for part in encode_frames(frames))


def header(*lengths: int, count: int | None = None) -> bytes:
    """A frame-set header announcing ``lengths`` (and ``count`` frames, if given)."""
    return struct.pack(f"<{len(lengths) + 1}Q", len(lengths) if count is None else count, *lengths)


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` cut at the positions in ``cuts`` (any order, repeats allowed: empty chunks)."""
    points = sorted(c % (len(data) + 1) for c in cuts)
    start = 0
    for point in points:
        yield data[start:point]
        start = point
    yield data[start:]


def write_like_a_transport(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> None:
    """Deliver ``data`` as asyncio would: ask for a buffer, write at most what fits, report."""
    view = memoryview(data)
    turn = 0
    while view.nbytes:
        limit = sizes[turn % len(sizes)] if sizes else view.nbytes
        turn += 1
        target = decoder.get_buffer(-1)
        assert target.nbytes > 0
        count = min(limit, target.nbytes, view.nbytes)
        target[:count] = view[:count]
        decoder.buffer_updated(count)
        view = view[count:]


def as_bytes(received: list[list[memoryview]]) -> list[list[bytes]]:
    return [[bytes(f) for f in frames] for frames in received]


# -- encoding ------------------------------------------------------------------------------


def test_encode_frames_layout_and_no_copies() -> None:
    body = bytearray(b"abc")
    view = memoryview(b"defgh")
    out = encode_frames([b"", body, view])
    assert bytes(out[0]) == struct.pack("<4Q", 3, 0, 3, 5)
    assert out[1] == b""
    assert out[2] is body
    assert out[3] is view


def test_encode_frames_counts_bytes_not_items() -> None:
    view = memoryview(bytearray(16)).cast("I")
    assert bytes(encode_frames([view])[0]) == struct.pack("<2Q", 1, 16)


# -- decoding in any chunking --------------------------------------------------------------


@given(
    st.lists(frame_sets, min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=20)
)
def test_any_chunking_via_feed(messages: list[list[bytes]], cuts: list[int]) -> None:
    decoder = FrameDecoder()
    received: list[list[memoryview]] = []
    for chunk in split(wire(*messages), cuts):
        received.extend(decoder.feed(chunk))
    assert as_bytes(received) == messages
    assert decoder.idle


@given(
    st.lists(frame_sets, min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=40), max_size=10),
)
def test_any_chunking_via_get_buffer(messages: list[list[bytes]], sizes: list[int]) -> None:
    decoder = FrameDecoder()
    write_like_a_transport(decoder, wire(*messages), sizes)
    assert as_bytes(decoder.drain()) == messages
    assert decoder.idle


@settings(deadline=None, max_examples=50)
@given(
    st.lists(st.integers(min_value=0, max_value=200_000), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1000, max_value=70_000), max_size=6),
)
def test_large_frames_in_any_chunking(lengths: list[int], sizes: list[int]) -> None:
    frames = [bytes([i + 1]) * n for i, n in enumerate(lengths)]
    decoder = FrameDecoder()
    data = wire(frames, [b"after"])
    write_like_a_transport(decoder, data, sizes)
    assert as_bytes(decoder.drain()) == [frames, [b"after"]]


def test_many_frames_header_larger_than_scratch() -> None:
    frames = [bytes([i % 256]) * (i % 3) for i in range(12_000)]  # a 96 kB header
    data = wire(frames, [b"next"])
    for sizes in ([], [1000], [4095, 7], [65_537]):
        decoder = FrameDecoder()
        write_like_a_transport(decoder, data, sizes)
        assert as_bytes(decoder.drain()) == [frames, [b"next"]]


def test_zero_length_frames() -> None:
    decoder = FrameDecoder()
    assert as_bytes(decoder.feed(wire([b""], [b"", b"", b"x"]))) == [[b""], [b"", b"", b"x"]]


def test_large_payload_is_read_straight_into_its_frame() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 1024
    decoder.feed(header(len(payload)))
    target = decoder.get_buffer(-1)
    assert target.nbytes == len(payload)  # the frame's own memory, not the scratch buffer
    target[:] = payload
    decoder.buffer_updated(len(payload))
    [[frame]] = decoder.drain()
    assert frame.obj is target.obj
    assert frame == payload


def test_idle_only_between_messages() -> None:
    decoder = FrameDecoder()
    assert decoder.idle
    data = wire([b"abc"])
    decoder.feed(data[:3])
    assert not decoder.idle
    decoder.feed(data[3:17])  # the header and one byte of the frame
    assert not decoder.idle
    assert as_bytes(decoder.feed(data[17:])) == [[b"abc"]]
    assert decoder.idle


def test_drain_empties_the_queue() -> None:
    decoder = FrameDecoder()
    write_like_a_transport(decoder, wire([b"a"], [b"b"]), [])
    assert as_bytes(decoder.drain()) == [[b"a"], [b"b"]]
    assert decoder.drain() == []


# -- hard limits ---------------------------------------------------------------------------

#: a decoder parsing a bad header may use this much memory, however large the claim
SMALL_ALLOCATION = 1 << 20


def peak_allocation_while(action: Callable[[], object]) -> int:
    """The most memory Python allocated while ``action`` ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_allocation_measures_a_payload() -> None:
    # the control: a legitimate claim of 32 MB is allocated at once, and that is visible
    decoder = FrameDecoder()
    peak = peak_allocation_while(lambda: decoder.feed(header(32 << 20)))
    assert peak >= 32 << 20


LIMITS = FrameLimits(max_frames=8, max_frame_bytes=64 << 20, max_message_bytes=96 << 20)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (header(2**63), "the last frame of a frame set claims to continue"),
        (header(2**64 - 1), "frame of 9223372036854775807 bytes"),  # bit 63: continues
        (header(count=0), "announces 0 frames"),
        (header(1, 2, 3, 4, 5, 6, 7, 8, 9), "announces 9 frames"),
        (header(count=2**63), "announces 9223372036854775808 frames"),
        (header(count=2**64 - 1), "announces 18446744073709551615 frames"),
        (header(65 << 20), "frame of 68157440 bytes"),
        (header(1, (64 << 20) + 1), "frame of 67108865 bytes"),
        (header(64 << 20, 64 << 20), "frame set of 134217728 bytes"),
        (header(40 << 20, 40 << 20, 40 << 20), "frame set of 125829120 bytes"),
    ],
)
def test_limits_are_checked_before_allocating(data: bytes, reason: str) -> None:
    decoder = FrameDecoder(LIMITS)

    def feed() -> None:
        with pytest.raises(ProtocolError, match=reason):
            decoder.feed(data)

    assert peak_allocation_while(feed) < SMALL_ALLOCATION


def test_frame_count_is_checked_before_the_lengths_arrive() -> None:
    decoder = FrameDecoder(LIMITS)
    with pytest.raises(ProtocolError, match="announces 1000000 frames"):
        decoder.feed(struct.pack("<Q", 1_000_000))


def test_limits_at_the_boundary_are_allowed() -> None:
    limits = FrameLimits(max_frames=3, max_frame_bytes=10, max_message_bytes=20)
    decoder = FrameDecoder(limits)
    frames = [b"x" * 10, b"y" * 10, b""]
    assert as_bytes(decoder.feed(wire(frames))) == [frames]
    with pytest.raises(ProtocolError, match="frame set of 21 bytes"):
        decoder.feed(header(10, 10, 1))


def test_default_limits_refuse_a_huge_claim() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="frame set of"):
        decoder.feed(header(2**31, 2**31, 2**31, 2**31, 2**31))


def test_handshake_limits() -> None:
    decoder = FrameDecoder(HANDSHAKE_LIMITS)
    assert as_bytes(decoder.feed(wire([b"h" * 16384]))) == [[b"h" * 16384]]
    with pytest.raises(ProtocolError, match="announces 2 frames"):
        FrameDecoder(HANDSHAKE_LIMITS).feed(wire([b"a", b"b"]))
    with pytest.raises(ProtocolError, match="frame of 16385 bytes"):
        FrameDecoder(HANDSHAKE_LIMITS).feed(header(16385))


@pytest.mark.parametrize("bad", [header(count=0), header(2**63), header(1, 2, count=99)])
def test_decoder_stays_broken(bad: bytes) -> None:
    decoder = FrameDecoder(LIMITS)
    assert as_bytes(decoder.feed(wire([b"fine"]))) == [[b"fine"]]
    with pytest.raises(ProtocolError) as first:
        decoder.feed(bad)
    for attempt in (lambda: decoder.feed(wire([b"ok"])), lambda: decoder.get_buffer(-1)):
        with pytest.raises(ProtocolError) as again:
            attempt()
        assert str(again.value) == str(first.value)


def test_messages_completed_before_the_error_are_kept() -> None:
    decoder = FrameDecoder(LIMITS)
    with pytest.raises(ProtocolError):
        decoder.feed(wire([b"first"]) + header(count=0))
    assert as_bytes(decoder.drain()) == [[b"first"]]
