"""A real listening Server under attack over raw sockets, while a real client keeps working.

Each bad peer must get its connection closed with a logged reason, must not make the server
allocate anything large or unpickle anything, and must not disturb authenticated peers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import random
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.comm import Comm, ConnectionPool, Security, connect, listen, parse_host_port
from shoal.comm.addressing import parse_address
from shoal.config import CommConfig
from shoal.errors import (
    CommBrokenError,
    CommClosedError,
    CommError,
    HandshakeError,
    ShoalTimeoutError,
)
from shoal.protocol import Serialized, dumps, encode_frames, serialize
from shoal.protocol import handshake as hs
from shoal.server import Server
from tests.conftest import run, wait_for_condition
from tests.fake_rpcs import Echo

SECURITY = Security.local()
CONFIG = CommConfig(handshake_timeout=0.5, connect_timeout=5)

pytestmark = pytest.mark.integration


class FileMaker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def wire(*frames: bytes) -> bytes:
    return b"".join(bytes(b) for b in encode_frames(list(frames)))


class RawPeer:
    """A raw TCP connection to the server: bytes in, bytes out, no shoal code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.address = f"tcp://{host}:{port}"

    @classmethod
    async def open(cls, address: str) -> RawPeer:
        host, port = parse_host_port(parse_address(address)[1])
        return cls(*await asyncio.open_connection(host, port))

    async def read_frames(self) -> list[bytes]:
        (count,) = struct.unpack("<Q", await self.reader.readexactly(8))
        lengths = struct.unpack(f"<{count}Q", await self.reader.readexactly(8 * count))
        return [await self.reader.readexactly(n) for n in lengths]

    async def read_hello(self) -> hs.Hello:
        (frame,) = await self.read_frames()
        return hs.parse_hello(hs.decode(frame))

    async def authenticate(self, token: str) -> dict[str, Any]:
        """Answer the hello with ``token``; the server's answer (welcome or reject)."""
        hello = await self.read_hello()
        me = hs.Greeting(hs.PROTOCOL_VERSION, "raw", "attacker", "", os.urandom(hs.NONCE_BYTES))
        self.writer.write(wire(hs.encode(hs.make_auth(me, hello, token))))
        (frame,) = await self.read_frames()
        return hs.decode(frame)

    async def wait_closed_by_server(self, timeout: float = 5.0) -> bytes:
        """Everything the server still sent, once it has closed the connection."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            rest = b""
        self.writer.close()
        return rest


class Caller:
    """An authenticated client that keeps making rpc calls and counts the answers."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.pool = ConnectionPool(security=SECURITY, role="client", config=CONFIG)
        self.answers = 0
        self.task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            assert await self.pool.call(self.address, Echo(x=self.answers)) == self.answers
            self.answers += 1
            await asyncio.sleep(0.001)  # pacing, so the attackers get the loop too

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._loop())

    async def answered_since(self, before: int) -> None:
        await wait_for_condition(lambda: self.answers > before)

    async def stop(self) -> None:
        assert self.task is not None
        assert not self.task.done(), self.task  # it never failed
        self.task.cancel()
        await asyncio.wait([self.task])
        await self.pool.close()


def reasons_for(caplog: pytest.LogCaptureFixture, peer: RawPeer) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if peer.address in r.getMessage())


def reason_logged(caplog: pytest.LogCaptureFixture, peer: RawPeer, text: str) -> Callable[[], bool]:
    return lambda: text in reasons_for(caplog, peer)


async def attack_before_auth(server: Server, payload: bytes) -> RawPeer:
    peer = await RawPeer.open(server.address)
    await peer.read_hello()
    peer.writer.write(payload)
    assert await peer.wait_closed_by_server() == b""
    return peer


async def authenticated_peer(server: Server) -> RawPeer:
    peer = await RawPeer.open(server.address)
    assert (await peer.authenticate(SECURITY.token or ""))["op"] == "shoal-welcome"
    return peer


def make_server() -> Server:
    def echo(comm: object, x: Any) -> Any:
        return x

    return Server(handlers={"echo": echo}, security=SECURITY, role="scheduler", config=CONFIG)


def test_bad_peers_are_closed_with_a_reason_while_good_ones_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trap = tmp_path / "unpickled"
    pickle.loads(serialize(FileMaker(trap)).header)  # the trap works...
    assert trap.exists()
    trap.unlink()
    pickled = serialize(FileMaker(trap))

    random_bytes = random.Random(0).randbytes(4096)
    assert struct.unpack_from("<Q", random_bytes)[0] > 1  # announces an absurd frame count
    attacks = {
        "random bytes": (random_bytes, "frames (limit 1)"),
        # bit 63 marks a frame that goes on in the next piece: a last one cannot
        "2**63 length prefix": (struct.pack("<QQ", 1, 2**63), "claims to continue"),
        "2**63-1 length prefix": (struct.pack("<QQ", 1, 2**63 - 1), f"frame of {2**63 - 1} bytes"),
        "too many frames": (struct.pack("<QQQ", 2, 1, 1) + b"ab", "2 frames (limit 1)"),
        "msgpack with a pickle": (
            wire(*(bytes(f) for f in dumps({"op": "shoal-auth", "v": pickled}))),
            "extension type",
        ),
        "bare pickle": (wire(pickle.dumps(FileMaker(trap))), "malformed handshake"),
    }

    async def main() -> None:
        async with make_server() as server:
            await server.listen("tcp://127.0.0.1:0")
            caller = Caller(server.address)
            caller.start()
            for payload, reason in attacks.values():
                before = caller.answers
                peer = await attack_before_auth(server, payload)
                await wait_for_condition(reason_logged(caplog, peer, "rejected"))
                assert reason in reasons_for(caplog, peer)
                await caller.answered_since(before)

            # a peer that says nothing is dropped at the handshake deadline; others go on
            silent = await RawPeer.open(server.address)
            await silent.read_hello()
            before = caller.answers
            closing = asyncio.ensure_future(silent.wait_closed_by_server())
            await caller.answered_since(before)
            assert not closing.done()  # answers came while the silent peer was still there
            assert await closing == b""
            assert "did not finish the handshake within 0.5s" in reasons_for(caplog, silent)

            # a wrong token is told why, then closed
            intruder = await RawPeer.open(server.address)
            answer = await intruder.authenticate("not the token")
            assert answer == {"op": "shoal-reject", "reason": answer["reason"]}
            assert "wrong cluster token" in answer["reason"]
            assert await intruder.wait_closed_by_server() == b""
            assert "wrong cluster token" in reasons_for(caplog, intruder)

            before = caller.answers
            await caller.answered_since(before)
            await caller.stop()

    with caplog.at_level(logging.INFO):
        run(main())
    assert not trap.exists()  # nothing was ever unpickled


def test_a_port_probe_is_logged_at_info_not_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Health checks connect and hang up; a bad peer is still a warning beside them."""

    async def main() -> None:
        async with make_server() as server:
            await server.listen("tcp://127.0.0.1:0")
            probe = await RawPeer.open(server.address)
            probe.writer.close()
            await wait_for_condition(lambda: bool(reasons_for(caplog, probe)))
            bad = await attack_before_auth(server, b"\xff" * 64)
            await wait_for_condition(reason_logged(caplog, bad, "rejected"))
            caller = Caller(server.address)
            caller.start()
            await caller.answered_since(0)  # still serving
            await caller.stop()
            levels = {
                peer: {r.levelno for r in caplog.records if peer.address in r.getMessage()}
                for peer in (probe, bad)
            }
            assert levels[probe] == {logging.INFO}, levels
            assert "ended during the handshake" in reasons_for(caplog, probe)
            assert logging.WARNING in levels[bad]

    with caplog.at_level(logging.INFO, logger="shoal.comm"):
        run(main())


def test_a_huge_length_prefix_allocates_nothing_large() -> None:
    # 1 GiB is within the limits for authenticated peers, so only the handshake limits stop it
    claims = [struct.pack("<QQ", 1, 2**30), struct.pack("<QQ", 1, 2**63)]

    async def main() -> None:
        async with make_server() as server:
            await server.listen("tcp://127.0.0.1:0")
            tracemalloc.start()
            try:
                for payload in claims:
                    tracemalloc.reset_peak()
                    baseline = tracemalloc.get_traced_memory()[0]
                    await attack_before_auth(server, payload)
                    peak = tracemalloc.get_traced_memory()[1]
                    assert peak - baseline < 4 * 2**20
            finally:
                tracemalloc.stop()

    run(main())


def test_authenticated_peers_that_break_the_protocol_are_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = CONFIG.limits.max_frames
    attacks = {
        "2**63 length prefix": (struct.pack("<QQ", 1, 2**63), "claims to continue"),
        "too many frames": (struct.pack("<QQ", limit + 1, 0), f"(limit {limit})"),
        "invalid msgpack": (wire(b"\xc1"), "malformed message header"),
        "not a request": (wire(bytes(dumps([1, 2])[0])), "not a request"),
    }

    async def main() -> None:
        async with make_server() as server:
            await server.listen("tcp://127.0.0.1:0")
            caller = Caller(server.address)
            caller.start()
            for payload, reason in attacks.values():
                before = caller.answers
                peer = await authenticated_peer(server)
                peer.writer.write(payload)
                assert await peer.wait_closed_by_server() == b""
                logged = reason_logged(caplog, peer, reason)
                await wait_for_condition(logged)
                await caller.answered_since(before)
            await caller.stop()

    with caplog.at_level(logging.INFO):
        run(main())


def test_a_client_from_the_future_is_told_both_versions(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with make_server() as server:
            await server.listen("tcp://127.0.0.1:0")
            peer = await RawPeer.open(server.address)
            hello = await peer.read_hello()
            me = hs.Greeting(99, "9.9", "client", "", os.urandom(hs.NONCE_BYTES))
            peer.writer.write(wire(hs.encode(hs.make_auth(me, hello, SECURITY.token))))
            (frame,) = await peer.read_frames()
            reason = hs.decode(frame)["reason"]
            assert f"this server speaks {hs.PROTOCOL_VERSION}, the client at" in reason
            assert reason.endswith("speaks 99")
            assert await peer.wait_closed_by_server() == b""

    with caplog.at_level(logging.WARNING):
        run(main())
    assert any("speaks 99" in r.getMessage() for r in caplog.records)


def test_a_pickle_sent_after_auth_is_passed_on_opaque_never_unpickled(tmp_path: Path) -> None:
    trap = tmp_path / "unpickled"
    received: list[Any] = []

    def keep(comm: object, value: Any) -> str:
        received.append(value)
        return "kept"

    async def main() -> None:
        server = Server(handlers={"keep": keep}, security=SECURITY, role="scheduler", config=CONFIG)
        async with server:
            await server.listen("tcp://127.0.0.1:0")
            peer = await authenticated_peer(server)
            msg = {"op": "keep", "value": serialize(FileMaker(trap))}
            peer.writer.write(wire(*(bytes(f) for f in dumps(msg))))
            (reply,) = await peer.read_frames()
            assert hs.decode(reply) == {"status": "OK", "result": "kept"}
            # an unknown op with a pickle inside is refused, still without unpickling it
            msg = {"op": "nope", "value": serialize(FileMaker(trap))}
            peer.writer.write(wire(*(bytes(f) for f in dumps(msg))))
            frames = await peer.read_frames()
            assert len(frames) > 1 or b"unknown operation" in frames[0]
            peer.writer.close()

    run(main())
    assert isinstance(received[0], Serialized)
    assert not trap.exists()


def test_hanging_up_in_the_middle_of_a_message_is_a_broken_comm() -> None:
    outcomes: asyncio.Queue[BaseException] = asyncio.Queue()

    async def handler(comm: Comm) -> None:
        try:
            await comm.read()
        except CommError as exc:
            await outcomes.put(exc)

    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", handler, security=SECURITY, role="server")
        try:
            for cut, expected in [(500, CommBrokenError), (0, CommClosedError)]:
                peer = await RawPeer.open(listener.address)
                assert (await peer.authenticate(SECURITY.token or ""))["op"] == "shoal-welcome"
                peer.writer.write(wire(b"x" * 1000)[:cut])
                peer.writer.close()
                outcome = await outcomes.get()
                assert type(outcome) is expected, outcome
        finally:
            await listener.stop()

    run(main())


# -- bad servers: the client side is just as careful --------------------------------------
async def fake_server(answer: Callable[[asyncio.StreamWriter], None]) -> asyncio.Server:
    """A raw TCP server that greets each connection with ``answer`` and then stays silent."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer(writer)
        await reader.read()  # until the client hangs up
        writer.close()

    return await asyncio.start_server(on_connect, "127.0.0.1", 0)


def hello_from_the_future(writer: asyncio.StreamWriter) -> None:
    greeting = hs.Greeting(99, "9.9", "scheduler", "", os.urandom(hs.NONCE_BYTES))
    msg = hs.make_hello(greeting, auth=True)
    writer.write(wire(hs.encode({**msg, "new_field": [1, 2]})))


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (lambda w: None, ShoalTimeoutError, "timed out connecting to tcp://127.0.0.1:"),
        (
            hello_from_the_future,
            HandshakeError,
            rf"this client speaks {hs.PROTOCOL_VERSION}, the server at .* speaks 99",
        ),
        (
            lambda w: w.write(wire(*(bytes(f) for f in dumps({"op": "shoal-hello", "x": 1})))),
            HandshakeError,
            "does not speak shoal",
        ),
        (lambda w: w.write(struct.pack("<QQ", 1, 2**40)), HandshakeError, "does not speak shoal"),
        (lambda w: w.close(), CommClosedError, "closed the connection"),
    ],
    ids=["silent", "newer-protocol", "not-a-hello", "huge-frame", "hangs-up"],
)
def test_a_client_refuses_bad_servers(
    answer: Callable[[asyncio.StreamWriter], None], error: type[Exception], match: str
) -> None:
    async def main() -> None:
        server = await fake_server(answer)
        port = server.sockets[0].getsockname()[1]
        try:
            config = CommConfig(connect_timeout=0.3)
            with pytest.raises(error, match=match):
                await connect(
                    f"tcp://127.0.0.1:{port}", security=SECURITY, role="client", config=config
                )
        finally:
            server.close()

    run(main())
