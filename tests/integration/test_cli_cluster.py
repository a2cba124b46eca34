"""The end-to-end path over real processes started through the CLI."""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np
import pytest

from shoal import Client
from tests.integration.conftest import CliCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def inc(x: int) -> int:
    return x + 1


def make_array(nbytes: int) -> np.ndarray[Any, Any]:
    return np.full(nbytes // 8, 3.0)


def total(x: np.ndarray[Any, Any]) -> float:
    return float(x.sum())


def fail_deep(x: int) -> int:
    def inner_helper_that_raises() -> int:
        raise ZeroDivisionError(f"cannot divide {x}")

    return inner_helper_that_raises()


def transitions_of(key: Any) -> list[list[str]]:
    from shoal import get_worker

    story = get_worker().state.story(key)
    return [[entry[1], entry[2]] for entry in story if entry[0] == key]


def worker_keys() -> list[Any]:
    from shoal import get_worker

    w = get_worker()
    return [list(w.data), len(w.tasks)]


def connect(cluster: CliCluster) -> Client:
    client = Client(cluster.address, security=cluster.security, set_as_default=False)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2)
    return client


def test_map_of_10000_tasks(cli_cluster: CliCluster) -> None:
    with connect(cli_cluster) as client:
        futures = client.map(inc, range(10_000))
        assert client.gather(futures) == list(range(1, 10_001))


def test_chain_of_1000_tasks(cli_cluster: CliCluster) -> None:
    with connect(cli_cluster) as client:
        future = client.submit(inc, 0)
        for _ in range(999):
            future = client.submit(inc, future)
        assert future.result() == 1000


def test_50mb_array_travels_peer_to_peer(cli_cluster: CliCluster) -> None:
    with connect(cli_cluster) as client:
        a, b = sorted(client.scheduler_info()["workers"])
        array = client.submit(make_array, 50 * 2**20, workers=[a])
        summed = client.submit(total, array, workers=[b])
        assert summed.result() == 3.0 * (50 * 2**20 // 8)
        # worker B fetched the array from A itself: its story shows the transfer
        moves = client.run(transitions_of, array.key, workers=[b])[b]
        assert ["fetch", "flight"] in moves and ["flight", "memory"] in moves


def test_exception_raises_with_remote_traceback(cli_cluster: CliCluster) -> None:
    with connect(cli_cluster) as client:
        future = client.submit(fail_deep, 7)
        with pytest.raises(ZeroDivisionError, match="cannot divide 7") as info:
            future.result()
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "inner_helper_that_raises" in frames
        assert future.status == "error"
        assert isinstance(future.exception(), ZeroDivisionError)


def test_released_work_leaves_nothing_behind(cli_cluster: CliCluster) -> None:
    with connect(cli_cluster) as client:
        futures = client.map(inc, range(500))
        chained = [client.submit(inc, f) for f in futures[:50]]
        assert sum(client.gather(chained)) == sum(range(2, 52))
        del futures, chained

        def all_clear() -> bool:
            info = client.scheduler_info()
            holdings = client.run(worker_keys)
            return sum(info["tasks"].values()) == 0 and all(
                data == [] and ntasks == 0 for data, ntasks in holdings.values()
            )

        wait_for(all_clear)
