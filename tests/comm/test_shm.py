"""Same-host transfers, one process playing both ends: bytes intact, nothing left lent or
open, stale addresses and fds refused, and every way it cannot work falls back."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import numpy as np
import pytest

from shoal.comm import shm
from shoal.comm.shm import (
    MEMFD,
    READ,
    SHM_MIN_BYTES,
    SharedMemoryTransfers,
    ShmUnavailable,
    host_identity,
)
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


def test_read_mode_copies_large_buffers_and_creates_nothing() -> None:
    big = np.arange(SHM_MIN_BYTES // 4, dtype=np.int64)  # 2 MiB
    blob = bytes(range(256)) * (SHM_MIN_BYTES // 128)  # read-only memory lends too
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    request = receiver.request_kwargs("peer")["shm"]
    assert request.endswith(f"#{READ}") and sender.wants(request)
    reply = _reply(big=big, blob=blob, small=np.arange(10))
    sender.place(reply, request)
    assert reply["shm_mode"] == READ and set(reply["shm"]) == {"big", "blob"}
    assert sender.held == 2 and not _own_memfds() and not _own_mappings()
    assert sum(len(bytes(f)) for f in dumps(reply)) < SHM_MIN_BYTES  # bytes left the socket
    received = receiver.receive(_over_the_wire(reply))
    got = deserialize(received["data"]["big"])
    assert np.array_equal(got, big) and got.flags.writeable
    assert deserialize(received["data"]["blob"]) == blob
    big[:] = -1  # a copy: the receiver's value is its own
    assert got[1] == 1
    sender.close()
    assert sender.held == 0


def test_read_mode_refuses_what_is_no_longer_lent() -> None:
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    request = receiver.request_kwargs("peer")["shm"]
    late = _reply(a=np.ones(SHM_MIN_BYTES // 8))
    sender.place(late, request)
    sender.close()  # let go: the ticket is cleared before the buffer is dropped
    with pytest.raises(ShmUnavailable, match="no longer lends"):
        receiver.receive(_over_the_wire(late))
    again = _reply(a=np.zeros(SHM_MIN_BYTES // 8))
    sender.place(again, request)  # the same ticket slot, lent anew
    assert again["shm"]["a"][0][3] == late["shm"]["a"][0][3]
    with pytest.raises(ShmUnavailable, match="no longer lends"):
        receiver.receive(_over_the_wire(late))  # the old ticket does not match the new one
    assert not deserialize(receiver.receive(_over_the_wire(again))["data"]["a"]).any()
    sender.close()


def test_older_peers_asking_with_a_bare_identity_get_memfds() -> None:
    sender = SharedMemoryTransfers()
    assert sender.wants(host_identity())
    reply = _reply(a=np.ones(SHM_MIN_BYTES // 8))
    sender.place(reply, host_identity())
    assert reply["shm_mode"] == MEMFD and len(_own_memfds()) == 1
    sender.close()


def test_large_buffers_travel_as_memfds_and_arrive_intact() -> None:
    big = np.arange(SHM_MIN_BYTES // 4, dtype=np.int64)  # 2 MiB
    small = np.arange(10)
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers(modes=(MEMFD,))
    request = receiver.request_kwargs("peer")["shm"]
    assert request.endswith(f"#{MEMFD}") and sender.wants(request)
    reply = _reply(big=big, small=small)
    sender.place(reply, request)
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


def test_get_data_asks_again_over_tcp_and_then_in_the_next_mode() -> None:
    sender, receiver = SharedMemoryTransfers(), SharedMemoryTransfers()
    value = np.ones(SHM_MIN_BYTES // 8)
    calls: list[WorkerGetData] = []

    async def call(peer: str, rpc: WorkerGetData, **options: Any) -> Any:
        calls.append(rpc)
        reply = _reply(k=value)
        if sender.wants(rpc.shm):
            sender.place(reply, rpc.shm)
            sender.close()  # let go before the receiver takes it: the shm path must fail
        return _over_the_wire(reply)

    async def main() -> None:
        for _ in range(3):
            reply = await receiver.get_data(call, "tcp://peer:1", WorkerGetData(keys=("k",)))
            assert np.array_equal(deserialize(reply["data"]["k"]), value)

    asyncio.run(main())
    # each fetch: the next mode fails, then TCP; once both modes failed, TCP at once
    modes = [(c.shm or "#tcp").rpartition("#")[2] for c in calls]
    assert modes == [READ, "tcp", MEMFD, "tcp", "tcp"]


def test_a_read_buffer_is_handed_back_and_let_go_long_before_hold() -> None:
    sender, receiver = SharedMemoryTransfers(hold=60), SharedMemoryTransfers()
    request = receiver.request_kwargs("peer")["shm"]

    async def main() -> tuple[Any, int, int]:
        reply = _reply(a=np.arange(SHM_MIN_BYTES // 8))
        await sender.place_soon(reply, request)
        lent = sender.held
        got = deserialize(receiver.receive(_over_the_wire(reply))["data"]["a"])
        for _ in range(100):  # bounded: 10 s at most, against a hold of 60 s
            if not sender.held:
                break
            await asyncio.sleep(0.1)
        return got, lent, sender.held

    got, lent, held = asyncio.run(main())
    assert (lent, held) == (1, 0)
    assert np.array_equal(got, np.arange(SHM_MIN_BYTES // 8))
    sender.close()


@pytest.mark.parametrize("mode", [READ, MEMFD])
def test_what_is_lent_is_let_go_after_hold(mode: str) -> None:
    sender = SharedMemoryTransfers(hold=0.01)

    async def main() -> None:
        reply = _reply(a=np.ones(SHM_MIN_BYTES // 8))
        await sender.place_soon(reply, f"{host_identity()}#{mode}")
        assert reply["shm_mode"] == mode
        assert sender.held == 1
        for _ in range(500):  # bounded: 5 s at most
            if not sender.held:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert sender.held == 0 and not _own_memfds()
