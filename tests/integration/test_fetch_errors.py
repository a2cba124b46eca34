"""A value that cannot travel between workers fails its dependent promptly, with the error.

Before fetch errors were classified, a value whose bytes could not be unpickled where
they were needed (or that could not be pickled where it lived) was treated as a network
failure and fetched again ~200 times a second, and the dependent never finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.client import Client
from shoal.cluster import LocalCluster
from shoal.errors import SerializationError


def _refuse_to_load() -> None:
    raise RuntimeError("this value refuses to be unpickled here")


class LoadsNowhere:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


class HoldsALock:
    """Cannot be pickled at all (a lock does not pickle)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def make_unloadable() -> LoadsNowhere:
    return LoadsNowhere()


def make_unpicklable() -> HoldsALock:
    return HoldsALock()


def use(value: object) -> str:
    return type(value).__name__


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as c:
        yield c


def _two_workers(client: Client) -> tuple[str, str]:
    first, second = sorted(client.scheduler_info()["workers"])[:2]
    return first, second


@pytest.mark.parametrize(
    ("make", "expected"),
    [(make_unloadable, "refuses to be unpickled"), (make_unpicklable, "pickle")],
    ids=["unloadable-on-the-receiver", "unpicklable-on-the-sender"],
)
def test_the_dependent_errs_promptly_with_the_serialization_error(
    client: Client, make: Any, expected: str
) -> None:
    here, there = _two_workers(client)
    source = client.submit(make, workers=[here], pure=False)
    dependent = client.submit(use, source, workers=[there], pure=False)
    start = time.monotonic()
    with pytest.raises(SerializationError, match=expected) as info:
        dependent.result(timeout=30)
    assert time.monotonic() - start < 20
    assert info.value.__traceback__ is not None
    # the source itself is fine where it lives: its key is not reported lost
    assert source.status == "finished"


def test_gathering_a_value_that_cannot_be_pickled_says_why_not_that_it_is_lost(
    client: Client,
) -> None:
    future = client.submit(make_unpicklable, pure=False)
    with pytest.raises(SerializationError, match="cannot send the value of"):
        future.result(timeout=30)
    assert future.status == "finished"  # it exists where it lives: not lost
