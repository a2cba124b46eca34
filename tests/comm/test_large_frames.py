"""A value larger than the frame limit crosses a real connection in pieces, intact."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shoal.comm import Comm, Security, connect, listen
from shoal.config import CommConfig
from shoal.protocol.frames import FrameLimits
from shoal.protocol.serialize import deserialize, serialize
from tests.conftest import run

SECURITY = Security.local()
#: 1 MiB frames stand in for the 2 GiB default, so the test stays cheap
CONFIG = CommConfig(
    limits=FrameLimits(max_frames=1024, max_frame_bytes=1 << 20, max_message_bytes=64 << 20)
)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:0", "inproc://"], ids=["tcp", "inproc"])
def test_a_value_over_the_frame_limit_arrives_whole(address: str) -> None:
    value = np.arange((5 << 20) // 8 + 3, dtype="int64")  # ~5 MiB, not a multiple of 1 MiB
    accepted: asyncio.Queue[Comm] = asyncio.Queue()

    async def keep(comm: Comm) -> None:
        await accepted.put(comm)
        await asyncio.sleep(60)

    async def main() -> object:
        listener = await listen(address, keep, security=SECURITY, role="w", config=CONFIG)
        try:
            client = await connect(listener.address, security=SECURITY, role="c", config=CONFIG)
            server = await accepted.get()
            try:
                await client.write({"op": "data", "value": serialize(value)})
                msg = await server.read()
                return deserialize(msg["value"])
            finally:
                client.abort()
                server.abort()
        finally:
            await listener.stop()

    got = run(main())
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, value)
