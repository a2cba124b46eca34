"""The handshake's pure functions: two endpoints joined by plain function calls."""

from __future__ import annotations

import msgpack
import pytest

from shoal.errors import HandshakeError, ProtocolError
from shoal.protocol import dumps, serialize
from shoal.protocol import handshake as hs

TOKEN = "t" * 64


def greeting(role: str, nonce_byte: int) -> hs.Greeting:
    return hs.Greeting(hs.PROTOCOL_VERSION, "0.1.0", role, f"{role}-1", bytes([nonce_byte]) * 32)


SERVER = greeting("scheduler", 1)
CLIENT = greeting("worker", 2)


def wire(msg: dict[str, object]) -> dict[str, object]:
    """What the other side decodes."""
    return hs.decode(hs.encode(msg))


def exchange(
    server_token: str | None, client_token: str | None
) -> tuple[hs.Hello, hs.Auth, dict[str, object]]:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=server_token is not None)))
    hs.check_hello_auth(hello, client_token)
    auth = hs.parse_auth(wire(hs.make_auth(CLIENT, hello, client_token)))
    hs.verify_auth(auth, SERVER, server_token)
    welcome = wire(hs.make_welcome(SERVER, auth, server_token))
    hs.check_welcome(welcome, hello, CLIENT, client_token)
    return hello, auth, welcome


def test_a_full_exchange_with_a_shared_token() -> None:
    hello, auth, welcome = exchange(TOKEN, TOKEN)
    assert hello.greeting == SERVER and hello.auth
    assert auth.greeting == CLIENT
    assert auth.proof == hs.client_proof(TOKEN, SERVER.nonce, CLIENT.nonce, "worker")
    assert welcome["proof"] == hs.server_proof(TOKEN, SERVER.nonce, CLIENT.nonce, "scheduler")


def test_a_full_exchange_without_auth_carries_no_proofs() -> None:
    _, auth, welcome = exchange(None, None)
    assert auth.proof is None and welcome["proof"] is None


def test_wrong_token_fails_on_the_server() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    auth = hs.parse_auth(wire(hs.make_auth(CLIENT, hello, "other token")))
    with pytest.raises(HandshakeError, match="wrong cluster token"):
        hs.verify_auth(auth, SERVER, TOKEN)


def test_missing_proof_fails_on_the_server() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=False)))
    auth = hs.parse_auth(wire(hs.make_auth(CLIENT, hello, None)))
    with pytest.raises(HandshakeError, match="authentication required"):
        hs.verify_auth(auth, SERVER, TOKEN)


def test_proof_is_bound_to_nonces_and_role() -> None:
    proof = hs.client_proof(TOKEN, SERVER.nonce, CLIENT.nonce, "worker")
    assert proof != hs.client_proof(TOKEN, SERVER.nonce, CLIENT.nonce, "client")
    assert proof != hs.client_proof(TOKEN, CLIENT.nonce, CLIENT.nonce, "worker")
    assert proof != hs.client_proof(TOKEN, SERVER.nonce, SERVER.nonce, "worker")
    # a client's proof cannot be replayed as the server's
    assert proof != hs.server_proof(TOKEN, SERVER.nonce, CLIENT.nonce, "worker")


def test_replaying_a_recorded_auth_against_a_new_nonce_fails() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    recorded = hs.parse_auth(wire(hs.make_auth(CLIENT, hello, TOKEN)))
    fresh_server = greeting("scheduler", 9)
    with pytest.raises(HandshakeError):
        hs.verify_auth(recorded, fresh_server, TOKEN)


def test_client_rejects_a_server_without_the_token() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    auth = hs.parse_auth(wire(hs.make_auth(CLIENT, hello, TOKEN)))
    impostor_welcome = wire(hs.make_welcome(SERVER, auth, "not the token"))
    with pytest.raises(HandshakeError, match="could not prove"):
        hs.check_welcome(impostor_welcome, hello, CLIENT, TOKEN)
    no_proof = wire(hs.make_welcome(SERVER, auth, None))
    with pytest.raises(HandshakeError, match="could not prove"):
        hs.check_welcome(no_proof, hello, CLIENT, TOKEN)


def test_auth_settings_that_cannot_meet() -> None:
    with_auth = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    without = hs.parse_hello(wire(hs.make_hello(SERVER, auth=False)))
    with pytest.raises(HandshakeError, match="requires a cluster token"):
        hs.check_hello_auth(with_auth, None)
    with pytest.raises(HandshakeError, match="without authentication"):
        hs.check_hello_auth(without, TOKEN)
    hs.check_hello_auth(with_auth, TOKEN)
    hs.check_hello_auth(without, None)


def test_reject_is_raised_with_its_reason() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    with pytest.raises(HandshakeError, match="refused the connection: go away"):
        hs.check_welcome(wire(hs.make_reject("go away")), hello, CLIENT, TOKEN)


@pytest.mark.parametrize("side", ["hello", "auth"])
def test_protocol_version_mismatch_names_both_versions(side: str) -> None:
    msg = hs.make_hello(SERVER, auth=True)
    if side == "auth":
        msg = hs.make_auth(CLIENT, hs.parse_hello(msg), TOKEN)
    msg["protocol"] = 99
    # even a future message that looks different otherwise gets the version error
    msg.pop("nonce")
    parse = hs.parse_hello if side == "hello" else hs.parse_auth
    us = "this client" if side == "hello" else "this server"
    with pytest.raises(HandshakeError, match=rf"{us} speaks {hs.PROTOCOL_VERSION}, .* speaks 99"):
        parse(wire(msg))


# -- not a handshake at all ------------------------------------------------------------------
def test_a_pickle_is_a_protocol_error_and_is_never_decoded() -> None:
    frames = dumps({"op": "shoal-auth", "value": serialize(object())})
    with pytest.raises(ProtocolError, match="extension type"):
        hs.decode(bytes(frames[0]))


@pytest.mark.parametrize(
    "frame",
    [b"\xc1", b"", msgpack.packb([1, 2]), msgpack.packb({1: 2}), b"\x81\xa2op"],
    ids=["invalid", "empty", "array", "int-keys", "truncated"],
)
def test_malformed_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        hs.decode(frame)


@pytest.mark.parametrize(
    "change",
    [
        {"op": "shoal-auth"},
        {"nonce": b"short"},
        {"nonce": "not bytes"},
        {"role": 5},
        {"name": "x" * 1000},
        {"protocol": True},
        {"auth": "yes"},
    ],
)
def test_malformed_hello_fields_are_protocol_errors(change: dict[str, object]) -> None:
    msg = {**hs.make_hello(SERVER, auth=True), **change}
    with pytest.raises(ProtocolError):
        hs.parse_hello(wire(msg))


def test_malformed_proof_is_a_protocol_error() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    msg = {**hs.make_auth(CLIENT, hello, TOKEN), "proof": 12}
    with pytest.raises(ProtocolError):
        hs.parse_auth(wire(msg))


def test_unexpected_op_is_a_protocol_error() -> None:
    hello = hs.parse_hello(wire(hs.make_hello(SERVER, auth=True)))
    with pytest.raises(ProtocolError, match="expected handshake message"):
        hs.check_welcome(wire(hs.make_hello(SERVER, auth=True)), hello, CLIENT, TOKEN)
