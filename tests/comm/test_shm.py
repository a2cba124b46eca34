"""Shared-memory transfers, one process playing both ends: bytes intact, fds closed, and
every way it cannot work falls back instead of failing."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import numpy as np
import pytest

from shoal.comm import shm
from shoal.comm.shm import SHM_MIN_BYTES, SharedMemoryTransfers, ShmUnavailable, host_identity
from shoal.protocol.messages import dumps, loads
from shoal.protocol.rpc_workers import WorkerGetData
from shoal.protocol.serialize import deserialize, serialize

pytestmark = pytest.mark.skipif(not host_identity(), reason="needs Linux memfds and /proc")


def _reply(**values: Any) -> dict[str, Any]:
    return {"status": "OK", "data": {k: serialize(v) for k, v in values.items()}}


def _over_the_wire(reply: dict[str, Any]) -> Any:
    frames = [memoryview(bytes(f)) for f in dumps(reply)]
    return loads(frames)


def _own_memfds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"/memfd:{shm.SHM_PREFIX}{os.getpid()}-"):
            out.append(target)
    return out


def _own_mappings() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if f"memfd:{shm.SHM_PREFIX}{os.getpid()}-" in line]


def test_large_buffers_travel_as_memfds_and_arrive_intact() -> None:
    big = np.arange(SHM_MIN_BYTES // 4, dtype=np.int64)  # 2 MiB
    small = np.arange(10)
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    assert sender.wants(receiver.request_kwargs("peer")["shm"])
    reply = _reply(big=big, small=small)
    sender.place(reply)
    assert set(reply["shm"]) == {"big"} and sender.held == 1
    wire = _over_the_wire(reply)
    assert sum(len(bytes(f)) for f in dumps(reply)) < SHM_MIN_BYTES  # bytes left the socket
    received = receiver.receive(wire)
    got = deserialize(received["data"]["big"])
    assert np.array_equal(got, big) and got.flags.writeable
    assert np.array_equal(deserialize(received["data"]["small"]), small)
    sender.close()
    assert sender.held == 0 and not _own_memfds()
    assert np.array_equal(got, big)  # the mapping outlives the sender's fd
    assert _own_mappings()
    del got, received, wire
    gc.collect()
    assert not _own_mappings()  # unmapped with the last view: the kernel frees the memfd


def test_a_closed_or_reused_fd_is_refused_not_misread() -> None:
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    reply = _reply(a=np.ones(SHM_MIN_BYTES // 8))
    sender.place(reply)
    sender.close()  # the receiver came too late
    with pytest.raises(ShmUnavailable):
        receiver.receive(_over_the_wire(reply))
    reply = _reply(a=np.ones(SHM_MIN_BYTES // 8))
    sender.place(reply)
    ((_, name, fd, nbytes),) = reply["shm"]["a"]
    reply["shm"]["a"] = [[0, name + "0", fd, nbytes]]  # another memfd behind that number
    with pytest.raises(ShmUnavailable, match="no longer"):
        receiver.receive(_over_the_wire(reply))
    sender.close()


def test_other_hosts_and_turned_off_do_not_use_shared_memory() -> None:
    on, off = SharedMemoryTransfers(), SharedMemoryTransfers(enabled=False)
    assert off.request_kwargs("peer") == {} and not off.wants(on.identity)
    assert not on.wants("another-boot/pid:[1]/0") and not on.wants(None)


def test_get_data_asks_again_over_tcp_when_mapping_fails() -> None:
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    value = np.ones(SHM_MIN_BYTES // 8)
    calls: list[WorkerGetData] = []

    async def call(peer: str, rpc: WorkerGetData, **options: Any) -> Any:
        calls.append(rpc)
        reply = _reply(k=value)
        if sender.wants(rpc.shm):
            sender.place(reply)
            sender.close()  # gone before the receiver maps it: the shm path must fail
        return _over_the_wire(reply)

    async def main() -> None:
        for _ in range(2):
            reply = await receiver.get_data(call, "tcp://peer:1", WorkerGetData(keys=("k",)))
            assert np.array_equal(deserialize(reply["data"]["k"]), value)

    asyncio.run(main())
    # first fetch: shm, then TCP; second fetch: TCP at once (the peer is refused)
    assert [c.shm is not None for c in calls] == [True, False, False]


def test_held_fds_are_closed_after_hold() -> None:
    sender = SharedMemoryTransfers(hold=0.01)

    async def main() -> None:
        reply = _reply(a=np.ones(SHM_MIN_BYTES // 8))
        await sender.place_soon(reply)
        assert sender.held == 1
        for _ in range(500):  # bounded: 5 s at most
            if not sender.held:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert sender.held == 0 and not _own_memfds()
