"""What shoal puts in ``dask.config`` while a client is the default survives deepcopy."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import dask
import dask.array as da
import pytest

from shoal.client import Client, Future
from shoal.client.dask_config import ShoalDaskScheduler
from shoal.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as c:
        yield c


def test_config_deep_copies_while_a_client_is_default(cluster: LocalCluster) -> None:
    with Client(cluster) as client:
        copied = copy.deepcopy(dask.config.config)
        scheduler = dask.config.get("scheduler")
        assert isinstance(scheduler, ShoalDaskScheduler)
        assert copied["scheduler"] is scheduler  # the same client, not a copy of it
        assert scheduler.__self__ is client
        x = da.arange(40, chunks=10)
        assert int((x + 1).sum().compute()) == sum(range(1, 41))
        with dask.config.set(copied):  # a config restored from the copy still runs on shoal
            assert int(x.sum().compute()) == sum(range(40))


def test_persist_still_delegates_to_the_client(cluster: LocalCluster) -> None:
    with Client(cluster):
        x = da.ones((8, 8), chunks=4)
        (persisted,) = dask.persist(x)
        values = dict(persisted.__dask_graph__()).values()
        assert all(isinstance(v, Future) for v in values)
        assert int(persisted.sum().compute()) == 64


def test_closing_the_client_takes_the_scheduler_back(cluster: LocalCluster) -> None:
    with dask.config.set(scheduler="threads"):
        with Client(cluster):
            assert isinstance(dask.config.get("scheduler"), ShoalDaskScheduler)
        assert dask.config.get("scheduler") == "threads"
