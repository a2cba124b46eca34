"""ConnectionPool: reuse, the connection limit, rpc calls, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from shoal.comm import Comm, ConnectionPool, Security
from shoal.config import CommConfig
from shoal.errors import CommClosedError, RemoteError
from shoal.server import Server
from tests.conftest import run
from tests.fake_rpcs import Echo, bare

SECURITY = Security.local()


class Boom(Exception):
    pass


def boom(comm: Comm) -> None:
    raise Boom("remote boom")


def whoami(comm: Comm) -> str:
    return comm.peer_address


@asynccontextmanager
async def servers(n: int, address: str) -> AsyncIterator[list[Server]]:
    handlers: dict[str, Callable[..., Any]] = {
        "echo": lambda comm, x: x,
        "boom": boom,
        "whoami": whoami,
    }
    started = [Server(handlers=handlers, security=SECURITY, role="worker") for _ in range(n)]
    for server in started:
        await server.start()
        await server.listen(address)
    try:
        yield started
    finally:
        for server in started:
            await server.close()


def pool(limit: int = 512) -> ConnectionPool:
    return ConnectionPool(security=SECURITY, role="client", config=CommConfig(pool_limit=limit))


def test_call_returns_the_result(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool()
            assert await p.call(server.address, Echo(x={"a": [1, 2]})) == {"a": (1, 2)}
            await p.close()

    run(main())


def test_call_raises_the_remote_exception(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool()
            with pytest.raises(Boom, match="remote boom"):
                await p.call(server.address, bare("boom"))
            # the comm survives an error reply and is reused
            assert p.open == 1
            assert await p.call(server.address, Echo(x=1)) == 1
            assert p.open == 1
            await p.close()

    run(main())


def test_remote_errors_without_unpickling(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = ConnectionPool(security=SECURITY, role="scheduler", deserialize_errors=False)
            with pytest.raises(RemoteError, match="Boom: remote boom"):
                await p.call(server.address, bare("boom"))
            await p.close()

    run(main())


def test_sequential_calls_reuse_one_connection(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool()
            seen = {await p.call(server.address, bare("whoami")) for _ in range(20)}
            assert len(seen) == 1
            assert p.open == 1
            await p.close()

    run(main())


def test_concurrent_calls_open_several_connections(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool()
            results = await asyncio.gather(*(p.call(server.address, Echo(x=i)) for i in range(10)))
            assert results == list(range(10))
            assert 1 <= p.open <= 10
            await p.close()

    run(main())


def test_limit_makes_connect_wait_until_a_comm_is_given_back(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool(limit=2)
            a = await p.connect(server.address)
            b = await p.connect(server.address)
            third = asyncio.ensure_future(p.connect(server.address))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not third.done()
            assert p.open == 2
            p.reuse(server.address, a)
            assert await third is a  # the comm given back is handed on
            p.reuse(server.address, b)
            p.reuse(server.address, a)
            assert p.open == 2
            await p.close()

    run(main())


def test_at_the_limit_an_idle_comm_to_another_address_is_evicted(address: str) -> None:
    async def main() -> None:
        async with servers(2, address) as (s1, s2):
            p = pool(limit=1)
            first = await p.connect(s1.address)
            p.reuse(s1.address, first)
            second = await p.connect(s2.address)
            assert first.closed
            assert second.peer_address == s2.address
            assert p.open == 1
            p.reuse(s2.address, second)
            await p.close()

    run(main())


def test_closed_comms_are_dropped_not_reused(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool()
            comm = await p.connect(server.address)
            comm.abort()
            p.reuse(server.address, comm)
            assert p.open == 0
            fresh = await p.connect(server.address)
            assert fresh is not comm
            p.reuse(server.address, fresh)
            # a comm that died while idle is skipped too
            fresh.abort()
            newer = await p.connect(server.address)
            assert newer is not fresh and not newer.closed
            p.reuse(server.address, newer)
            await p.close()

    run(main())


def test_cancelled_call_aborts_its_comm(address: str) -> None:
    async def main() -> None:
        async def never(comm: Comm) -> None:
            await asyncio.Event().wait()

        server = Server(handlers={"never": never}, security=SECURITY, role="worker")
        async with server:
            await server.listen(address)
            p = pool()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.call(server.address, bare("never")), 0.05)
            assert p.open == 0  # half a conversation is never reused
            await p.close()

    run(main())


def test_close_refuses_new_connects_and_wakes_waiters(address: str) -> None:
    async def main() -> None:
        async with servers(1, address) as (server,):
            p = pool(limit=1)
            busy = await p.connect(server.address)
            waiting = asyncio.ensure_future(p.connect(server.address))
            await asyncio.sleep(0)
            await p.close()
            assert busy.closed
            with pytest.raises(CommClosedError):
                await waiting
            with pytest.raises(CommClosedError):
                await p.connect(server.address)
            p.reuse(server.address, busy)
            assert p.open == 0

    run(main())
