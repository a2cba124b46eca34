"""Four "hosts" in four network namespaces on one bridge: a scheduler, two workers (each
under its nanny) and a client, started with the CLI as a user types it, over TLS.

A graph with a peer-to-peer transfer completes; then one worker's link goes down, the
scheduler removes it after ``--worker-ttl`` and its results are recomputed on the other.
Root only (network namespaces). Every address is 169.254.77.x inside namespaces made here;
nothing is sent anywhere else. Namespaces are deleted and processes killed by pid after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.chaos.netns import NetLab
from tests.integration.tls_files import write_tls_files

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: creates network namespaces (ip netns)"
    ),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (the ip command)"),
]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROBE = REPO / "tests/integration/plain_probe.py"
HOSTS = ("sched", "wa", "wb", "cli")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def net() -> Iterator[NetLab]:
    """The hosts' namespaces on one bridge (tests/chaos/netns.py), deleted afterwards."""
    lab = NetLab(tag=f"sht{os.getpid() % 100000}")
    try:
        for host in HOSTS:
            lab.add_host(host)
        yield lab
    finally:
        left = lab.close()
    assert not left, f"namespaces left behind: {left}"


@dataclass
class Procs:
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, net: NetLab, host: str, *command: str, **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", net.ns(host), *command], cwd=REPO, **kw)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
            except psutil.NoSuchProcess:
                family = []
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for child in family[1:]:  # e.g. a nanny's worker, by pid
                if child.is_running():
                    child.kill()


@pytest.fixture
def procs() -> Iterator[Procs]:
    started = Procs()
    try:
        yield started
    finally:
        started.stop_all()


def listening_in(net: NetLab, host: str, *procs: subprocess.Popen[bytes]) -> set[tuple[str, int]]:
    """The ports ``procs`` (and children) listen on, seen from inside ``host``'s namespace."""
    found = subprocess.run(
        ["ip", "netns", "exec", net.ns(host), str(BIN / "python"), str(PROBE), "--listening",
         *(str(p.pid) for p in procs)],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return {(h, p) for h, p in json.loads(found.stdout)}


def wait_listening(net: NetLab, host: str, proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while port not in {p for _, p in listening_in(net, host, proc)}:
        assert proc.poll() is None, f"it exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"nothing listens on port {port} within 60s"
        time.sleep(0.2)


def test_tls_cluster_across_namespaces_survives_a_partition(
    net: NetLab, procs: Procs, tmp_path: Path
) -> None:
    files = write_tls_files(tmp_path / "tls", *net.hosts.values())
    token = tmp_path / "token"
    token.write_text("multihost-token\n")
    token.chmod(0o600)
    shoal = str(BIN / "shoal")
    scheduler = procs.start(
        net, "sched", shoal, "scheduler", "--host", net.hosts["sched"], *files.cli("scheduler"),
        "--require-encryption", "--token-file", str(token), "--worker-ttl", "3s",
        "--log-level", "warning",
    )  # fmt: skip
    wait_listening(net, "sched", scheduler, 8786)
    address = f"tls://{net.hosts['sched']}:8786"
    workers = [
        procs.start(
            net, host, shoal, "worker", address, "--host", net.hosts[host], "--name", host,
            "--nthreads", "1", *files.cli("worker"), "--require-encryption",
            "--token-file", str(token), "--log-level", "warning",
        )
        for host in ("wa", "wb")
    ]  # fmt: skip
    client = procs.start(
        net, "cli", str(BIN / "python"), str(REPO / "tests/integration/multihost_client.py"),
        address, str(files.ca), str(files.certs["client"]), str(files.keys["client"]),
        str(token), net.hosts["wa"], str(tmp_path),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 150
    while not (tmp_path / "READY").exists():
        assert client.poll() is None, f"the client exited early: {client.returncode}"
        assert time.monotonic() < deadline, "the client never got to the partition"
        time.sleep(0.1)

    # every port of every process refuses plain TCP, probed from the client's host
    ports = listening_in(net, "sched", scheduler)
    for host, proc in zip(("wa", "wb"), workers, strict=True):
        ports |= listening_in(net, host, proc)
    assert (net.hosts["sched"], 8786) in ports and (net.hosts["sched"], 8787) in ports, ports
    assert len(ports) >= 2 + 2 * 3, ports  # scheduler + dashboard; nanny, worker, /metrics
    probe = subprocess.run(
        ["ip", "netns", "exec", net.ns("cli"), str(BIN / "python"),
         str(PROBE), *(f"{h}:{p}" for h, p in ports)],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    answers = json.loads(probe.stdout)
    assert all(a in ("alert", "closed") for a in answers.values()), answers

    ip("-n", net.ns("wa"), "link", "set", "eth0", "down")  # the partition
    (tmp_path / "GO").write_text("go")
    out, _ = client.communicate(timeout=150)
    assert client.returncode == 0
    seen = json.loads(out)
    print("multihost client saw:", {k: v for k, v in seen.items() if k != "results"})

    assert seen["p2p_result"] == 200_000 * 3
    count, nbytes = seen["b_received"]
    assert count >= 1 and nbytes > 100_000  # B fetched A's list over TLS
    assert any("flight" in " ".join(r) for r in seen["x_story_on_b"]), seen["x_story_on_b"]
    assert seen["keys_on_a_before"] > 0
    assert seen["seconds_to_remove_a"] < 30
    assert seen["results"] == [i * i for i in range(60)]
    assert seen["total"] == sum(i * i for i in range(60))
    assert seen["keys_on_a_after"] == 0
