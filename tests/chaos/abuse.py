"""Hostile peers for the protocol-abuse scenario: loopback only, bounded in count and time.

Rules of this file:

* Every connection goes to a port of the cluster under test on 127.0.0.1, carries no
  credentials, and is closed by the time its function returns (idle ones: by ``close``).
* The pickle canary creates a file if anyone unpickles it: its existence is the proof
  that untrusted bytes were unpickled.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import socket
import struct
import threading
import time
from typing import Any

U64 = struct.Struct("<Q")


class Canary:
    """Unpickling this opens ``path`` for writing, which creates it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def canary_payloads(path: str) -> list[bytes]:
    """The canary raw, as a shoal frame set, and in a frame of a two-frame set."""
    blob = pickle.dumps(Canary(path), protocol=5)
    framed = U64.pack(1) + U64.pack(len(blob)) + blob
    two = U64.pack(2) + U64.pack(3) + U64.pack(len(blob)) + b"\x93\x00\x00" + blob
    return [blob, framed, two]


def length_lies() -> list[bytes]:
    """Headers that promise what never comes, or far more than any limit."""
    return [
        U64.pack(1) + U64.pack(2**62),
        U64.pack(2**40) + U64.pack(8),
        U64.pack(1) + U64.pack(1000) + b"x" * 10,
        U64.pack(0),
        U64.pack(3) + U64.pack(2**63) + U64.pack(2**63) + U64.pack(2**63),
    ]


def http_payloads(path: str) -> list[bytes]:
    blob = pickle.dumps(Canary(path))
    return [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(blob) + blob,
        b"POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/python-pickle\r\n"
        b"Content-Length: %d\r\n\r\n" % len(blob) + blob,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",
    ]


def send_and_close(port: int, payload: bytes, linger: float = 0.2) -> None:
    """Connect, send ``payload``, read briefly, close. Refusals are fine."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=2) as s,
    ):
        s.sendall(payload)
        s.settimeout(linger)
        with contextlib.suppress(OSError):
            s.recv(65536)


def random_bytes(port: int, rng: random.Random, count: int, stop: threading.Event) -> int:
    """Up to ``count`` connections of random bytes; how many were sent."""
    sent = 0
    while sent < count and not stop.is_set():
        send_and_close(port, rng.randbytes(rng.randint(1, 65536)), linger=0.05)
        sent += 1
    return sent


def slowloris(
    port: int, payload: bytes, connections: int, seconds: float, stop: threading.Event
) -> int:
    """``connections`` peers each dribbling ``payload`` a byte at a time for ``seconds``
    (or until ``stop``); how many the server closed on them before the end."""
    socks = []
    for _ in range(connections):
        if stop.is_set():
            break
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=1))
    closed = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and socks and not stop.is_set():
        for s in list(socks):
            try:
                s.send(payload[i % len(payload) : i % len(payload) + 1])
            except OSError:
                closed += 1
                socks.remove(s)
                s.close()
        i += 1
        time.sleep(0.5)
    for s in socks:
        s.close()
    return closed


class IdleConnections:
    """``count`` connections to ``port`` that say nothing; ``opened`` is how many the
    server accepted into its backlog within the time given."""

    def __init__(self, port: int, count: int, seconds: float = 30) -> None:
        self.socks: list[socket.socket] = []
        deadline = time.monotonic() + seconds
        failures = 0
        while len(self.socks) < count and time.monotonic() < deadline and failures < 20:
            try:
                self.socks.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except OSError:
                failures += 1
        self.opened = len(self.socks)

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks.clear()


def canary_exists(path: str) -> bool:
    return os.path.exists(path)
