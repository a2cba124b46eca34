"""Every rpc has a deadline, and every TCP connection has keepalive on both ends."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

import pytest

from shoal.comm import Comm, ConnectionPool, Security, connect, listen
from shoal.config import CommConfig, TCPKeepalive
from shoal.errors import ShoalTimeoutError
from shoal.protocol.rpc_workers import WorkerGetData
from tests.conftest import run
from tests.fake_rpcs import bare

SECURITY = Security.local()


async def silent_peer(comm: Comm) -> None:
    """Accepts, authenticates, reads requests, and never answers one."""
    while True:
        await comm.read()


def test_a_peer_that_never_answers_gives_a_timely_error_naming_peer_and_op() -> None:
    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", silent_peer, security=SECURITY, role="worker")
        pool = ConnectionPool(security=SECURITY, role="worker", config=CommConfig(call_timeout=0.5))
        try:
            start = time.monotonic()
            with pytest.raises(ShoalTimeoutError, match=r"did not answer 'get_data' within 0.5s"):
                await pool.call(listener.address, WorkerGetData(keys=("x",)))
            assert time.monotonic() - start < 5
            with pytest.raises(ShoalTimeoutError, match=re.escape("within 0.2s")) as info:
                await pool.call(listener.address, bare("ping"), reply_timeout=0.2)
            assert "127.0.0.1" in str(info.value)
            assert isinstance(info.value, TimeoutError)
            assert pool.open == 0  # a comm that timed out mid-call is never reused
        finally:
            await pool.close()
            await listener.stop()

    run(main())


def test_reply_timeout_none_waits_past_the_configured_deadline() -> None:
    async def slow_answer(comm: Comm) -> None:
        await comm.read()
        await asyncio.sleep(0.5)
        await comm.write({"status": "OK", "result": "late"})

    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", slow_answer, security=SECURITY, role="worker")
        pool = ConnectionPool(security=SECURITY, role="worker", config=CommConfig(call_timeout=0.1))
        try:
            assert await pool.call(listener.address, bare("run"), reply_timeout=None) == "late"
        finally:
            await pool.close()
            await listener.stop()

    run(main())


def _socket_of(comm: Comm) -> socket.socket:
    transport: Any = getattr(comm, "_transport")  # noqa: B009 - the TCP comm's own transport
    sock: socket.socket = transport.get_extra_info("socket")
    return sock


def _keepalive_options(sock: socket.socket) -> dict[str, int]:
    options = {"SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"):
        option = getattr(socket, name, None)
        if option is not None:
            options[name] = sock.getsockopt(socket.IPPROTO_TCP, option)
    return options


def test_both_ends_of_a_tcp_connection_have_keepalive_and_user_timeout() -> None:
    settings = TCPKeepalive(idle=7, interval=3, count=4, user_timeout=21)
    config = CommConfig(keepalive=settings)
    accepted: asyncio.Queue[Comm] = asyncio.Queue()

    async def keep(comm: Comm) -> None:
        await accepted.put(comm)
        await asyncio.sleep(30)

    async def main() -> tuple[dict[str, int], dict[str, int]]:
        listener = await listen(
            "tcp://127.0.0.1:0", keep, security=SECURITY, role="worker", config=config
        )
        try:
            client = await connect(listener.address, security=SECURITY, role="c", config=config)
            server = await accepted.get()
            try:
                return _keepalive_options(_socket_of(client)), _keepalive_options(
                    _socket_of(server)
                )
            finally:
                client.abort()
                server.abort()
        finally:
            await listener.stop()

    for options in run(main()):
        assert options["SO_KEEPALIVE"] != 0
        expected = {"TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 4}
        expected["TCP_USER_TIMEOUT"] = 21_000
        for name, value in expected.items():
            if name in options:
                assert options[name] == value, name
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert "TCP_USER_TIMEOUT" in options
