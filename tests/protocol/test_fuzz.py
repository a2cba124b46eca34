"""Decoder fuzzing: random and mutated bytes give messages or ``ProtocolError``, nothing else.

Every input goes through ``FrameDecoder`` (in a random chunking) and every frame set it
yields through ``messages.loads``. The outcome of one input is one of: all its messages
decoded, a ``ProtocolError`` (after which the decoder refuses everything), or bytes that
end mid-message. Any other exception fails the test, and so does a large allocation:
tracemalloc watches the whole run. The random generator is seeded: the run is the same
every time.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from shoal.errors import ProtocolError
from shoal.protocol.frames import HANDSHAKE_LIMITS, FrameDecoder, FrameLimits, encode_frames
from shoal.protocol.messages import dumps, loads
from shoal.protocol.serialize import OUT_OF_BAND_BYTES, Serialized

SEED = 20_260_509
MUTATED_INPUTS = 10_000
RANDOM_INPUTS = 2_000
LIMITS = FrameLimits(max_frames=64, max_frame_bytes=256 * 1024, max_message_bytes=1024 * 1024)
#: the whole run may hold this much memory at its peak; a single claim passing the
#: limits is at most LIMITS.max_message_bytes
PEAK_BYTES = 8 * 1024 * 1024

_U64 = struct.Struct("<Q")
#: values a fuzzer likes to put where a length or a count goes
_INTERESTING = (0, 1, 2, 7, 8, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1)


# -- valid inputs --------------------------------------------------------------------------


def random_scalar(rng: random.Random) -> object:
    kind = rng.randrange(8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        return rng.uniform(-1e300, 1e300)
    if kind == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
    if kind == 5:
        return rng.randbytes(rng.randrange(40))
    if kind == 6:
        return rng.randrange(128)
    return random_serialized(rng)


def random_serialized(rng: random.Random) -> Serialized:
    size = OUT_OF_BAND_BYTES + rng.randrange(64) if rng.random() < 0.05 else rng.randrange(30)
    buffers = tuple(memoryview(rng.randbytes(rng.randrange(50))) for _ in range(rng.randrange(3)))
    return Serialized(bytes([rng.randrange(256)]) * size, buffers)


def random_message(rng: random.Random, depth: int = 0) -> object:
    if depth >= 3 or rng.random() < 0.3:
        return random_scalar(rng)
    shape = rng.randrange(3)
    children = [random_message(rng, depth + 1) for _ in range(rng.randrange(5))]
    if shape == 0:
        return children
    if shape == 1:
        return tuple(children)
    return {"op": "fuzz", **{f"k{i}": child for i, child in enumerate(children)}}


def valid_wire(rng: random.Random) -> bytes:
    """One to three messages, as they would be written to a socket."""
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 3)):
        parts.extend(bytes(f) for f in encode_frames(dumps(random_message(rng))))
    return b"".join(parts)


# -- mutations -------------------------------------------------------------------------------


def flip_bytes(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def flip_header_bytes(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 2)):
        if data:
            data[rng.randrange(min(len(data), 48))] = rng.randrange(256)


def truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data) + 1) :]


def duplicate(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data) + 1)
    piece = data[start : start + rng.randrange(64)]
    where = rng.randrange(len(data) + 1)
    data[where:where] = piece


def delete_slice(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data) + 1)
    del data[start : start + rng.randint(1, 16)]


def insert_random(rng: random.Random, data: bytearray) -> None:
    where = rng.randrange(len(data) + 1)
    data[where:where] = rng.randbytes(rng.randint(1, 16))


def splice_length(rng: random.Random, data: bytearray) -> None:
    """Overwrite the frame count or one frame length of the first frame set."""
    if len(data) < 8:
        return
    count = min(_U64.unpack_from(data)[0], 64)
    slot = rng.randrange(min(count + 1, len(data) // 8))
    original = _U64.unpack_from(data, 8 * slot)[0]
    choices = [
        *_INTERESTING,
        LIMITS.max_frames,
        LIMITS.max_frames + 1,
        LIMITS.max_frame_bytes,
        LIMITS.max_frame_bytes + 1,
        LIMITS.max_message_bytes + 1,
        original + 1,
        max(original - 1, 0),
        rng.randrange(2**64),
    ]
    _U64.pack_into(data, 8 * slot, rng.choice(choices))


def splice_msgpack_length(rng: random.Random, data: bytearray) -> None:
    """Plant a msgpack str/bin/array/map/ext with a huge length claim in the frame data."""
    if len(data) < 8:
        return
    count = min(_U64.unpack_from(data)[0], 64)
    start = 8 * (count + 1)
    if start >= len(data):
        return
    where = rng.randrange(start, len(data))
    marker = rng.choice([b"\xdb", b"\xc6", b"\xdd", b"\xdf", b"\xc9", b"\xd8\x01"])
    data[where : where + 5] = marker + rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"])


def concatenate(rng: random.Random, data: bytearray) -> None:
    other = bytearray(valid_wire(rng))
    flip_bytes(rng, other)
    data.extend(other)


MUTATIONS: list[Callable[[random.Random, bytearray], None]] = [
    flip_bytes,
    flip_header_bytes,
    truncate,
    duplicate,
    delete_slice,
    insert_random,
    splice_length,
    splice_msgpack_length,
    concatenate,
]


def mutated_input(rng: random.Random) -> bytes:
    data = bytearray(valid_wire(rng))
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        rng.choice(MUTATIONS)(rng, data)
    return bytes(data)


def random_input(rng: random.Random) -> bytes:
    """Noise, half of it behind a plausible frame-set header so that ``loads`` sees it."""
    noise = rng.randbytes(rng.randrange(200))
    if rng.random() < 0.5:
        return noise
    frames = [noise[: rng.randrange(len(noise) + 1)], rng.randbytes(rng.randrange(20))]
    return b"".join(bytes(f) for f in encode_frames(frames[: rng.randint(1, 2)]))


# -- the oracle ------------------------------------------------------------------------------

_VALID_TYPES = (type(None), bool, int, float, str, bytes, Serialized, msgpack.Timestamp)


def check_message(value: Any) -> None:
    """What ``loads`` returns is built only of the types the wire can carry."""
    if isinstance(value, tuple):
        for item in value:
            check_message(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_message(key)
            check_message(item)
    else:
        assert isinstance(value, _VALID_TYPES), type(value)


def split_points(rng: random.Random, size: int) -> list[int]:
    return sorted(rng.randrange(size + 1) for _ in range(rng.randrange(4)))


def run_one(rng: random.Random, data: bytes, outcomes: Counter[str]) -> None:
    decoder = FrameDecoder(HANDSHAKE_LIMITS if rng.random() < 0.1 else LIMITS)
    start = 0
    for end in [*split_points(rng, len(data)), len(data)]:
        try:
            frame_sets = decoder.feed(data[start:end])
        except ProtocolError:
            outcomes["decoder refused"] += 1
            with pytest.raises(ProtocolError):
                decoder.feed(b"\x01" + bytes(15))  # broken for good
            return
        start = end
        for frames in frame_sets:
            try:
                check_message(loads(frames))
            except ProtocolError:
                outcomes["loads refused"] += 1
            else:
                outcomes["message"] += 1
    outcomes["clean end" if decoder.idle else "ended mid-message"] += 1


def fuzz() -> tuple[int, Counter[str]]:
    """Run every fuzz input; the peak traced allocation and the outcomes."""
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    inputs = [mutated_input] * MUTATED_INPUTS + [random_input] * RANDOM_INPUTS
    tracemalloc.start()
    try:
        for make in inputs:
            run_one(rng, make(rng), outcomes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, outcomes


@pytest.mark.timeout(120)
def test_fuzz_decoder_and_loads() -> None:
    # in a fresh interpreter: tracemalloc counts every thread's allocations, and threads
    # other tests left behind (a full-suite run once showed 345 MB) are not the decoder's
    script = (
        "import json; from tests.protocol.test_fuzz import fuzz; "
        "peak, outcomes = fuzz(); print(json.dumps([peak, outcomes]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=110, check=True
    )
    peak, counts = json.loads(done.stdout.strip().splitlines()[-1])
    outcomes: Counter[str] = Counter(counts)
    assert peak < PEAK_BYTES, f"peak allocation {peak} bytes"
    # every kind of outcome happened plenty of times: the fuzzer reaches every branch
    for outcome in ("decoder refused", "loads refused", "message", "clean end"):
        assert outcomes[outcome] >= 300, outcomes
    assert outcomes["ended mid-message"] >= 100, outcomes


def test_fuzz_inputs_are_deterministic() -> None:
    first = [mutated_input(random.Random(SEED + i)) for i in range(20)]
    second = [mutated_input(random.Random(SEED + i)) for i in range(20)]
    assert first == second
