"""The connection handshake as pure functions: build and check its msgpack messages.

The conversation (each message is one frame set of one small frame of plain msgpack)::

    server -> client   hello    {protocol, shoal, role, name, nonce, auth}
    client -> server   auth     {protocol, shoal, role, name, nonce, proof}
    server -> client   welcome  {proof}            or   reject {reason}, then close

Rules of this file:

* Plain msgpack only: any extension type (a pickle, a ``Serialized``) is a ``ProtocolError``.
  Nothing here ever unpickles; the peer is not yet known to be one of ours.
* Proofs are HMAC-SHA256 over both nonces and the sender's role, keyed by the cluster token,
  with a different prefix for each direction so one side's proof cannot be replayed as the
  other's. They are compared with ``hmac.compare_digest``.
* Authentication is mutual: a client that holds a token also checks the server's proof, so a
  server without the token cannot pose as ours.
* ``HandshakeError`` means "this peer is not one of ours" (token, version, role);
  ``ProtocolError`` means "these bytes are not a handshake at all".
* No IO, clocks or randomness: nonces and versions are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import msgpack

from shoal.errors import HandshakeError, ProtocolError

#: Bumped on any incompatible change to messages or framing. Every hello carries it.
PROTOCOL_VERSION = 1
#: Bytes of randomness each side contributes to the challenge.
NONCE_BYTES = 32

_HELLO = "shoal-hello"
_AUTH = "shoal-auth"
_WELCOME = "shoal-welcome"
_REJECT = "shoal-reject"
_CLIENT_PROOF = b"shoal-client-proof\0"
_SERVER_PROOF = b"shoal-server-proof\0"
_MAX_TEXT = 256


@dataclass(frozen=True, slots=True)
class Greeting:
    """What one side said about itself: the fields shared by hello and auth."""

    protocol: int
    shoal: str
    role: str
    name: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """The server's opening message, checked."""

    greeting: Greeting
    #: the server requires the client to prove it holds the token
    auth: bool


@dataclass(frozen=True, slots=True)
class Auth:
    """The client's answer, checked (its proof is verified separately)."""

    greeting: Greeting
    proof: bytes | None


# -- encoding ------------------------------------------------------------------------------
def encode(msg: dict[str, Any]) -> bytes:
    """One handshake message as plain msgpack."""
    return msgpack.packb(msg, use_bin_type=True)  # type: ignore[no-any-return]


def _refuse_ext(code: int, data: bytes) -> object:
    raise ProtocolError(f"msgpack extension type {code} in a handshake (no pickles before auth)")


def decode(frame: bytes | memoryview) -> dict[str, Any]:
    """A handshake message; ``ProtocolError`` for anything but a plain msgpack map."""
    try:
        msg = msgpack.unpackb(frame, ext_hook=_refuse_ext, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed handshake: {type(exc).__name__}: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"handshake message is a {type(msg).__name__}, not a map")
    return msg


# -- proofs --------------------------------------------------------------------------------
def client_proof(token: str, server_nonce: bytes, client_nonce: bytes, role: str) -> bytes:
    """What a client that holds ``token`` sends to prove it."""
    data = _CLIENT_PROOF + server_nonce + client_nonce + role.encode()
    return hmac.new(token.encode(), data, hashlib.sha256).digest()


def server_proof(token: str, server_nonce: bytes, client_nonce: bytes, role: str) -> bytes:
    """What a server that holds ``token`` sends back to prove it too."""
    data = _SERVER_PROOF + server_nonce + client_nonce + role.encode()
    return hmac.new(token.encode(), data, hashlib.sha256).digest()


def _proof_matches(expected: bytes, given: bytes | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given)


# -- building ------------------------------------------------------------------------------
def _greeting_fields(g: Greeting) -> dict[str, Any]:
    return {
        "protocol": g.protocol,
        "shoal": g.shoal,
        "role": g.role,
        "name": g.name,
        "nonce": g.nonce,
    }


def make_hello(greeting: Greeting, *, auth: bool) -> dict[str, Any]:
    """The server's opening message."""
    return {"op": _HELLO, **_greeting_fields(greeting), "auth": auth}


def make_auth(greeting: Greeting, hello: Hello, token: str | None) -> dict[str, Any]:
    """The client's answer to ``hello``: its greeting and, if it holds a token, its proof."""
    proof = None
    if token is not None:
        proof = client_proof(token, hello.greeting.nonce, greeting.nonce, greeting.role)
    return {"op": _AUTH, **_greeting_fields(greeting), "proof": proof}


def make_welcome(server: Greeting, auth: Auth, token: str | None) -> dict[str, Any]:
    """The server's acceptance, with its own proof when it holds a token."""
    proof = None
    if token is not None:
        proof = server_proof(token, server.nonce, auth.greeting.nonce, server.role)
    return {"op": _WELCOME, "proof": proof}


def make_reject(reason: str) -> dict[str, Any]:
    """The server's refusal; the connection closes right after it."""
    return {"op": _REJECT, "reason": reason[:_MAX_TEXT]}


# -- checking ------------------------------------------------------------------------------
def _field(msg: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = msg.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"handshake field {key!r} is missing or malformed")
    return value


def _text(msg: dict[str, Any], key: str) -> str:
    value: str = _field(msg, key, str)
    if len(value) > _MAX_TEXT:
        raise ProtocolError(f"handshake field {key!r} is longer than {_MAX_TEXT} characters")
    return value


def _expect_op(msg: dict[str, Any], *ops: str) -> str:
    op = msg.get("op")
    if op not in ops:
        raise ProtocolError(f"expected handshake message {' or '.join(ops)}, got op {op!r}")
    return str(op)


def _check_protocol(theirs: int, us: str, who: str) -> None:
    if theirs != PROTOCOL_VERSION:
        raise HandshakeError(
            f"protocol version mismatch: {us} speaks {PROTOCOL_VERSION}, {who} speaks {theirs}"
        )


def _parse_greeting(msg: dict[str, Any], us: str, who: str) -> Greeting:
    # the version is checked before any other field, so that a future protocol whose
    # messages look different still gets the clear "version mismatch" error
    protocol = _field(msg, "protocol", int)
    _check_protocol(protocol, us, who)
    nonce = _field(msg, "nonce", bytes)
    if len(nonce) != NONCE_BYTES:
        raise ProtocolError(f"handshake nonce of {len(nonce)} bytes (expected {NONCE_BYTES})")
    return Greeting(protocol, _text(msg, "shoal"), _text(msg, "role"), _text(msg, "name"), nonce)


def parse_hello(msg: dict[str, Any], who: str = "the server") -> Hello:
    """The server's hello, checked; ``HandshakeError`` on a protocol version mismatch."""
    _expect_op(msg, _HELLO)
    return Hello(_parse_greeting(msg, "this client", who), bool(_field(msg, "auth", bool)))


def check_hello_auth(hello: Hello, token: str | None, who: str = "the server") -> None:
    """Raise ``HandshakeError`` when the server's auth setting and ours cannot meet."""
    if hello.auth and token is None:
        raise HandshakeError(f"{who} requires a cluster token and we have none")
    if not hello.auth and token is not None:
        # a server without a token cannot prove it is ours; never fall back silently
        raise HandshakeError(f"{who} runs without authentication but we hold a cluster token")


def parse_auth(msg: dict[str, Any], who: str = "the client") -> Auth:
    """The client's answer, checked for shape and version (not yet for its proof)."""
    _expect_op(msg, _AUTH)
    greeting = _parse_greeting(msg, "this server", who)
    proof = msg.get("proof")
    if proof is not None and not isinstance(proof, bytes):
        raise ProtocolError("handshake field 'proof' is malformed")
    return Auth(greeting, proof)


def verify_auth(auth: Auth, server: Greeting, token: str | None) -> None:
    """Raise ``HandshakeError`` unless the client proved it holds ``token`` (if we have one)."""
    if token is None:
        return
    if auth.proof is None:
        raise HandshakeError("authentication required: the peer sent no token proof")
    expected = client_proof(token, server.nonce, auth.greeting.nonce, auth.greeting.role)
    if not _proof_matches(expected, auth.proof):
        raise HandshakeError("authentication failed: wrong cluster token")


def check_welcome(
    msg: dict[str, Any], hello: Hello, client: Greeting, token: str | None, who: str = "the server"
) -> None:
    """Raise unless ``msg`` accepts us and (if we hold a token) proves the server holds it."""
    if _expect_op(msg, _WELCOME, _REJECT) == _REJECT:
        raise HandshakeError(f"{who} refused the connection: {_text(msg, 'reason')}")
    if token is None:
        return
    proof = msg.get("proof")
    expected = server_proof(token, hello.greeting.nonce, client.nonce, hello.greeting.role)
    if not _proof_matches(expected, proof if isinstance(proof, bytes) else None):
        raise HandshakeError(f"{who} could not prove it holds our cluster token")
