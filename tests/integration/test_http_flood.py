"""1,100 idle and slowloris connections on the dashboard port do not lock clients out.

The scheduler runs as its own process with the common soft limit of 1,024 open files (set
before it starts). Before the HTTP servers capped their connections and the scheduler
raised its limit, these connections took every descriptor it had, and new clients and
workers could not connect.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shoal import Client
from shoal.comm import Security
from tests.integration.conftest import free_port, stop_process, wait_for, wait_for_port

resource = pytest.importorskip("resource")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "http-flood-token"
FLOOD = 1100
#: what the scheduler's process starts with (a common default)
SCHEDULER_SOFT_LIMIT = 1024


def _inc(x: int) -> int:
    return x + 1


@contextlib.contextmanager
def scheduler_with_dashboard(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port, dashboard = free_port(), free_port()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def common_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SCHEDULER_SOFT_LIMIT, hard))

    scheduler = subprocess.Popen(
        [sys.executable, "-m", "shoal", "scheduler", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{dashboard}", "--token-file", str(token_file),
         "--log-level", "error"],
        preexec_fn=common_limit,
    )  # fmt: skip
    worker = None
    try:
        wait_for_port(port, scheduler)
        wait_for_port(dashboard, scheduler)
        worker = subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", f"tcp://127.0.0.1:{port}", "--nthreads",
             "2", "--no-nanny", "--token-file", str(token_file), "--log-level", "error"],
        )  # fmt: skip
        yield f"tcp://127.0.0.1:{port}", dashboard, scheduler.pid
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(scheduler)


def open_flood(port: int, count: int) -> list[socket.socket]:
    """``count`` non-blocking connections; every other one starts headers it never ends."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    slow = {sock.fileno(): sock for sock in socks[::2]}
    poller = select.poll()  # select() cannot watch descriptors above 1,024
    for fd in slow:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + 20
    while slow and time.monotonic() < deadline:
        for fd, _ in poller.poll(1000):
            with contextlib.suppress(OSError):
                slow[fd].send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            poller.unregister(fd)
            del slow[fd]
    return socks


def test_a_client_connects_and_computes_through_a_dashboard_flood(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 1024:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for {FLOOD} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 1024), hard))
    try:
        with scheduler_with_dashboard(tmp_path) as (address, dashboard, pid):
            socks = open_flood(dashboard, FLOOD)
            try:
                with Client(address, security=Security(token=TOKEN), timeout=30) as client:
                    wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
                    futures = client.map(_inc, range(1000))
                    assert client.gather(futures) == list(range(1, 1001))
                # the scheduler kept descriptors for comm and is below its limit
                process = psutil.Process(pid)
                limit = process.rlimit(psutil.RLIMIT_NOFILE)[0]
                assert process.num_fds() < limit - 256
                with socket.create_connection(("127.0.0.1", dashboard), timeout=10) as probe:
                    probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert b"200" in probe.recv(1024).split(b"\r\n", 1)[0]
            finally:
                for sock in socks:
                    sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
