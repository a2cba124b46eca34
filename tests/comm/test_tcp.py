"""The TCP transport's large-frame path: bytes intact in any interleaving with small
messages, the payload written from its own memory (not copied into asyncio's buffer), and
received into a mapping of its final size."""

from __future__ import annotations

import asyncio
import mmap
from typing import Any

import numpy as np

from shoal.comm import Security
from shoal.comm.tcp import _NUDGE_BYTES, TCPComm
from shoal.protocol.serialize import deserialize, serialize
from tests.comm.helpers import comm_pair
from tests.conftest import run

SECURITY = Security.local()
NBYTES = 32 << 20


def test_large_frames_are_written_from_their_own_memory_and_arrive_intact() -> None:
    value = np.random.default_rng(0).integers(0, 2**63, NBYTES // 8, dtype=np.int64)

    async def main() -> tuple[list[Any], int]:
        async with comm_pair("tcp://127.0.0.1:0", server_security=SECURITY) as (client, server, _):
            assert isinstance(client, TCPComm)
            outbox = client._outbox
            assert outbox is not None
            before = outbox.sent_direct
            messages = [
                {"op": "small", "i": 1},
                {"op": "data", "value": serialize(value)},
                {"op": "small", "i": 2},
                {"op": "data", "value": serialize(value[::-1].copy())},
            ]
            writes = [asyncio.ensure_future(client.write(m)) for m in messages]
            reads = [await server.read() for _ in writes]
            await asyncio.gather(*writes)
            return reads, outbox.sent_direct - before

    reads, direct = run(main())
    assert [m["op"] for m in reads] == ["small", "data", "small", "data"]
    assert [m.get("i") for m in reads] == [1, None, 2, None]
    first, second = (deserialize(m["value"]) for m in reads[1::2])
    np.testing.assert_array_equal(first, value)
    np.testing.assert_array_equal(second, value[::-1])
    # asyncio copies only the nudges that make it watch for writability, one per
    # socket-full: most of the 64 MiB went from the arrays' own memory
    copied = 2 * NBYTES - direct
    assert direct > 0 and copied < NBYTES, (direct, copied, _NUDGE_BYTES)


def test_a_large_frame_lands_in_a_mapping_of_its_final_size() -> None:
    value = np.ones(NBYTES // 8)

    async def main() -> list[memoryview]:
        async with comm_pair("tcp://127.0.0.1:0", server_security=SECURITY) as (client, server, _):
            await client.write_frames([b"head", value.data.cast("B")])
            return await server.read_frames()

    head, body = run(main())
    assert bytes(head) == b"head" and body.nbytes == NBYTES
    assert isinstance(body.obj, mmap.mmap) and len(body.obj) == 4 + NBYTES  # one payload
    np.testing.assert_array_equal(np.frombuffer(body, dtype=np.float64), value)
