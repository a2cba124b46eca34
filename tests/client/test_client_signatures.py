"""dask's keywords are shoal's parameters: compared with the installed ``distributed``'s
signatures, and (one test per method) none of them reaches the user's function."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator
from typing import Any

import dask
import distributed
import pytest

import shoal
from shoal import LocalCluster
from shoal.client import Client, as_completed, signatures, wait

METHODS = (
    "submit",
    "map",
    "compute",
    "persist",
    "gather",
    "scatter",
    "cancel",
    "restart",
    "retire_workers",
    "run",
)


def parameters(func: Any) -> set[str]:
    return {
        name
        for name, p in inspect.signature(func).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"
    }


@pytest.mark.parametrize("method", METHODS)
def test_every_dask_parameter_is_a_shoal_parameter(method: str) -> None:
    theirs = parameters(getattr(distributed.Client, method))
    ours = parameters(getattr(Client, method))
    assert theirs - ours == set(), f"Client.{method} lacks {sorted(theirs - ours)}"


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (distributed.as_completed.__init__, as_completed.__init__),
        (distributed.wait, wait),
        (distributed.LocalCluster.__init__, LocalCluster.__init__),
    ],
)
def test_as_completed_wait_and_local_cluster_take_dasks_parameters(theirs: Any, ours: Any) -> None:
    missing = parameters(theirs) - parameters(ours)
    if ours is LocalCluster.__init__:  # the rest go through **kwargs, checked by name
        from shoal.cluster_options import NO_OPS, REFUSED

        missing -= set(NO_OPS) | set(REFUSED)
    assert missing == set()


def test_as_completed_has_dasks_methods() -> None:
    for name in ("batches", "next_batch", "has_ready", "clear", "count", "is_empty", "update"):
        assert callable(getattr(as_completed, name)), name


# -- no keyword reaches the user's function ----------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def kwargs_of(*args: Any, **kwargs: Any) -> list[str]:
    """What a user function got as keyword arguments."""
    return sorted(kwargs)


DASK_TASK_OPTIONS: dict[str, Any] = {
    "workers": None,
    "resources": None,
    "retries": 1,
    "priority": 1,
    "fifo_timeout": "1s",
    "allow_other_workers": False,
    "pure": False,
}


def test_submit_keeps_dask_keywords(client: Client) -> None:
    got = client.submit(kwargs_of, 1, mine=2, **DASK_TASK_OPTIONS, actor=False, actors=False)
    assert got.result() == ["mine"]


def test_map_keeps_dask_keywords(client: Client) -> None:
    futures = client.map(
        kwargs_of, [1, 2], mine=3, batch_size=1, actor=False, actors=False, **DASK_TASK_OPTIONS
    )
    assert client.gather(futures) == [["mine"], ["mine"]]


def test_run_keeps_dask_keywords(client: Client) -> None:
    result = client.run(kwargs_of, mine=1, workers=None, wait=True, nanny=False, on_error="raise")
    assert list(result.values()) == [["mine"]]


def test_compute_and_persist_keep_dask_keywords(client: Client) -> None:
    value = dask.delayed(kwargs_of)(mine=1)
    options = {k: v for k, v in DASK_TASK_OPTIONS.items() if k != "pure"}
    assert client.compute(value, sync=True, traverse=True, actors=None, **options) == ["mine"]
    persisted = client.persist(value, actors=None, **options)
    assert client.compute(persisted, sync=True) == ["mine"]
    future = client.compute(value, sync=False)
    assert future.result() == ["mine"]


def test_gather_scatter_cancel_take_dask_keywords(client: Client) -> None:
    [x] = client.scatter([1], direct=True, timeout="5s", hash=False)
    assert client.gather([x], direct=True) == [1]
    slow = client.submit(time.sleep, 10, pure=False)
    client.cancel([slow], asynchronous=None, force=False, reason="not needed", msg="bye")
    assert slow.cancelled()


def test_compute_and_persist_share_one_option_dict() -> None:
    options = signatures.collection_options(["w"], True, {"GPU": 1.0}, 2, 5.0, None)
    assert options == {
        "workers": ["w"],
        "allow_other_workers": True,
        "resources": {"GPU": 1.0},
        "retries": 2,
        "priority": 5.0,
    }
    with pytest.raises(NotImplementedError, match="actor=True"):
        signatures.collection_options(None, None, None, None, 0, True)


def test_actors_and_unoffered_options_are_refused_clearly(client: Client) -> None:
    with pytest.raises(NotImplementedError, match="actor=True"):
        client.compute(dask.delayed(kwargs_of)(), actors=True)
    with pytest.raises(NotImplementedError, match="actor=True"):
        client.persist(dask.delayed(kwargs_of)(), actors=True)
    with pytest.raises(NotImplementedError, match="close_workers=False"):
        client.retire_workers(["tcp://127.0.0.1:1"], close_workers=False)
    with pytest.raises(TypeError, match="names"):
        client.retire_workers(["tcp://127.0.0.1:1"], names=["a"])
    with pytest.raises(NotImplementedError, match="services"):
        LocalCluster(services={"x": object()})
    with pytest.raises(TypeError, match="unknown worker options"):
        LocalCluster(processes=False, no_such_option=1)


def test_compute_on_an_asynchronous_client_gives_the_value(client: Client) -> None:
    value = dask.delayed(kwargs_of)(mine=1)

    async def main() -> Any:
        async with Client(
            client.scheduler_address, asynchronous=True, set_as_default=False
        ) as aclient:
            return await aclient.compute(value)

    assert asyncio.run(main()) == ["mine"]


def test_the_public_names_dask_users_import_for_this_work_exist() -> None:
    for name in ("performance_report", "get_task_stream", "WorkerPlugin", "SchedulerPlugin"):
        assert getattr(shoal, name) is not None
    for name in ("NannyPlugin", "UploadFile", "UploadDirectory", "PipInstall", "Environ"):
        assert getattr(shoal, name) is not None
