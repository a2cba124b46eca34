"""HTTP connections are capped and must send their headers in time."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from shoal.http.service import HttpService
from tests.conftest import run


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def app() -> web.Application:
    application = web.Application()
    application.router.add_get("/health", hello)
    return application


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except (ConnectionError, asyncio.TimeoutError):
        return False


async def get_health(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    body = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return body


def test_at_the_cap_a_new_connection_replaces_the_oldest_idle_one() -> None:
    async def main() -> None:
        service = HttpService("127.0.0.1", 0, max_connections=4, header_timeout=30)
        await service.start(app())
        conns = []
        try:
            for _ in range(6):
                conns.append(await asyncio.open_connection("127.0.0.1", service.port))
            # none has sent a request: the two oldest made room for the two newest
            assert [await closed_within(r, 5) for r, _ in conns[:2]] == [True, True]
            assert [await closed_within(r, 0.3) for r, _ in conns[2:]] == [False] * 4
            assert service.guard.open == 4 and service.guard.evicted == 2
            # the newest can still be served: a flood of idle peers keeps no request out
            reader, writer = conns[-1]
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b" 200 " in (await asyncio.wait_for(reader.readline(), 10))
        finally:
            for _, writer in conns:
                writer.close()
            await service.stop()

    run(main())


def test_at_the_cap_with_every_connection_busy_a_new_one_is_closed_at_once() -> None:
    async def main() -> None:
        service = HttpService("127.0.0.1", 0, max_connections=2, header_timeout=30)
        await service.start(app())
        conns = []
        try:
            for _ in range(2):  # two keep-alive connections that have sent a request
                reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b" 200 " in (await asyncio.wait_for(reader.readline(), 10))
                conns.append((reader, writer))
            extra = await asyncio.open_connection("127.0.0.1", service.port)
            conns.append(extra)
            assert await closed_within(extra[0], 5)
            assert service.guard.refused == 1 and service.guard.evicted == 0
        finally:
            for _, writer in conns:
                writer.close()
            await service.stop()

    run(main())


def test_slow_or_missing_headers_are_timed_out_and_a_full_request_still_works() -> None:
    async def main() -> None:
        service = HttpService("127.0.0.1", 0, max_connections=8, header_timeout=0.5)
        await service.start(app())
        try:
            idle_reader, idle = await asyncio.open_connection("127.0.0.1", service.port)
            slow_reader, slow = await asyncio.open_connection("127.0.0.1", service.port)
            slow.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
            start = time.monotonic()
            assert await closed_within(idle_reader, 10)
            assert await closed_within(slow_reader, 10)
            assert time.monotonic() - start < 5
            assert service.guard.timed_out == 2
            assert (await get_health(service.port)).endswith(b"ok")
            await asyncio.sleep(0.8)  # a finished request is not timed out afterwards
            idle.close()
            slow.close()
        finally:
            await service.stop()

    run(main())
