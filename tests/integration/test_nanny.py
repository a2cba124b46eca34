"""Nannies over real processes: deaths, blame, memory kills, restarts, no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import Client
from shoal.errors import CancelledError, KilledWorker
from tests.integration.conftest import CliCluster, cli_scheduler, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "nanny-test-token"


@dataclass
class NannyCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    nannies: subprocess.Popen[bytes]
    #: every worker pid seen during the test (checked for orphans at the end)
    worker_pids: set[int]

    def client(self) -> Client:
        from shoal.comm import Security

        client = Client(self.address, security=Security(token=TOKEN), set_as_default=False)
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60)
        self.note_workers(client)
        return client

    def note_workers(self, client: Client) -> dict[str, Any]:
        workers: dict[str, Any] = client.scheduler_info()["workers"]
        self.worker_pids.update(int(w["pid"]) for w in workers.values())
        return workers


def start_nanny_cluster(base: CliCluster, *worker_args: str) -> NannyCluster:
    """Two nannies (``shoal worker --nworkers 2``) for the scheduler of ``base``."""
    nannies = subprocess.Popen(
        [sys.executable, "-m", "shoal", "worker", base.address, "--nworkers", "2",
         "--token-file", str(base.token_file), "--log-level", "warning", *worker_args],
    )  # fmt: skip
    base.workers.append(nannies)  # stopped with the scheduler
    return NannyCluster(base.address, base.scheduler, nannies, set())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Any]:
    clusters: list[NannyCluster] = []
    with ExitStack() as stack:

        def make(*worker_args: str) -> NannyCluster:
            folder = tmp_path / f"cluster-{len(clusters)}"
            folder.mkdir()
            base = stack.enter_context(cli_scheduler(folder, TOKEN))
            clusters.append(start_nanny_cluster(base, *worker_args))
            return clusters[-1]

        yield make
        for cluster in clusters:
            with contextlib.suppress(psutil.NoSuchProcess):  # a test may have killed it
                children = psutil.Process(cluster.nannies.pid).children(recursive=True)
                cluster.worker_pids.update(child.pid for child in children)
    # no orphans: every worker process ever seen is gone with its nanny
    seen = {pid for cluster in clusters for pid in cluster.worker_pids}
    wait_for(lambda: not any(alive(pid) for pid in seen), timeout=30)


# -- task functions (run in worker processes) -------------------------------------------------
def leaf(i: int, gate: str) -> int:
    """Half the leaves wait for ``gate`` to exist: the graph cannot end before the test
    lets it (after it has killed a worker)."""
    if i >= 500:
        deadline = time.monotonic() + 120
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError("gate never opened")
            time.sleep(0.01)
    return i * 2


def add(a: int, b: int) -> int:
    return a + b


def inc(x: int) -> int:
    return x + 1


def crash() -> None:
    os._exit(1)


def inc_or_crash(x: int) -> int:
    """Quick like ``inc``, except at 300: the same prefix, so it runs ahead with the rest."""
    if x == 300:
        os._exit(1)
    return x + 1


def hog() -> int:
    """Hold 400 MB (touched, so it is resident) until the nanny stops this process."""
    block = b"\x01" * 400_000_000
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return len(block)


def tree_sum(client: Client, futures: list[Any]) -> Any:
    while len(futures) > 1:
        pairs = [
            client.submit(add, a, b) for a, b in zip(futures[::2], futures[1::2], strict=False)
        ]
        futures = pairs + ([futures[-1]] if len(futures) % 2 else [])
    return futures[0]


# -- tests -------------------------------------------------------------------------------------
def test_kill_9_mid_graph_recovers_and_nanny_replaces_worker(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster = make_cluster("--nthreads", "1")
    gate = str(tmp_path / "gate")
    with cluster.client() as client:
        before = cluster.note_workers(client)
        leaves = client.map(leaf, range(1000), gate=gate)
        total = tree_sum(client, leaves)  # 1000 leaves + 999 sums
        wait_for(lambda: client.scheduler_info()["tasks"].get("memory", 0) >= 200, timeout=60)
        victim, info = next(iter(before.items()))
        os.kill(int(info["pid"]), signal.SIGKILL)
        Path(gate).touch()
        assert total.result(timeout=120) == sum(i * 2 for i in range(1000))

        def replaced() -> bool:
            workers = cluster.note_workers(client)
            return len(workers) == 2 and victim not in workers

        wait_for(replaced, timeout=60)
        after = cluster.note_workers(client)
        assert {w["nanny"] for w in after.values()} == {w["nanny"] for w in before.values()}
        events = client.scheduler_info()["events"]
        assert [e["reason"] for e in events if e["worker"] == victim] == [
            "killed by signal 9 (SIGKILL)"
        ]


def test_crashing_task_errs_with_killed_worker_and_blames_only_itself(make_cluster: Any) -> None:
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        first = client.map(inc, range(250))
        bad = client.submit(crash, key="crasher")
        rest = client.map(inc, range(250, 500))
        with pytest.raises(KilledWorker) as info:
            bad.result(timeout=120)
        assert info.value.key == "crasher"
        assert info.value.deaths == 3
        assert info.value.reason == "exit code 1"
        assert client.gather(first + rest) == list(range(1, 501))
        deaths = [e for e in client.scheduler_info()["events"] if e["action"] == "worker-died"]
        assert [e["reason"] for e in deaths] == ["exit code 1"] * 3
        wait_for(lambda: len(cluster.note_workers(client)) == 2, timeout=60)


def test_a_crash_among_quick_tasks_run_ahead_blames_only_the_crashing_one(
    make_cluster: Any,
) -> None:
    """Tasks queued behind the thread (run ahead) die with the worker, unstarted: the
    nanny's running keys name only the crasher, so only it is blamed; the rest rerun."""
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        futures = client.map(inc_or_crash, range(600))
        crasher = futures[300]
        with pytest.raises(KilledWorker) as info:
            crasher.result(timeout=120)
        assert info.value.key == crasher.key
        assert info.value.deaths == 3
        rest = futures[:300] + futures[301:]
        assert client.gather(rest) == [x + 1 for x in range(600) if x != 300]
        deaths = [e for e in client.scheduler_info()["events"] if e["action"] == "worker-died"]
        assert [e["reason"] for e in deaths] == ["exit code 1"] * 3


def test_task_past_terminate_fraction_restarts_worker(make_cluster: Any) -> None:
    cluster = make_cluster("--nthreads", "1", "--memory-limit", "300MB")
    with cluster.client() as client:
        big = client.submit(hog, key="hog")
        with pytest.raises(KilledWorker) as info:
            big.result(timeout=180)
        assert info.value.key == "hog"
        assert info.value.reason.startswith("memory: RSS")
        reasons = [e["reason"] for e in client.scheduler_info()["events"]]
        assert len(reasons) == 3
        assert all("exceeded 95% of the 300000000 bytes memory limit" in r for r in reasons)
        wait_for(lambda: len(cluster.note_workers(client)) == 2, timeout=60)
        assert client.submit(inc, 1).result(timeout=60) == 2


def test_restart_clears_tasks_and_restarts_every_worker(make_cluster: Any, tmp_path: Path) -> None:
    cluster = make_cluster("--nthreads", "1")
    gate = str(tmp_path / "never")
    with cluster.client() as client:
        before = cluster.note_workers(client)
        done = client.submit(inc, 1)
        assert done.result(timeout=60) == 2
        pending = client.submit(leaf, 600, gate)  # waits for a gate that never opens
        wait_for(lambda: client.scheduler_info()["tasks"].get("processing", 0) == 1)
        assert client.restart() == {"restarted": 2, "failed": 0}
        with pytest.raises(CancelledError, match="restarted"):
            pending.result(timeout=60)
        after = cluster.note_workers(client)
        assert len(after) == 2 and not set(after) & set(before)
        assert {w["pid"] for w in after.values()}.isdisjoint(w["pid"] for w in before.values())
        wait_for(lambda: sum(client.scheduler_info()["tasks"].values()) == 0)
        assert client.submit(inc, 10).result(timeout=60) == 11


def pool_map(n: int) -> list[int]:
    """Use a ``multiprocessing.Pool`` inside a task (needs a non-daemonic worker)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.map(abs, range(-n, 0))


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def test_task_using_multiprocessing_pool_succeeds(make_cluster: Any) -> None:
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        assert client.submit(pool_map, 10).result(timeout=120) == list(range(10, 0, -1))


def test_segfaulting_task_errs_with_killed_worker(make_cluster: Any) -> None:
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        bad = client.submit(segfault, key="segfaulter")
        good = client.map(inc, range(20))
        with pytest.raises(KilledWorker) as info:
            bad.result(timeout=120)
        assert info.value.key == "segfaulter"
        assert info.value.deaths == 3
        assert "SIGSEGV" in info.value.reason
        assert client.gather(good) == list(range(1, 21))
        wait_for(lambda: len(cluster.note_workers(client)) == 2, timeout=60)


def counted(i: int, folder: str) -> int:
    """Record one execution of key ``i`` and when (one new file per run); return ``i * 3``."""
    import time
    import uuid

    Path(folder, f"{i}-{time.time():.6f}-{uuid.uuid4().hex}").touch()
    return i * 3


def test_retire_workers_keeps_unique_results_without_recomputing(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster = make_cluster("--nthreads", "1")
    runs = tmp_path / "runs"
    runs.mkdir()
    with cluster.client() as client:
        victim, keeper = sorted(cluster.note_workers(client))
        futures = client.map(counted, range(20), folder=str(runs), workers=[victim])
        client.gather(futures)
        held = client.who_has(futures)
        assert all(list(holders) == [victim] for holders in held.values()), (victim, held)
        assert client.retire_workers([victim]) == {"retired": [victim], "refused": []}
        assert list(cluster.note_workers(client)) == [keeper]  # its nanny closed, alone
        assert client.gather(futures) == [i * 3 for i in range(20)]
        assert all(list(holders) == [keeper] for holders in client.who_has(futures).values())
        executions = sorted(int(p.name.split("-")[0]) for p in runs.iterdir())
        assert executions == list(range(20))
        assert cluster.nannies.poll() is None  # the other nanny of the process still runs


def test_lifetime_restart_recycles_workers_during_a_job(make_cluster: Any, tmp_path: Path) -> None:
    cluster = make_cluster(
        "--nthreads", "1", "--lifetime", "3s", "--lifetime-stagger", "1s", "--lifetime-restart"
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    with cluster.client() as client:
        first = set(cluster.note_workers(client))
        seen: set[str] = set(first)
        futures: list[Any] = []  # all kept: their data must survive every retirement
        done_at: dict[int, float] = {}  # key -> when the client had its result
        deadline = time.monotonic() + 120
        while len(seen - first) < 4:  # each of the two workers replaced at least twice
            assert time.monotonic() < deadline, "workers did not recycle"
            start = len(futures)
            batch = client.map(counted, range(start, start + 20), folder=str(runs))
            client.gather(batch)
            done_at.update(dict.fromkeys(range(start, start + 20), time.time()))
            futures += batch
            seen |= set(cluster.note_workers(client))
        assert client.gather(futures) == [i * 3 for i in range(len(futures))]
        # retired data was copied, never recomputed: no key ran again after its result
        # existed (a task still running on a retiring worker may run again elsewhere)
        runs_of = [(int(i), float(at)) for i, at, _ in (p.name.split("-") for p in runs.iterdir())]
        assert {i for i, _ in runs_of} == set(done_at)
        late = [(i, at - done_at[i]) for i, at in runs_of if at > done_at[i]]
        assert not late, late
        wait_for(lambda: len(cluster.note_workers(client)) == 2, timeout=60)
        assert not [e for e in client.scheduler_info()["events"] if e["action"] == "worker-died"]


def slow_inc(x: int) -> int:
    time.sleep(0.005)
    return x + 1


def test_retire_workers_under_load_loses_nothing(make_cluster: Any) -> None:
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        victim, keeper = sorted(cluster.note_workers(client))
        futures = client.map(slow_inc, range(300), pure=False)
        wait_for(lambda: sum(f.done() for f in futures) >= 60)  # both workers busy, some done
        assert client.retire_workers([victim]) == {"retired": [victim], "refused": []}
        assert client.gather(futures) == list(range(1, 301))
        assert list(cluster.note_workers(client)) == [keeper]
        assert all(list(h) == [keeper] for h in client.who_has(futures).values())


def test_the_nanny_removes_a_killed_workers_directory(make_cluster: Any, tmp_path: Path) -> None:
    parent = tmp_path / "workers"
    parent.mkdir()
    cluster = make_cluster("--nthreads", "1", "--local-directory", str(parent))
    with cluster.client() as client:
        workers = cluster.note_workers(client)
        info = next(iter(workers.values()))
        directory = Path(info["local_directory"])
        assert directory.parent == parent and directory.exists()
        (directory / "storage").mkdir(exist_ok=True)
        (directory / "storage" / "spilled").write_bytes(b"x" * 100_000)
        os.kill(int(info["pid"]), signal.SIGKILL)
        wait_for(lambda: not directory.exists(), timeout=60)
        wait_for(lambda: len(cluster.note_workers(client)) == 2, timeout=60)
        dirs = sorted(p.name for p in parent.iterdir())
        assert len(dirs) == 2 and directory.name not in dirs


def test_workers_die_with_a_sigkilled_nanny_process(make_cluster: Any) -> None:
    """The nanny process gets no chance to stop its workers: they go by themselves (they
    asked for the parent-death signal at start, ``--nanny-pid``)."""
    cluster = make_cluster("--nthreads", "1")
    with cluster.client() as client:
        pids = [int(w["pid"]) for w in cluster.note_workers(client).values()]
        assert all(psutil.Process(pid).ppid() == cluster.nannies.pid for pid in pids)
        cluster.nannies.kill()
        cluster.nannies.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30)
