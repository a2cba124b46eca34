"""A tls:// cluster started with the CLI on loopback: it computes for a TLS client, and
every port its processes listen on refuses plain TCP (found with psutil)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import Client
from shoal.comm import Security, connect
from shoal.config import CommConfig
from shoal.errors import CommError, ShoalTimeoutError
from tests.integration.conftest import free_port, stop_process, wait_for, wait_for_port
from tests.integration.plain_probe import listening, probe, refuses_plain
from tests.integration.tls_files import TlsFiles, write_tls_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "tls-cluster-token"
PRELOAD = """
import pathlib
def shoal_setup(server):
    pathlib.Path({marker!r}).joinpath(type(server).__name__).write_text(server.address)
async def shoal_teardown(server):
    pathlib.Path({marker!r}).joinpath("teardown-" + type(server).__name__).write_text("x")
"""


def shoal(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shoal", *args])


def tls_security(files: TlsFiles, role: str) -> Security:
    return Security(
        token=TOKEN,
        tls_ca_file=str(files.ca),
        tls_cert=str(files.certs[role]),
        tls_key=str(files.keys[role]),
        require_encryption=True,
    )


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[str, TlsFiles, list[subprocess.Popen[bytes]]]]:
    files = write_tls_files(tmp_path / "tls")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    (tmp_path / "marks").mkdir()
    preload = tmp_path / "preload_marks.py"
    preload.write_text(PRELOAD.format(marker=str(tmp_path / "marks")))
    port = free_port()
    procs = [
        shoal(
            "scheduler", "--host", "127.0.0.1", "--port", str(port),
            "--dashboard-address", "127.0.0.1:0", "--token-file", str(token_file),
            "--require-encryption", *files.cli("scheduler"), "--log-level", "warning",
            "--pid-file", str(tmp_path / "scheduler.pid"), "--preload", str(preload),
        )
    ]  # fmt: skip
    address = f"tls://127.0.0.1:{port}"
    try:
        wait_for_port(port, procs[0])
        procs.append(
            shoal(
                "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                "--token-file", str(token_file), "--require-encryption", *files.cli("worker"),
                "--worker-port", f"{port + 1}:{port + 20}", "--log-level", "warning",
                "--preload", str(preload),
            )
        )  # fmt: skip
        yield address, files, procs
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def test_a_tls_cluster_computes_and_every_port_refuses_plain_tcp(
    tls_cluster: tuple[str, TlsFiles, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    address, files, procs = tls_cluster
    client = Client(address, security=tls_security(files, "client"), timeout=30)
    try:
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
        (worker_address,) = client.scheduler_info()["workers"]
        assert worker_address.startswith("tls://127.0.0.1:")
        worker_port = int(worker_address.rpartition(":")[2])
        port = int(address.rpartition(":")[2])
        assert port < worker_port <= port + 20  # from the --worker-port range
        futures = client.map(lambda x: x * 2, range(20))
        assert client.gather(futures) == [x * 2 for x in range(20)]
        assert client.submit(sum, futures).result() == 380
    finally:
        client.close()

    # pid file and preload hooks
    assert (tmp_path / "scheduler.pid").read_text().strip() == str(procs[0].pid)
    assert (tmp_path / "marks" / "Scheduler").read_text() == address
    assert (tmp_path / "marks" / "Worker").read_text() == worker_address

    ports = listening([p.pid for p in procs])
    # scheduler, its dashboard, the nanny, the worker and the worker's /metrics
    assert len(ports) >= 5, ports
    assert ("127.0.0.1", port) in ports and ("127.0.0.1", worker_port) in ports
    results = {p: probe(host, p) for host, p in ports}
    assert all(refuses_plain(r) for r in results.values()), results

    async def plain_shoal_client() -> None:
        fast = CommConfig(connect_timeout=3, handshake_timeout=3)
        with pytest.raises((CommError, ShoalTimeoutError)):
            await connect(
                address.replace("tls://", "tcp://"),
                security=Security(token=TOKEN),
                role="client",
                config=fast,
            )

    import asyncio

    asyncio.run(plain_shoal_client())

    procs[0].terminate()
    procs[0].wait(timeout=20)
    deadline = time.monotonic() + 20
    while not (tmp_path / "marks" / "teardown-Scheduler").exists():
        assert time.monotonic() < deadline, "shoal_teardown did not run"
        time.sleep(0.05)
    assert not (tmp_path / "scheduler.pid").exists()


def test_a_local_cluster_with_temporary_security_runs_over_tls() -> None:
    """Security.temporary(): the worker processes get their certificate from the nanny
    (environment), and plain tcp:// is refused."""
    from shoal import LocalCluster

    security = Security.temporary()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, security=security, dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        with Client(cluster, set_as_default=False) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2 and all(w.startswith("tls://") for w in workers)
            assert client.submit(sum, [1, 2, 3]).result() == 6
        with pytest.raises(ValueError, match="requires encryption"):
            Client(cluster.scheduler_address.replace("tls://", "tcp://"), security=security)
