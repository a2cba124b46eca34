"""One conformance suite, run over every transport: what any Comm must do."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pickle
import secrets
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme

from shoal.comm import Comm, Listener, Security, connect, listen
from shoal.config import CommConfig
from shoal.errors import CommBrokenError, CommClosedError, CommError, HandshakeError
from shoal.protocol import FrameLimits, Serialized, deserialize, serialize
from tests.comm import helpers
from tests.conftest import run, wait_for_condition


def _tls_material() -> dict[str, str]:
    """A throw-away CA and one certificate without a role (it may claim any)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    return {
        "tls_ca_file": ca.cert_pem.bytes().decode(),
        "tls_cert": b"".join(p.bytes() for p in cert.cert_chain_pems).decode(),
        "tls_key": cert.private_key_pem.bytes().decode(),
    }


# TLS material is used by tls:// only, so one Security serves every transport
SECURITY = Security(token=secrets.token_hex(32), **_tls_material())  # type: ignore[arg-type]


def with_token(token: str | None) -> Security:
    """SECURITY (its TLS material too) with another token, or none."""
    return dataclasses.replace(SECURITY, token=token)


FAST = CommConfig(connect_timeout=5, handshake_timeout=5)


@pytest.fixture(
    params=["tcp://127.0.0.1:0", "tls://127.0.0.1:0", "inproc://"], ids=["tcp", "tls", "inproc"]
)
def address(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def comm_pair(
    address: str,
    *,
    server_security: Security = SECURITY,
    client_security: Security = SECURITY,
    config: CommConfig = FAST,
) -> contextlib.AbstractAsyncContextManager[tuple[Comm, Comm, Listener]]:
    """(client end, server end, listener), all closed afterwards."""
    return helpers.comm_pair(
        address, server_security=server_security, client_security=client_security, config=config
    )


class FileMaker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


# -- messages ------------------------------------------------------------------------------
MESSAGES = [
    {"op": "hello", "x": 1},
    {"op": "nested", "a": {"b": [1, 2, {"c": None}]}, "key": ("x", 1)},
    {"op": "bytes", "data": b"\x00" * 1000, "text": "héllo ✓"},
    [1, 2.5, True, None, -(2**63), 2**64 - 1],
    "just a string",
]


def as_tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


def test_roundtrip_both_ways(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            for msg in MESSAGES:
                await client.write(msg)
                assert await server.read() == as_tuples(msg)
                await server.write(msg)
                assert await client.read() == as_tuples(msg)

    run(main())


def test_peer_info_and_addresses(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, listener):
            assert client.peer_info["role"] == "server"
            assert client.peer_info["name"] == "srv"
            assert server.peer_info["role"] == "client"
            assert server.peer_info["name"] == "cli"
            assert client.peer_address == listener.address
            assert server.peer_address == client.local_address
            assert client.local_address.startswith(address.split("://")[0] + "://")
            assert not client.closed and not server.closed

    run(main())


def test_write_returns_bytes_written(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            n = await client.write({"op": "x", "data": b"a" * 10_000})
            assert 10_000 < n < 10_100
            await server.read()

    run(main())


def test_ordering_many_messages_both_ways(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):

            async def pump(comm: Comm) -> None:
                for i in range(3000):
                    await comm.write({"i": i})

            async def drain(comm: Comm) -> list[int]:
                return [(await comm.read())["i"] for _ in range(3000)]

            _, _, got_server, got_client = await asyncio.gather(
                pump(client), pump(server), drain(server), drain(client)
            )
            assert got_server == list(range(3000))
            assert got_client == list(range(3000))

    run(main())


def test_concurrent_writers_never_interleave(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            payloads = {i: bytes([i]) * (3_000_000 if i % 2 else 10) for i in range(8)}
            await asyncio.gather(*(client.write({"i": i, "data": p}) for i, p in payloads.items()))
            got = [await server.read() for _ in payloads]
            assert sorted(m["i"] for m in got) == list(payloads)
            for msg in got:
                assert msg["data"] == payloads[msg["i"]]

    run(main())


def test_large_numpy_array_in_serialized(address: str) -> None:
    array = np.random.default_rng(0).integers(0, 2**62, size=100_000_000 // 8, dtype="i8")

    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            await client.write({"op": "put", "data": serialize(array)})
            msg = await server.read()
            assert isinstance(msg["data"], Serialized)  # arrives opaque: never unpickled
            assert msg["data"].nbytes >= array.nbytes
            received = deserialize(msg["data"])
            assert received.dtype == array.dtype
            assert np.array_equal(received, array)

    run(main(), timeout=100)


def test_large_frame_server_to_client(address: str) -> None:
    data = np.arange(20_000_000, dtype="u1").tobytes()

    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            await server.write({"data": serialize(data), "raw": data[:5_000_000]})
            msg = await client.read()
            assert deserialize(msg["data"]) == data
            assert msg["raw"] == data[:5_000_000]

    run(main())


def test_serialized_values_are_never_unpickled(address: str, tmp_path: Path) -> None:
    trap = tmp_path / "unpickled"
    payload = serialize(FileMaker(trap))
    pickle.loads(payload.header)  # the trap works...
    assert trap.exists()
    trap.unlink()

    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            await client.write({"op": "x", "value": payload})
            msg = await server.read()
            assert isinstance(msg["value"], Serialized)

    run(main())
    assert not trap.exists()  # ...and the comm never sprang it


# -- closing -------------------------------------------------------------------------------
@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_delivers_what_was_written_then_closed_error(address: str, closer: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            a, b = (client, server) if closer == "client" else (server, client)
            for i in range(3):
                await a.write({"i": i})
            await a.close()
            assert a.closed
            assert [(await b.read())["i"] for _ in range(3)] == [0, 1, 2]
            with pytest.raises(CommClosedError):
                await b.read()
            assert b.closed
            with pytest.raises(CommClosedError):
                await b.write({"too": "late"})

    run(main())


@pytest.mark.parametrize("closer", ["client", "server"])
def test_waiting_reader_wakes_when_peer_closes(address: str, closer: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            a, b = (client, server) if closer == "client" else (server, client)
            pending = asyncio.ensure_future(b.read())
            await asyncio.sleep(0)
            await a.close()
            with pytest.raises(CommClosedError):
                await pending

    run(main())


def test_own_close_wakes_own_reader_and_refuses_io(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, _, _):
            pending = asyncio.ensure_future(client.read())
            await asyncio.sleep(0)
            await client.close()
            with pytest.raises(CommClosedError):
                await pending
            with pytest.raises(CommClosedError):
                await client.read()
            with pytest.raises(CommClosedError):
                await client.write({"op": "x"})
            await client.close()  # idempotent
            client.abort()

    run(main())


def test_abort_ends_the_peer(address: str) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            client.abort()
            assert client.closed
            with pytest.raises(CommError):
                await server.read()
            await wait_for_condition(lambda: server.closed)
            client.abort()  # idempotent

    run(main())


# -- broken peers --------------------------------------------------------------------------
def test_invalid_message_breaks_only_that_comm(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with comm_pair(address) as (client, server, _):
            await client.write_frames([b"\xc1"])  # 0xc1 is never valid msgpack
            with pytest.raises(CommBrokenError, match="invalid message"):
                await server.read()
            assert server.closed
            with pytest.raises(CommError):
                await client.read()
            # the listener still serves others
            async with comm_pair(address) as (c2, s2, _):
                await c2.write("still fine")
                assert await s2.read() == "still fine"

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("closing connection from" in r.getMessage() for r in caplog.records)


def test_frame_set_over_the_limits_breaks_the_comm(address: str) -> None:
    config = CommConfig(limits=FrameLimits(max_frames=2, max_frame_bytes=1000))

    async def main() -> None:
        async with comm_pair(address, config=config) as (client, server, _):
            await client.write_frames([b"\x01", b"x"])  # within the limits, fine
            assert await server.read() == 1
            await client.write_frames([b"\x01", b"x", b"y"])
            with pytest.raises(CommBrokenError, match="3 frames"):
                await server.read()

    run(main())


def test_frame_over_the_size_limit_travels_in_pieces_within_the_frame_count(
    address: str,
) -> None:
    config = CommConfig(limits=FrameLimits(max_frames=4, max_frame_bytes=1000))

    async def main() -> None:
        async with comm_pair(address, config=config) as (client, server, _):
            await client.write({"data": b"x" * 5000})  # 5 pieces + the header: over 4 frames
            with pytest.raises(CommBrokenError, match=r"\(limit 4\)"):
                await server.read()

    run(main())


# -- handshake -----------------------------------------------------------------------------
def test_wrong_token_is_refused(address: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        with pytest.raises(HandshakeError, match="wrong cluster token"):
            async with comm_pair(address, client_security=with_token(secrets.token_hex(32))):
                pass

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("wrong cluster token" in r.getMessage() for r in caplog.records)


def test_client_without_token_is_refused(address: str) -> None:
    async def main() -> None:
        with pytest.raises(HandshakeError, match="requires a cluster token"):
            async with comm_pair(address, client_security=with_token(None)):
                pass

    run(main())


def test_server_without_auth_is_refused_by_client_with_token(address: str) -> None:
    async def main() -> None:
        with pytest.raises(HandshakeError, match="without authentication"):
            async with comm_pair(address, server_security=with_token(None)):
                pass

    run(main())


def test_no_auth_works_when_both_opt_out_and_warns_loudly(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    no_auth = with_token(None)

    async def main() -> None:
        async with comm_pair(address, server_security=no_auth, client_security=no_auth) as (
            client,
            server,
            _,
        ):
            await client.write("hi")
            assert await server.read() == "hi"

    with caplog.at_level(logging.WARNING, logger="shoal.comm"):
        run(main())
    assert any("WITHOUT AUTHENTICATION" in r.getMessage() for r in caplog.records)


def free_tcp_address(scheme: str = "tcp") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}"


def test_connect_to_nothing_names_the_address(address: str) -> None:
    scheme = address.split("://")[0]
    target = free_tcp_address(scheme) if scheme != "inproc" else "inproc://nobody/here"

    async def main() -> None:
        with pytest.raises(CommBrokenError, match=target):
            await connect(target, security=SECURITY, role="client")

    run(main())


def test_stopped_listener_refuses_new_connections(address: str) -> None:
    async def main() -> None:
        async def forever(comm: Comm) -> None:
            await comm.read()

        listener = await listen(address, forever, security=SECURITY, role="server")
        await listener.stop()
        with pytest.raises(CommBrokenError):
            await connect(listener.address, security=SECURITY, role="client")

    run(main())


def test_handler_errors_are_logged_and_the_listener_goes_on(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async def handler(comm: Comm) -> None:
            msg = await comm.read()
            if msg == "boom":
                raise RuntimeError("handler exploded")
            await comm.write(("echo", msg))

        listener = await listen(address, handler, security=SECURITY, role="server")
        try:
            first = await connect(listener.address, security=SECURITY, role="client")
            await first.write("boom")
            with pytest.raises(CommError):
                await first.read()
            second = await connect(listener.address, security=SECURITY, role="client")
            await second.write("hi")
            assert await second.read() == ("echo", "hi")
            await second.close()
        finally:
            await listener.stop()

    with caplog.at_level(logging.ERROR, logger="shoal.comm"):
        run(main())
    assert any("handler exploded" in (r.exc_text or "") for r in caplog.records)
