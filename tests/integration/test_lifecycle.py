"""Worker and nanny lifecycle over real processes: exit codes, freezes, scheduler restarts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import Client, WorkerPlugin
from shoal.comm import Security
from shoal.errors import CancelledError, KilledWorker
from tests.integration.conftest import free_port, stop_process, wait_for, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "lifecycle-test-token"


class Cluster:
    """``shoal scheduler`` on a fixed port and one ``shoal worker --nworkers N`` (nannies)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.token_file = tmp_path / "token"
        self.token_file.write_text(TOKEN + "\n")
        os.chmod(self.token_file, 0o600)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.seen_pids: set[int] = set()
        self.scheduler: subprocess.Popen[bytes] | None = None

    def start_scheduler(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "scheduler", "--port", str(self.port),
             "--no-dashboard", "--token-file", str(self.token_file), "--log-level", "warning",
             *args],
        )  # fmt: skip
        self.procs.append(proc)
        self.scheduler = proc
        wait_for_port(self.port, proc)
        return proc

    def start_workers(self, n: int, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", self.address, "--nworkers", str(n),
             "--token-file", str(self.token_file), "--log-level", "warning", *args],
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def client(self, n_workers: int) -> Client:
        client = Client(self.address, security=Security(token=TOKEN), set_as_default=False)
        wait_for(lambda: len(client.scheduler_info()["workers"]) == n_workers, timeout=60)
        self.note(client)
        return client

    def note(self, client: Client) -> dict[str, Any]:
        workers: dict[str, Any] = client.scheduler_info()["workers"]
        self.seen_pids.update(int(w["pid"]) for w in workers.values())
        return workers

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen_pids.update(c.pid for c in psutil.Process(proc.pid).children(True))
        for proc in reversed(self.procs):
            stop_process(proc)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
    # no orphans: every worker process seen is gone with its nanny
    wait_for(lambda: not any(alive(pid) for pid in c.seen_pids), timeout=30)


# -- task functions (run in worker processes) -------------------------------------------------
def exit_zero() -> None:
    os._exit(0)


def inc(x: int) -> int:
    return x + 1


def logged(ledger: str, key: str, *inputs: int) -> int:
    """Append ``key`` to this process's ledger file, return a value derived from inputs."""
    with open(os.path.join(ledger, str(os.getpid())), "a") as f:
        f.write(key + "\n")
    time.sleep(0.002)
    return sum(inputs) + len(key)


def slow_inc(x: int) -> int:
    time.sleep(0.05)
    return x + 1


def executions(ledger: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in ledger.iterdir():
        counts.update(line for line in path.read_text().splitlines() if line)
    return counts


# -- tests -------------------------------------------------------------------------------------
def test_task_calling_os_exit_0_ends_as_killed_worker_and_cluster_keeps_working(
    cluster: Cluster,
) -> None:
    cluster.start_scheduler()
    nannies = cluster.start_workers(2, "--nthreads", "1")
    with cluster.client(2) as client:
        bad = client.submit(exit_zero, key="exit-zero")
        with pytest.raises(KilledWorker) as info:
            bad.result(timeout=120)
        assert info.value.key == "exit-zero"
        assert info.value.reason == "exit code 0 without being asked to close"
        wait_for(lambda: len(cluster.note(client)) == 2, timeout=60)
        assert client.gather(client.map(inc, range(100))) == list(range(1, 101))
        assert nannies.poll() is None  # no nanny closed


def test_frozen_worker_past_ttl_rejoins_as_a_new_incarnation_and_keeps_its_nanny_slot(
    cluster: Cluster,
) -> None:
    cluster.start_scheduler("--worker-ttl", "2s")
    cluster.start_workers(2, "--nthreads", "1")
    with cluster.client(2) as client:
        before = cluster.note(client)
        victim, info = next(iter(before.items()))
        pid = int(info["pid"])
        futures = client.map(slow_inc, range(200))
        wait_for(lambda: client.scheduler_info()["tasks"].get("memory", 0) >= 20, timeout=60)
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: victim not in cluster.note(client), timeout=30)  # removed
        finally:
            os.kill(pid, signal.SIGCONT)
        assert client.gather(futures) == list(range(1, 201))  # recomputed where needed

        def rejoined() -> bool:
            workers = cluster.note(client)
            return victim in workers and int(workers[victim]["pid"]) == pid

        wait_for(rejoined, timeout=60)  # the same process, registered again: slot kept
        assert alive(pid)
        assert client.gather(client.map(inc, range(50))) == list(range(1, 51))


def build_graph(client: Client, ledger: str, n: int = 2000) -> Any:
    """``n`` leaves, ``n`` pairs of leaves (transfers between workers), a tree of sums:
    about ``2n + n/10`` tasks. Every key is executed through ``logged``."""
    leaves = [client.submit(logged, ledger, f"leaf-{i}", i, key=f"leaf-{i}") for i in range(n)]
    mids = [
        client.submit(logged, ledger, f"mid-{i}", leaves[i], leaves[(i * 7 + 1) % n],
                      key=f"mid-{i}")
        for i in range(n)
    ]  # fmt: skip
    level, depth = mids, 0
    while len(level) > 1:
        level = [
            client.submit(logged, ledger, f"sum-{depth}-{j}", *level[j : j + 20],
                          key=f"sum-{depth}-{j}")
            for j in range(0, len(level), 20)
        ]  # fmt: skip
        depth += 1
    return level[0]


def expected_total(n: int = 2000) -> int:
    leaves = [i + len(f"leaf-{i}") for i in range(n)]
    mids = [leaves[i] + leaves[(i * 7 + 1) % n] + len(f"mid-{i}") for i in range(n)]
    level, depth = mids, 0
    while len(level) > 1:
        level = [sum(level[j : j + 20]) + len(f"sum-{depth}-{j}") for j in range(0, len(level), 20)]
        depth += 1
    return level[0]


@pytest.mark.parametrize("outage", [2.0, 20.0])
def test_compute_survives_a_scheduler_restart_without_recomputing_held_keys(
    cluster: Cluster, tmp_path: Path, outage: float
) -> None:
    """SIGKILL the scheduler half way through a ~4,100-task graph, start a new one on the
    same port after ``outage`` seconds: workers rejoin and report what they hold, the
    client reconnects and declares its keys again, and the result is right; the ledger
    shows that no key was executed twice."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    cluster.start_scheduler()
    nannies = cluster.start_workers(3, "--nthreads", "2", "--death-timeout", "60s")
    with cluster.client(3) as client:
        pids_before = {int(w["pid"]) for w in cluster.note(client).values()}
        total = build_graph(client, str(ledger))
        wait_for(lambda: sum(1 for _ in executions(ledger).elements()) >= 2000, timeout=120)
        assert cluster.scheduler is not None
        cluster.scheduler.kill()
        cluster.scheduler.wait()
        done_at_kill = sum(executions(ledger).values())
        time.sleep(outage)
        cluster.start_scheduler()
        assert total.result(timeout=180) == expected_total()
        info = client.scheduler_info()
        assert {int(w["pid"]) for w in info["workers"].values()} == pids_before
        assert info["reconnects"] == {"workers": 3, "clients": 1}
    counts = executions(ledger)
    assert done_at_kill < 4100 and sum(counts.values()) == len(counts)  # each key once
    assert max(counts.values()) == 1, counts.most_common(3)
    assert nannies.poll() is None


def test_workers_and_client_give_up_when_the_scheduler_never_comes_back(
    cluster: Cluster,
) -> None:
    cluster.start_scheduler()
    nannies = cluster.start_workers(2, "--death-timeout", "3s")
    client = Client(
        cluster.address, security=Security(token=TOKEN), set_as_default=False,
        reconnect_timeout=4,
    )  # fmt: skip
    with client:
        wait_for(lambda: len(cluster.note(client)) == 2, timeout=60)
        assert client.submit(inc, 1).result(timeout=60) == 2
        pending = client.submit(time.sleep, 8, key="never-done")
        assert cluster.scheduler is not None
        cluster.scheduler.kill()
        cluster.scheduler.wait()
        start = time.monotonic()
        with pytest.raises(CancelledError, match=r"could not reconnect within 4\.0s"):
            pending.result(timeout=60)
        assert time.monotonic() - start >= 3.5  # it blocked across the outage first
        code = nannies.wait(timeout=60)
        assert code != 0  # the workers exited non-zero after death_timeout; nannies too
        assert time.monotonic() - start >= 2.5


def test_a_worker_the_scheduler_refuses_is_not_restarted_for_ever(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A wrong token is refused at the handshake; restarting cannot help, so the worker
    exits with REFUSED_EXIT_CODE, its nanny closes at once, and the error says why."""
    cluster.start_scheduler()
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-cluster-token\n")
    os.chmod(wrong, 0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "worker", cluster.address, "--token-file", str(wrong),
         "--log-level", "info"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cluster.procs.append(proc)  # type: ignore[arg-type]
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "wrong cluster token" in stderr
    assert stderr.count("started worker pid") == 1, stderr  # started once, never again
    assert "restarting cannot help" in stderr


class SetupLedger(WorkerPlugin):
    """Leaves a file named after the worker's pid each time it is set up."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def setup(self, worker: Any) -> None:
        Path(self.folder, f"{os.getpid()}-{time.monotonic_ns()}").touch()


def test_worker_plugins_survive_a_scheduler_restart(cluster: Cluster, tmp_path: Path) -> None:
    """The restarted scheduler learns the plugin from the worker that rejoins (which does
    not set it up twice) and hands it to a worker that joins afterwards."""
    ledger = tmp_path / "setups"
    ledger.mkdir()
    cluster.start_scheduler()
    cluster.start_workers(1, "--death-timeout", "60s")
    with cluster.client(1) as client:
        client.register_plugin(SetupLedger(str(ledger)), name="ledger")
        assert len(list(ledger.iterdir())) == 1
        assert cluster.scheduler is not None
        cluster.scheduler.kill()
        cluster.scheduler.wait()
        cluster.start_scheduler()
        wait_for(lambda: len(cluster.note(client)) == 1, timeout=60)
        cluster.start_workers(1, "--death-timeout", "60s")
        wait_for(lambda: len(cluster.note(client)) == 2, timeout=60)
        wait_for(lambda: len(list(ledger.iterdir())) >= 2, timeout=30)
        # the scheduler knows it again: an idempotent registration sets nothing up
        client.register_plugin(SetupLedger(str(ledger)), name="ledger", idempotent=True)
        pids = sorted(int(f.name.split("-")[0]) for f in ledger.iterdir())
        worker_pids = sorted(int(w["pid"]) for w in cluster.note(client).values())
        assert pids == worker_pids, "each worker is set up once: the rejoined one not twice"


def test_a_worker_exits_on_sigterm_while_a_task_blocks_its_thread(cluster: Cluster) -> None:
    """The task never returns; SIGTERM still ends the worker process (the interpreter
    would otherwise wait for the task thread at exit for ever)."""
    cluster.start_scheduler()
    worker = cluster.start_workers(1, "--no-nanny")
    with cluster.client(1) as client:
        blocked = client.submit(time.sleep, 3600, key="blocks-its-thread")
        wait_for(lambda: client.processing().get(next(iter(cluster.note(client))), ()), 30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert blocked.status == "pending"  # nothing ran it to the end


def test_a_worker_still_looking_for_its_scheduler_exits_on_sigterm(cluster: Cluster) -> None:
    """No scheduler ever answers and ``death_timeout`` is for ever: the worker keeps
    trying inside its start-up, and SIGTERM must still end it."""
    worker = cluster.start_workers(1, "--no-nanny")
    process = psutil.Process(worker.pid)
    wait_for(lambda: any(c.status == "LISTEN" for c in process.net_connections("tcp")), 60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
