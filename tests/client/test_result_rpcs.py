"""``result()`` against a real cluster costs one rpc: ``key-in-memory`` names the holder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shoal.client import Client, wait

cluster_module = pytest.importorskip("shoal.cluster")


def inc(x: int) -> int:
    return x + 1


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


def test_result_is_one_get_data_from_the_holder(cluster: object) -> None:
    with Client(cluster, set_as_default=False) as client:
        future = client.submit(inc, 1)
        wait([future], timeout=30)
        [holder] = client.who_has([future])[future.key]
        calls = _count_calls(client)
        assert future.result(timeout=30) == 2
        assert calls == [(holder, "get_data")]  # no who_has first


def test_gather_of_a_map_is_one_get_data_per_holder(cluster: object) -> None:
    with Client(cluster, set_as_default=False) as client:
        futures = client.map(inc, range(20))
        wait(futures, timeout=30)
        holders = {w for ws in client.who_has(futures).values() for w in ws}
        calls = _count_calls(client)
        assert client.gather(futures) == list(range(1, 21))
        assert sorted(calls) == sorted((w, "get_data") for w in holders)
