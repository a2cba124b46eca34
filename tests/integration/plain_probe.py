"""Speak plain TCP to ports and say what came back (``python -m tests.integration.plain_probe
HOST:PORT ...`` prints one JSON object): a TLS port answers non-TLS bytes with a TLS alert
record (first byte 0x15) or by closing, never with plain text."""

from __future__ import annotations

import json
import socket
import sys

#: what a plain client would send first: an HTTP request (the dashboard), which is also
#: no valid shoal frame header and no TLS ClientHello
PLAIN_REQUEST = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
TLS_ALERT = 0x15


def probe(host: str, port: int, timeout: float = 5.0) -> str:
    """``"alert"``, ``"closed"``, ``"silent"`` or ``"plain:<first bytes>"``."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(PLAIN_REQUEST)
            data = sock.recv(4096)
        except ConnectionResetError:
            return "closed"
        except TimeoutError:
            return "silent"
    if not data:
        return "closed"
    if data[0] == TLS_ALERT:
        return "alert"
    return f"plain:{data[:40]!r}"


def refuses_plain(result: str) -> bool:
    return result in ("alert", "closed")


def main(targets: list[str]) -> None:
    results = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        results[target] = probe(host.strip("[]"), int(port))
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
