"""Bad input from users: it raises in their hands, clearly, and breaks nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shoal import Client, LocalCluster
from shoal.errors import SerializationError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def raise_it(exc: BaseException) -> None:
    raise exc


def inc(x: int) -> int:
    return x + 1


@pytest.mark.parametrize("exc", [KeyboardInterrupt("stop"), SystemExit(3), GeneratorExit()])
def test_a_base_exception_errs_that_task_only(client: Client, exc: BaseException) -> None:
    bad = client.submit(raise_it, exc, pure=False)
    good = client.map(inc, range(20), pure=False)
    with pytest.raises(type(exc)):
        bad.result()
    assert client.gather(good) == list(range(1, 21))
    assert client.submit(inc, 1, pure=False).result() == 2  # the worker's thread survived


def test_an_unpicklable_argument_fails_at_submit(client: Client) -> None:
    with pytest.raises(SerializationError, match="lock"):
        client.submit(inc, threading.Lock())
    assert client.submit(inc, 41).result() == 42


def test_a_key_defined_differently_is_refused_by_name(client: Client) -> None:
    first = client.submit(inc, 1, key="my-key")
    assert first.result() == 2
    with pytest.raises(ValueError, match="my-key"):
        client.submit(raise_it, ValueError("other"), key="my-key").result()
    assert first.result() == 2
