"""Real processes over loopback: a scheduler and workers started through the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal.comm import Security
from tests.conftest import free_port, wait_until


@dataclass
class CliCluster:
    address: str
    security: Security
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    token_file: Path

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", self.address, "--no-nanny",
             "--token-file", str(self.token_file), "--log-level", "warning", *args],
        )  # fmt: skip
        self.workers.append(proc)
        return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` politely, then for good."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def cli_scheduler(tmp_path: Path, token: str = "integration-test-token") -> Iterator[CliCluster]:
    """``shoal scheduler`` on a free port with a token file; every process it and its
    workers started is stopped on exit."""
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    port = free_port()
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "shoal", "scheduler", "--port", str(port), "--no-dashboard",
         "--token-file", str(token_file), "--log-level", "warning"],
    )  # fmt: skip
    cluster = CliCluster(
        address=f"tcp://127.0.0.1:{port}",
        security=Security(token=token),
        scheduler=scheduler,
        workers=[],
        token_file=token_file,
    )
    try:
        wait_for_port(port, scheduler)
        yield cluster
    finally:
        for proc in cluster.workers:
            stop_process(proc)
        stop_process(scheduler)


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[CliCluster]:
    """``shoal scheduler`` and two ``shoal worker --nthreads 1`` processes."""
    with cli_scheduler(tmp_path) as cluster:
        for _ in range(2):
            cluster.start_worker("--nthreads", "1")
        yield cluster


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"scheduler did not listen on {port} within {timeout}s")


#: the integration tests' name for the shared poll-until-true helper
wait_for = wait_until
