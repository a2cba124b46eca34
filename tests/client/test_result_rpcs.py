"""``result()`` against a real cluster: a small result came with ``key-in-memory`` (no rpc);
a large one is one rpc, to the holder ``key-in-memory`` named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from shoal.client import Client, wait

cluster_module = pytest.importorskip("shoal.cluster")


def inc(x: int) -> int:
    return x + 1


def big(x: int) -> np.ndarray:
    return np.full(2**17, x, dtype=np.float64)  # 1 MiB


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with cluster_module.LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as c:
        yield c


def _count_calls(client: Client) -> list[tuple[str, str]]:
    """Record every rpc the client's core makes from now on: (address, op)."""
    core = client._core
    assert core is not None
    transport: Any = core.transport
    calls: list[tuple[str, str]] = []
    real_call = transport.call

    async def call(address: str, rpc: Any, /, **options: Any) -> Any:
        calls.append((address, rpc.rpc))
        return await real_call(address, rpc, **options)

    transport.call = call
    return calls


def test_a_small_result_comes_with_key_in_memory_and_costs_no_rpc(cluster: object) -> None:
    with Client(cluster, set_as_default=False) as client:
        future = client.submit(inc, 1)
        wait([future], timeout=30)
        calls = _count_calls(client)
        assert future.result(timeout=30) == 2
        assert future.result(timeout=30) == 2
        assert calls == []  # the worker sent the value along with task-finished


def test_a_large_result_is_one_get_data_from_the_holder(cluster: object) -> None:
    with Client(cluster, set_as_default=False) as client:
        future = client.submit(big, 1)  # 1 MB: too big to travel with key-in-memory
        wait([future], timeout=30)
        [holder] = client.who_has([future])[future.key]
        calls = _count_calls(client)
        value = future.result(timeout=30)
        assert isinstance(value, np.ndarray) and value.shape == (2**17,)
        assert (value == 1).all()
        assert calls == [(holder, "get_data")]  # no who_has first


def test_gather_of_a_map_is_one_get_data_per_holder_of_large_results(cluster: object) -> None:
    with Client(cluster, set_as_default=False) as client:
        small = client.map(inc, range(20))
        large = client.map(big, range(4))
        wait(small + large, timeout=30)
        holders = {w for ws in client.who_has(large).values() for w in ws}
        calls = _count_calls(client)
        assert client.gather(small) == list(range(1, 21))
        assert calls == []
        assert [int(v[0]) for v in client.gather(large)] == [0, 1, 2, 3]
        assert sorted(calls) == sorted((w, "get_data") for w in holders)
