"""Fetched inputs stay as replicas: one transfer for many uses, and nothing left behind."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import Client, LocalCluster, get_worker
from tests.conftest import wait_until


def make_block(nbytes: int) -> bytes:
    return b"x" * nbytes


def byte_at(block: bytes, i: int) -> int:
    return block[i]


def worker_books() -> dict[str, Any]:
    worker = get_worker()
    state = worker.state
    return {
        "incoming": worker.transfer_log.incoming_count,
        "replicas": len(state.replicas),
        "replica_bytes": sum(state.nbytes[k] for k in state.replicas),
        "managed": state.managed_nbytes,
        "keys": len(state.tasks),
        "key_names": sorted(map(str, state.tasks)),
    }


def test_twenty_tasks_on_another_worker_fetch_a_40mb_input_once() -> None:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        a, b = sorted(client.scheduler_info()["workers"])
        x = client.submit(make_block, 40_000_000, workers=[a])
        for i in range(20):  # one after another, each waiting for the one before
            assert client.submit(byte_at, x, i, workers=[b], pure=False).result() == ord("x")
        books = client.run(worker_books)
        assert books[b]["incoming"] == 1, books
        assert books[a]["incoming"] == 0, books
        assert list(client.who_has([x])[x.key]) == [b]  # the surplus copy on a was freed
        del x
        wait_until(lambda: all(v["keys"] == 0 for v in client.run(worker_books).values()))


def test_a_shuffle_under_a_small_memory_limit_leaves_no_replicas() -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    frame = pd.DataFrame({"k": [i % 97 for i in range(200_000)], "v": range(200_000)})
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit="400MB", dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        ddf = dd.from_pandas(frame, npartitions=16).shuffle("k", npartitions=16)
        counts = client.persist(ddf.map_partitions(len))
        assert int(client.compute(counts.sum()).result()) == 200_000

        # the shuffle's intermediates are released: every copy of them is freed, and what
        # stays is one copy of each of the 16 persisted counts
        def settled() -> bool:
            books = client.run(worker_books)
            return sum(v["keys"] for v in books.values()) == 16

        wait_until(settled)
        books = client.run(worker_books)
        names = [name for v in books.values() for name in v["key_names"]]
        assert len(set(names)) == 16, books  # one copy of each count
        assert all(name.startswith("('len-") for name in names), names  # nothing else
