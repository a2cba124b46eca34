"""Speak plain TCP to ports and say what came back (``python plain_probe.py HOST:PORT ...``
prints one JSON object): a TLS port answers non-TLS bytes with a TLS alert record (first
byte 0x15) or by closing, never with plain text.

``python plain_probe.py --listening PID ...`` prints the ``[host, port]`` pairs those
processes and their children listen on. Run it inside their network namespace: psutil
reads the socket tables of its own namespace."""

from __future__ import annotations

import json
import socket
import sys

import psutil

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


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """Every TCP port the processes (and their children) listen on."""
    found: set[tuple[str, int]] = set()
    for pid in pids:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def main(targets: list[str]) -> None:
    if targets[:1] == ["--listening"]:
        print(json.dumps(sorted(listening([int(pid) for pid in targets[1:]]))))
        return
    results = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        results[target] = probe(host.strip("[]"), int(port))
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
