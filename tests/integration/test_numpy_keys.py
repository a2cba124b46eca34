"""dask.array graphs whose keys hold numpy integers compute on a LocalCluster.

``vindex`` and ``diagonal`` build keys like ``("vindex-merge-...", np.int64(0))``; before
keys were normalized at the client, the whole ``update-graph`` could not be encoded and
its futures never resolved. Unoptimized graphs (and persisted ones) keep those keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import dask.array as da
import numpy as np
import pytest

from shoal.client import Client
from shoal.cluster import LocalCluster


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, timeout=30) as c,
    ):
        yield c


def test_vindex_computes(client: Client) -> None:
    values = np.arange(100).reshape(10, 10)
    x = da.from_array(values, chunks=3)
    rows, cols = np.array([1, 5, 9, 2]), np.array([0, 7, 3, 3])
    future = client.compute(x.vindex[rows, cols], optimize_graph=False)
    np.testing.assert_array_equal(future.result(timeout=60), values[rows, cols])


def test_diagonal_computes(client: Client) -> None:
    values = np.arange(64.0).reshape(8, 8)
    x = da.from_array(values, chunks=(3, 5))
    future = client.compute(da.diagonal(x, offset=1), optimize_graph=False)
    np.testing.assert_array_equal(future.result(timeout=60), values.diagonal(offset=1))


def test_persisted_vindex_then_computed(client: Client) -> None:
    x = da.arange(30, chunks=7)
    picked = client.persist(x.vindex[np.array([3, 29, 0])], optimize_graph=False)
    np.testing.assert_array_equal(picked.compute(), np.array([3, 29, 0]))


def test_a_graph_that_still_cannot_be_sent_fails_its_futures_naming_the_key(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.client import graph_submit
    from shoal.errors import SerializationError

    monkeypatch.setattr(graph_submit, "normalize_key", lambda key: key)  # as before the fix
    x = da.from_array(np.arange(20), chunks=6)
    future = client.compute(x.vindex[np.array([1, 7])], optimize_graph=False)
    with pytest.raises(SerializationError, match=r"cannot send the key\(s\) \('vindex"):
        future.result(timeout=30)
