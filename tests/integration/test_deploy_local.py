"""LocalCluster as a ``Cluster``: scale up and down, adapt, with no unique key lost.

Every task appends its key to a ledger file, so a recomputation would show as a key
written twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shoal import Client
from shoal.cluster import LocalCluster as ReExported
from shoal.deploy import Cluster, LocalCluster
from shoal.deploy.local import NannyJob
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def ledgered(key: str, ledger: str, seconds: float = 0.0) -> str:
    time.sleep(seconds)
    with open(ledger, "a") as f:
        f.write(key + "\n")
    return key * 100


def ledger_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_local_cluster_is_a_cluster_and_still_importable_from_shoal_cluster() -> None:
    assert ReExported is LocalCluster
    assert issubclass(LocalCluster, Cluster)


def test_scale_processes_up_and_down_keeps_every_result(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with LocalCluster(n_workers=1, threads_per_worker=1) as cluster, cluster.get_client() as client:
        cluster.scale(3)
        cluster.wait_for_workers(3, timeout=60)
        assert len(client.scheduler_info()["workers"]) == 3
        futures = [client.submit(ledgered, f"k{i}", str(ledger), key=f"k{i}") for i in range(12)]
        client.gather(futures)
        holders = {a for addrs in client.who_has(futures).values() for a in addrs}
        assert len(holders) >= 2  # the data is spread: scaling down must move some

        cluster.scale(1)
        assert len(cluster.jobs) == 1
        wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, 30, "one worker left")
        assert client.gather(futures) == [f"k{i}" * 100 for i in range(12)]
        lines = ledger_lines(ledger)
        assert sorted(lines) == sorted(f"k{i}" for i in range(12)), "a key was recomputed"
        assert set(cluster.get_logs()) == {"Scheduler", *cluster.jobs}


async def _scale_asynchronously() -> list[str]:
    async with LocalCluster(n_workers=1, processes=False, asynchronous=True) as cluster:
        await cluster.scale(2)
        await cluster.wait_for_workers(2, timeout=30)
        async with Client(cluster, asynchronous=True) as client:
            assert await client.submit(len, "abc") == 3
        await cluster.scale(1)
        return list(cluster.jobs)


def test_an_asynchronous_cluster_scales_with_await() -> None:
    import asyncio

    [left] = asyncio.run(_scale_asynchronously())
    assert left in {"local-0", "local-1"}


def test_scale_by_cores_and_bad_requests() -> None:
    with LocalCluster(n_workers=0, threads_per_worker=2, processes=False) as cluster:
        assert cluster.jobs_for(cores=5) == 3
        with pytest.raises(TypeError, match="exactly one"):
            cluster.scale(2, jobs=1)
        with pytest.raises(ValueError, match="negative"):
            cluster.scale(-1)
        with pytest.raises(ValueError, match="memory"):
            cluster.scale(memory="4GB")


def test_adapt_up_under_load_then_down_by_retirement_without_recomputing(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        assert cluster.dashboard_link is not None
        adaptive = cluster.adapt(
            minimum=1, maximum=3, target_duration="0.4s", wait_count=3, interval="0.1s"
        )
        with Client(cluster) as client:
            keys = [f"slow-{i}" for i in range(30)]
            futures = [client.submit(ledgered, k, str(ledger), 0.1, key=k) for k in keys]
            wait_until(lambda: len(cluster.jobs) == 3, 30, "adapt scaled up to 3")
            client.gather(futures)
            # idle and holding little: back to the minimum, through retirement
            wait_until(lambda: len(cluster.jobs) == 1, 30, "adapt scaled down to 1")
            wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, 30, "one worker left")
            assert client.gather(futures) == [k * 100 for k in keys]
            assert sorted(ledger_lines(ledger)) == sorted(keys), "a key was recomputed"
        adaptive.stop()
        # no bouncing: every scale-down came after wait_count lower targets in a row
        below = 0
        size = 1
        for target, scaled_to in adaptive.history:
            below = below + 1 if target < size else 0
            if scaled_to is not None:
                if scaled_to < size:
                    assert below >= 3, adaptive.history
                size, below = scaled_to, 0
        assert any(s is not None and s < 3 for _, s in adaptive.history)


# -- worker processes under the nannies this process runs ------------------------------------
def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def worker_pids(client: Client) -> set[int]:
    return {int(w["pid"]) for w in client.scheduler_info()["workers"].values()}


def test_a_sigkilled_worker_process_is_restarted_by_its_nanny_here() -> None:
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
    with cluster, cluster.get_client() as client:
        [pid] = worker_pids(client)
        parent = psutil.Process(pid).parent()
        assert parent is not None and parent.pid == os.getpid()  # no nanny process
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: (worker_pids(client) or {pid}) != {pid}, 60, "a new worker process")
        assert client.submit(len, "abcd").result(timeout=60) == 4
        [job] = cluster.jobs.values()
        assert isinstance(job, NannyJob)
        assert job.nanny.deaths == ["killed by signal 9 (SIGKILL)"]


#: a process running a LocalCluster: prints its worker pids, then waits to be killed
CLUSTER_SCRIPT = """
import sys
from shoal import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
client = cluster.get_client()
print(*(w["pid"] for w in client.scheduler_info()["workers"].values()), flush=True)
sys.stdin.read()
"""


def test_worker_processes_die_with_the_process_running_their_nannies() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CLUSTER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None
        pids = [int(pid) for pid in owner.stdout.readline().split()]
        try:
            assert len(pids) == 2 and not any(gone(pid) for pid in pids)
            owner.kill()  # SIGKILL: the nannies close nothing
            owner.wait()
            wait_until(lambda: all(gone(pid) for pid in pids), 30, "the workers to exit")
        finally:
            for pid in pids:
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)


def heartbeat_interval(dask_worker: object) -> float:
    return float(dask_worker.config.heartbeat_interval)  # type: ignore[attr-defined]


def test_dask_config_set_here_reaches_the_worker_processes() -> None:
    """Their nannies resolve the settings in this process (as dask's ship their config;
    the worker processes then start without importing dask: tests/worker/test_warm_imports)."""
    import dask.config

    with (
        dask.config.set({"shoal.worker.heartbeat-interval": "250ms"}),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        assert list(client.run(heartbeat_interval).values()) == [0.25, 0.25]


def dask_setting(name: str) -> object:
    import dask.config

    return dask.config.get(name, None)


def test_any_dask_config_set_here_reaches_tasks_in_worker_processes() -> None:
    """Not only shoal's keys: what a task reads through dask.config too (dask's nanny
    ships its whole config)."""
    import dask.config

    with (
        dask.config.set({"array.chunk-size": "7MiB", "deploy-test.flag": 5}),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        futures = client.map(dask_setting, ["array.chunk-size"] * 4 + ["deploy-test.flag"] * 4)
        assert client.gather(futures) == ["7MiB"] * 4 + [5] * 4
        assert list(client.run(dask_setting, "deploy-test.flag").values()) == [5, 5]
