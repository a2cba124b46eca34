"""dask collections on shoal give the same results as dask's synchronous scheduler."""

from __future__ import annotations

import asyncio
import gc
import operator
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from shoal.client import Client, Future, graph_submit
from shoal.cluster import LocalCluster
from tests.conftest import wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


def same(collection: Any, client: Client) -> None:
    """The collection computed on shoal equals the collection computed synchronously."""
    expected = collection.compute(scheduler="sync")
    got = collection.compute(scheduler=client.get)
    if isinstance(expected, pd.DataFrame | pd.Series):
        pd.testing.assert_frame_equal(pd.DataFrame(got), pd.DataFrame(expected))
    else:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.fixture
def x() -> da.Array:
    return da.random.default_rng(42).random((60, 60), chunks=(15, 20))


# -- dask.array --------------------------------------------------------------------------------
def test_array_reductions(client: Client, x: da.Array) -> None:
    same(x.sum(), client)
    same(x.mean(axis=0), client)
    same(x.std(axis=1), client)
    same(x.argmax(axis=0), client)


def test_array_transpose_add_rechunk_matmul_slicing(client: Client, x: da.Array) -> None:
    same(x + x.T, client)
    same((x + x.T).mean(axis=0).sum(), client)
    same(x.rechunk((7, 60)), client)
    same(x @ x.T, client)
    same(x[5:47:3, ::-1][::2], client)


def test_default_client_runs_compute_without_scheduler_argument(
    client: Client, x: da.Array
) -> None:
    assert dask.config.get("scheduler").__self__ is client
    assert dask.config.get("dataframe.shuffle.method") == "tasks"
    np.testing.assert_allclose(x.sum().compute(), x.sum().compute(scheduler="sync"))


# -- dask.dataframe ----------------------------------------------------------------------------
@pytest.fixture
def frames() -> tuple[dd.DataFrame, dd.DataFrame]:
    rng = np.random.default_rng(0)
    left = pd.DataFrame({"k": rng.integers(0, 20, 400), "v": rng.random(400), "w": np.arange(400)})
    right = pd.DataFrame({"k": np.arange(20), "name": [f"n{i}" for i in range(20)]})
    return dd.from_pandas(left, npartitions=5), dd.from_pandas(right, npartitions=2)


def test_dataframe_groupby_aggregate(client: Client, frames: Any) -> None:
    left, _ = frames
    same(left.groupby("k").agg({"v": ["sum", "mean"], "w": "max"}), client)


def test_dataframe_set_index_shuffles_by_tasks(client: Client, frames: Any) -> None:
    left, _ = frames
    with dask.config.set({"dataframe.shuffle.method": None}):
        expected = left.set_index("v").compute(scheduler="sync")
    got = client.compute(left.set_index("v")).result()
    pd.testing.assert_frame_equal(got, expected)


def test_dataframe_merge_and_rolling(client: Client, frames: Any) -> None:
    left, right = frames
    merged = left.merge(right, on="k", how="inner")
    expected = merged.compute(scheduler="sync").sort_values("w").reset_index(drop=True)
    got = merged.compute(scheduler=client.get).sort_values("w").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    same(left.v.rolling(5).mean(), client)


# -- dask.delayed and dask.bag -------------------------------------------------------------------
def scale(value: float, *, factor: float = 1.0, offset: float = 0.0) -> float:
    return value * factor + offset


def test_delayed_nested_with_keyword_arguments(client: Client) -> None:
    parts = [dask.delayed(scale)(i, factor=2.0, offset=i) for i in range(6)]
    nested = dask.delayed(sum)([dask.delayed(scale)(p, offset=1.0) for p in parts])
    pair = dask.delayed(lambda d: (d["a"], sorted(d["b"])))({"a": nested, "b": parts})
    assert pair.compute(scheduler=client.get) == pair.compute(scheduler="sync")


def test_bag_map_and_foldby(client: Client) -> None:
    bag = db.from_sequence(range(100), npartitions=7)
    same(bag.map(lambda i: i * 3).filter(lambda i: i % 2), client)
    folded = bag.foldby(lambda i: i % 5, operator.add, 0)
    assert sorted(folded.compute(scheduler=client.get)) == sorted(folded.compute(scheduler="sync"))


# -- get, compute, persist --------------------------------------------------------------------
def test_get_takes_plain_dicts_and_returns_values_nested_as_keys(client: Client) -> None:
    dsk = {"a": 1, "b": (operator.add, "a", 10), "c": "b", ("d", 0): (sum, ["a", "b", "c"])}
    assert client.get(dsk, [["c", ("d", 0)], "a"]) == [[11, 23], 1]
    assert client.get(dsk, ("d", 0)) == 23


def test_compute_returns_futures(client: Client, x: da.Array) -> None:
    total, column = client.compute([x.sum(), x[:, 0]])
    assert isinstance(total, Future)
    np.testing.assert_allclose(total.result(), x.sum().compute(scheduler="sync"))
    np.testing.assert_allclose(column.result(), x[:, 0].compute(scheduler="sync"))


def test_graphs_are_built_with_collection_paused_and_it_comes_back_on(
    client: Client, x: da.Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.graph.dask import materialize as real

    seen: list[bool] = []

    def recording(dsk: Any) -> Any:
        seen.append(gc.isenabled())
        return real(dsk)

    monkeypatch.setattr("shoal.client.collections.materialize", recording)
    was = gc.isenabled()
    gc.enable()
    try:
        client.compute(x.sum()).result()
        client.persist(x + 1)
        client.get({"a": 1, "b": (operator.add, "a", 1)}, "b")
        assert seen == [False, False, False]  # compute, persist, get
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()


def test_persist_returns_collections_backed_by_futures(client: Client, x: da.Array) -> None:
    persisted = client.persist(x)
    values = list(dict(persisted.__dask_graph__()).values())
    assert values and all(isinstance(v, Future) for v in values)
    np.testing.assert_allclose(
        (persisted + 1).sum().compute(), (x + 1).sum().compute(scheduler="sync")
    )
    (again,) = dask.persist(x)  # delegates to the default client's persist
    assert all(isinstance(v, Future) for v in dict(again.__dask_graph__()).values())


def test_futures_embedded_in_dask_graphs_are_dependencies(client: Client) -> None:
    future = client.submit(operator.mul, 6, 7)
    total = dask.delayed(operator.add)(future, 1)
    assert total.compute() == 43
    arr = da.from_delayed(dask.delayed(np.arange)(future), shape=(42,), dtype=int)
    assert arr.sum().compute() == sum(range(42))


def test_a_failing_task_raises_its_own_exception(client: Client) -> None:
    bad = dask.delayed(operator.truediv)(1, 0)
    with pytest.raises(ZeroDivisionError):
        bad.compute()


# -- annotations ---------------------------------------------------------------------------------
FAILURES: dict[str, int] = {}


def flaky(name: str) -> str:
    FAILURES[name] = FAILURES.get(name, 0) + 1
    if FAILURES[name] < 3:
        raise OSError(f"attempt {FAILURES[name]} of {name} failed")
    return name


def test_retries_annotation_reruns_a_failing_task(client: Client) -> None:
    with dask.annotate(retries=2):
        value = dask.delayed(flaky, pure=False)("retried")
    assert value.compute(optimize_graph=False) == "retried"
    assert FAILURES["retried"] == 3


def test_workers_annotation_places_tasks(client: Client, x: da.Array) -> None:
    first = sorted(client.nthreads())[0]
    with dask.annotate(workers=[first]):
        y = x + 1
    persisted = client.persist(y, optimize_graph=False)
    futures = list(dict(persisted.__dask_graph__()).values())
    client.gather(futures)
    holders = client.who_has(futures)
    assert holders and all(list(where) == [first] for where in holders.values())


# -- big graphs go in batches ---------------------------------------------------------------------
def test_a_graph_sent_in_many_batches_computes_and_leaves_nothing_behind(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_submit, "MAX_TASKS_PER_MESSAGE", 7)
    x = da.arange(200, chunks=4)  # ~100 tasks, ~15 messages
    with Client(cluster, set_as_default=False) as client:
        assert (x + 1).sum().compute(scheduler=client.get) == sum(range(1, 201))
        wait_until(lambda: not client.who_has())


def test_futures_dropped_while_a_graph_over_them_is_sent_stay_until_it_is_in(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_submit, "MAX_TASKS_PER_MESSAGE", 5)
    with Client(cluster, set_as_default=False) as client:
        futures = client.map(operator.mul, range(20), [10] * 20)
        client.gather(futures)
        keys = [f.key for f in futures]
        # the held keys are rows again (the same computations: not sent while held), and
        # the tasks that use them come in the same or later messages
        dsk: dict[Any, Any] = {key: (operator.mul, i, 10) for i, key in enumerate(keys)}
        dsk.update({f"plus-{i}": (operator.add, key, 1) for i, key in enumerate(keys)})
        dsk["total"] = (sum, [f"plus-{i}" for i in range(len(keys))])
        core = client._running_core()
        real_send = core.send

        def send_and_drop(op: Any, apart: bool = False) -> None:
            real_send(op, apart)
            futures.clear()  # the user's last references go while later messages wait

        monkeypatch.setattr(core, "send", send_and_drop)
        assert client.get(dsk, "total") == sum(10 * i + 1 for i in range(20))
        monkeypatch.setattr(core, "send", real_send)
        wait_until(lambda: not any(core.table.count(key) for key in keys))
        wait_until(lambda: not client.who_has())


def test_the_default_client_is_dask_scheduler_until_it_closes(cluster: LocalCluster) -> None:
    with dask.config.set(scheduler="threads"):
        with Client(cluster) as first:
            assert dask.config.get("scheduler").__self__ is first
            with Client(cluster) as second:
                assert dask.config.get("scheduler").__self__ is second
            assert dask.config.get("scheduler").__self__ is first
        assert dask.config.get("scheduler") == "threads"


def test_asynchronous_client_computes_and_persists(cluster: LocalCluster) -> None:
    x = da.ones((20, 20), chunks=5)
    total = x.sum()

    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True, set_as_default=False) as c:
            assert await c.compute(total) == 400  # as in dask: awaiting gives the value
            persisted = await c.persist(x)
            assert all(isinstance(v, Future) for v in dict(persisted.__dask_graph__()).values())
            assert await c.get(total.__dask_graph__(), [total.__dask_keys__()]) == [[400]]

    asyncio.run(main())


def test_worker_processes_run_dataframe_shuffles_and_arrays() -> None:
    frame = pd.DataFrame({"k": np.arange(300) % 7, "v": np.arange(300.0)[::-1]})
    df = dd.from_pandas(frame, npartitions=4)
    x = da.arange(100.0).reshape(10, 10).rechunk(5)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        got = client.compute(df.set_index("v")).result()
        total = client.compute((x @ x.T).sum()).result()
    assert total == (x @ x.T).sum().compute(scheduler="sync")
    pd.testing.assert_frame_equal(got, frame.set_index("v").sort_index())
