"""Receive buffers: large ones are pre-faulted mappings; frames received into them are intact."""

from __future__ import annotations

import ctypes
import mmap
import re

import numpy as np
import pytest

from shoal.comm.buffers import PREFAULT_BYTES, huge_pages_on_request, receive_buffer
from shoal.protocol.frames import FrameDecoder, encode_frames


def test_small_buffers_are_bytearrays() -> None:
    buf = receive_buffer(PREFAULT_BYTES - 1)
    assert isinstance(buf, bytearray) and len(buf) == PREFAULT_BYTES - 1


@pytest.mark.skipif(not hasattr(mmap, "MAP_ANONYMOUS"), reason="needs anonymous mappings")
def test_large_buffers_are_zeroed_mappings_of_the_exact_size() -> None:
    buf = receive_buffer(PREFAULT_BYTES + 3)
    assert isinstance(buf, mmap.mmap)
    assert len(buf) == PREFAULT_BYTES + 3
    assert not any(memoryview(buf)[::4096])  # zeroed


def test_a_large_frame_arrives_intact_in_a_mapping() -> None:
    payload = np.arange(3 * PREFAULT_BYTES // 8, dtype=np.int64)
    decoder = FrameDecoder(allocate=receive_buffer)
    wire = b"".join(bytes(b) for b in encode_frames([b"head", memoryview(payload.data)]))
    sets = []
    for start in range(0, len(wire), 100_000):  # any chunking
        sets += decoder.feed(wire[start : start + 100_000])
    (frames,) = sets
    assert bytes(frames[0]) == b"head"
    received = np.frombuffer(frames[1], dtype=np.int64)
    assert np.array_equal(received, payload)
    assert received.flags.writeable  # a private mapping: the receiver owns its copy


def _smaps_entry(address: int) -> list[str]:
    """The /proc/self/smaps lines of the mapping that holds ``address``."""
    entry: list[str] = []
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            span = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if span:
                if inside:
                    break
                inside = int(span[1], 16) <= address < int(span[2], 16)
            if inside:
                entry.append(line.strip())
    return entry


@pytest.mark.skipif(not huge_pages_on_request(), reason="transparent huge pages are off here")
def test_large_buffers_ask_for_huge_pages() -> None:
    buf = receive_buffer(8 * PREFAULT_BYTES)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    eligible = [line.split()[-1] for line in _smaps_entry(address) if "THPeligible" in line]
    assert eligible == ["1"]
