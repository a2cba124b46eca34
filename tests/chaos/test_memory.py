"""Chaos: a worker in a cgroup (v2 or v1) whose hard memory limit is below what it is asked to
hold (root only): it spills to disk, the kernel never OOM-kills anything and the nanny
never restarts the worker (task threads wait for the spill writer, see worker/spill.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.chaos import cgroup
from tests.chaos.conftest import SOAK, connect

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600 if SOAK else 300)]
MiB = 2**20
CGROUP_MAX = 700 * MiB
MEMORY_LIMIT = 400 * MiB
CHUNK = 64 * MiB
CHUNKS = 40 if SOAK else 16  # 1 GiB held (2.5 GiB soak) against a 700 MiB cgroup


def make_chunk(i: int, nbytes: int) -> Any:
    return np.full(nbytes // 8, float(i))


def chunk_sum(x: Any) -> float:
    return float(x.sum())


def spilled() -> dict[str, int]:
    from shoal import get_worker

    data = get_worker().data
    return {"on_disk": len(data.slow), "disk_bytes": int(getattr(data, "disk_bytes", 0))}


@pytest.fixture
def memory_cgroup() -> Iterator[cgroup.MemoryCgroup]:
    reason = cgroup.unavailable()
    if reason:
        pytest.skip(reason)
    made = cgroup.MemoryCgroup(CGROUP_MAX)
    yield made
    made.close()


def test_worker_under_hard_memory_limit_spills_without_oom(
    memory_cgroup: cgroup.MemoryCgroup, make_cluster: Any
) -> None:
    cluster = make_cluster()
    cluster.start_node(1, "--memory-limit", str(MEMORY_LIMIT), prefix=memory_cgroup.prefix())
    with connect(cluster, 1) as client:
        (pid_before,) = cluster.worker_pids()
        chunks = [client.submit(make_chunk, i, CHUNK) for i in range(CHUNKS)]
        client.gather([client.submit(len, c) for c in chunks])  # all held at once
        where = client.run(spilled)
        sums = client.gather([client.submit(chunk_sum, c) for c in chunks])
        assert sums == [float(i) * (CHUNK // 8) for i in range(CHUNKS)]
        (pid_after,) = cluster.worker_pids()
        events = memory_cgroup.events()
        print(
            f"CHAOS memory: held={CHUNKS * CHUNK // MiB}MiB cgroup_max={CGROUP_MAX // MiB}MiB "
            f"memory_limit={MEMORY_LIMIT // MiB}MiB spilled={where} events={events} "
            f"peak={memory_cgroup.peak()}",
            flush=True,
        )
        (stats,) = where.values()
        assert stats["on_disk"] > 0, f"nothing spilled: {where}"
        assert events.get("oom_kill", 0) == 0, f"the kernel OOM-killed in the cgroup: {events}"
        assert pid_after == pid_before, f"the worker was restarted: {cluster.tail()}"
        del chunks
