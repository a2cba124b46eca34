"""``worker.data``: a custom mapping or factory, the spill buffer, or a plain dict."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from shoal import Client, LocalCluster
from shoal.worker.spill import SpillBuffer
from tests.conftest import wait_until


class RecordingMapping(MutableMapping[Any, Any]):
    """A user's mapping: records every store and delete."""

    def __init__(self) -> None:
        self.store: dict[Any, Any] = {}
        self.stored: list[Any] = []
        self.deleted: list[Any] = []

    def __getitem__(self, key: Any) -> Any:
        return self.store[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stored.append(key)
        self.store[key] = value

    def __delitem__(self, key: Any) -> None:
        self.deleted.append(key)
        del self.store[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)


def inc(x: int) -> int:
    return x + 1


def cluster(**kwargs: Any) -> LocalCluster:
    return LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, **kwargs
    )


@pytest.mark.parametrize("as_factory", [False, True])
def test_a_custom_mapping_holds_the_data(as_factory: bool) -> None:
    mapping = RecordingMapping()  # empty, so falsy: it must still be used
    data = (lambda: mapping) if as_factory else mapping
    with (
        cluster(memory_limit="300MB", worker_kwargs={"data": data}) as c,
        Client(c, set_as_default=False) as client,
    ):
        worker = c.workers[0]
        assert worker.data is mapping
        a = client.submit(inc, 1, key="a")
        b = client.submit(inc, a, key="b")
        assert b.result() == 3
        assert mapping.store == {"a": 2, "b": 3} and mapping.stored == ["a", "b"]
        assert client.scheduler_info()["workers"][worker.address]["metrics"] is not None
        del a, b
        wait_until(lambda: not mapping.store)  # the release reaches the worker
        assert sorted(mapping.deleted) == ["a", "b"]


def test_a_memory_limit_makes_a_spill_buffer_under_local_directory(tmp_path: Any) -> None:
    with cluster(memory_limit="300MB", worker_kwargs={"local_directory": str(tmp_path)}) as c:
        worker = c.workers[0]
        assert isinstance(worker.data, SpillBuffer)
        assert worker.memory_limit == 300 * 10**6
        assert worker.data.target == pytest.approx(0.6 * 300 * 10**6)
        assert worker.data.directory.startswith(str(tmp_path))
        directory = worker.data.directory
    assert not (tmp_path / directory).exists()  # removed on close


def test_no_limit_or_no_fractions_means_a_plain_dict() -> None:
    with cluster(memory_limit=0) as c:
        assert type(c.workers[0].data) is dict
    fractions_off = {"memory_target_fraction": None, "memory_spill_fraction": False}
    with cluster(memory_limit="300MB", worker_kwargs=fractions_off) as c:
        assert type(c.workers[0].data) is dict
