"""SSHCluster against a real OpenSSH server started for the test on 127.0.0.1.

The fixture makes a throw-away host key and a client key (asyncssh), writes an sshd
config into tmp_path (its own AuthorizedKeysFile, no PAM, no passwords) and runs
``/usr/sbin/sshd -D`` on a free loopback port; it kills that sshd by pid at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

asyncssh = pytest.importorskip("asyncssh")

from shoal import Client  # noqa: E402
from shoal.deploy import SSHCluster  # noqa: E402
from tests.conftest import free_port  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    connect_options: dict[str, Any]


def write_sshd_config(tmp: Path, port: int) -> Path:
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\n"
    )
    return config


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd must switch to the logged-in user")
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} missing (apt-get install openssh-server)")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(tmp_path / "host_key"))
    os.chmod(tmp_path / "host_key", 0o600)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(tmp_path / "client_key"))
    (tmp_path / "authorized_keys").write_bytes(client_key.export_public_key())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_bytes(f"[127.0.0.1]:{port} ".encode() + host_key.export_public_key())
    config = write_sshd_config(tmp_path, port)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)])
    try:
        wait_for_listen(port, proc)
        yield SshServer(
            port,
            {
                "port": port,
                "username": "root",
                "client_keys": [str(tmp_path / "client_key")],
                "known_hosts": str(known_hosts),
            },
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_listen(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port} within {timeout}s")


def ledgered(key: str, ledger: str) -> str:
    with open(ledger, "a") as f:
        f.write(key + "\n")
    return key * 10


def add(*parts: str) -> int:
    return sum(len(p) for p in parts)


def shoal_processes_under(sshd_pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(sshd_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "shoal" in " ".join(_cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


#: remote workers start in the login directory: point them at this checkout, so the
#: functions of this module (``tests.integration...``) import there, as a user's would
REMOTE_PYTHON = f"env PYTHONPATH={Path(__file__).resolve().parents[2]} {sys.executable}"


def test_ssh_cluster_runs_a_graph_and_scales(sshd: SshServer, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with SSHCluster(
        ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        connect_options=sshd.connect_options,
        # per worker host: the first gets one thread, the second two
        worker_options=[{"nthreads": 1, "log_level": "warning"}, {"nthreads": 2}],
        scheduler_options={"log_level": "info"},
        remote_python=REMOTE_PYTHON,
    ) as cluster:
        # TLS by default: a per-cluster CA and certificates made in memory
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        assert cluster.dashboard_link is not None
        assert cluster.dashboard_link.startswith("https://127.0.0.1:")
        sshd_pid = int((tmp_path / "sshd.pid").read_text())
        token = cluster.security.token
        assert token is not None
        for proc in shoal_processes_under(sshd_pid):  # secrets came over stdin, not argv
            cmdline = " ".join(_cmdline(proc))
            assert token not in cmdline and "PRIVATE KEY" not in cmdline, cmdline
        with Client(cluster) as client:
            info = client.scheduler_info()["workers"]
            assert sorted(w["nthreads"] for w in info.values()) == [1, 2]
            assert all(w["nanny"] for w in info.values()), "workers run under a nanny"
            leaves = [client.submit(ledgered, f"leaf-{i}", str(ledger), key=f"leaf-{i}")
                      for i in range(8)]  # fmt: skip
            total = client.submit(add, *leaves, key="total")
            assert total.result(timeout=60) == 8 * 6 * 10

            cluster.scale(4)  # round-robin over the two worker hosts
            cluster.wait_for_workers(4, timeout=60)
            cluster.scale(1)
            assert len(cluster.jobs) == 1
            deadline = time.monotonic() + 30
            while len(client.scheduler_info()["workers"]) != 1:
                assert time.monotonic() < deadline, "scale(1) left more than one worker"
                time.sleep(0.1)
            assert client.gather(leaves) == [f"leaf-{i}" * 10 for i in range(8)]
            assert sorted(ledger.read_text().split()) == sorted(f"leaf-{i}" for i in range(8))
        logs = cluster.get_logs()
        assert "scheduler at tls://127.0.0.1:" in logs["Scheduler"]
        assert shoal_processes_under(sshd_pid), "the remote shoal processes run under sshd"
    deadline = time.monotonic() + 30
    while shoal_processes_under(sshd_pid):
        assert time.monotonic() < deadline, "remote shoal processes outlived close()"
        time.sleep(0.1)


def test_ssh_cluster_names_the_host_it_cannot_reach(sshd: SshServer) -> None:
    bad = {**sshd.connect_options, "port": free_port()}
    with pytest.raises(RuntimeError, match=r"cannot connect to 127\.0\.0\.1 over ssh"):
        SSHCluster(["127.0.0.1", "127.0.0.1"], connect_options=bad)


def test_ssh_cluster_refuses_mismatched_options() -> None:
    with pytest.raises(ValueError, match="worker_options has 1 entries for 2 hosts"):
        SSHCluster(["a", "b", "c"], worker_options=[{}])
    with pytest.raises(ValueError, match="at least one worker host"):
        SSHCluster(["a"])


def test_remote_python_must_exist(sshd: SshServer) -> None:
    missing = shutil.which("python-that-does-not-exist") or "/nonexistent/python"
    with pytest.raises(RuntimeError, match="exited with"):
        SSHCluster(
            ["127.0.0.1", "127.0.0.1"], connect_options=sshd.connect_options,
            remote_python=missing,
        )  # fmt: skip


def slow_ledgered(key: str, ledger: str) -> str:
    time.sleep(0.5)
    return ledgered(key, ledger)


def test_ssh_cluster_adapts_up_and_down_without_recomputing(
    sshd: SshServer, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    with SSHCluster(
        ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        connect_options=sshd.connect_options,
        worker_options={"nthreads": 1},
        remote_python=REMOTE_PYTHON,
        n_workers=1,
    ) as cluster:
        adaptive = cluster.adapt(
            minimum=1, maximum=2, target_duration="1s", wait_count=2, interval="0.5s"
        )
        with Client(cluster) as client:
            keys = [f"slow-{i}" for i in range(12)]
            futures = [client.submit(slow_ledgered, k, str(ledger), key=k) for k in keys]
            deadline = time.monotonic() + 60
            while len(cluster.jobs) < 2:
                assert time.monotonic() < deadline, "adapt did not add a worker"
                time.sleep(0.1)
            assert client.gather(futures) == [k * 10 for k in keys]
            deadline = time.monotonic() + 60
            while len(cluster.jobs) > 1 or len(client.scheduler_info()["workers"]) > 1:
                assert time.monotonic() < deadline, "adapt did not retire back to one worker"
                time.sleep(0.1)
            assert client.gather(futures) == [k * 10 for k in keys]
            assert sorted(ledger.read_text().split()) == sorted(keys), "a key was recomputed"
        adaptive.stop()
