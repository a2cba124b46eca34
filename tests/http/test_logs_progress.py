"""Logs kept by each server and read through the client; ``shoal.progress``."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

import shoal
from shoal.client import Client, wait
from shoal.cluster import LocalCluster
from shoal.logs import MemoryLogHandler, setup_logging
from shoal.progressbar import futures_in, progress


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


@pytest.fixture
def restore_shoal_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("shoal")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield logger
    logger.level, logger.propagate = saved[0], saved[2]
    logger.handlers[:] = saved[1]


def test_memory_handler_keeps_the_last_records_of_its_components() -> None:
    handler = MemoryLogHandler(maxlen=3).attach(["shoal.test-a"])
    logger = logging.getLogger("shoal.test-a.child")
    logger.setLevel(logging.INFO)
    try:
        for i in range(5):
            logger.info("record %d", i)
        logging.getLogger("shoal.test-b").warning("not ours")
    finally:
        handler.detach()
        logger.setLevel(logging.NOTSET)
    logger.warning("after detach")
    assert [r[3] for r in handler.tail()] == ["record 2", "record 3", "record 4"]
    assert handler.tail(1)[0][1:] == ("INFO", "shoal.test-a.child", "record 4")
    assert handler.tail(0) == []


def test_setup_logging_names_the_component_once(restore_shoal_logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_logging("warning", stream)
    setup_logging("info", stream)  # again: one handler, the new level
    logging.getLogger("shoal.scheduler").info("hello %s", "there")
    logging.getLogger("shoal.worker").debug("not shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert " shoal.scheduler INFO hello there" in lines[0]


def test_client_reads_scheduler_and_worker_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shoal")
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        [worker] = cluster.workers
        scheduler_logs = client.get_scheduler_logs()
        assert (
            "shoal.scheduler",
            f"worker {worker.address} joined (1 threads)",
        ) in [(r[2], r[3]) for r in scheduler_logs]
        assert all(isinstance(r[0], float) for r in scheduler_logs)
        assert client.get_scheduler_logs(n=1) == scheduler_logs[-1:]
        logs = client.get_worker_logs()
        assert set(logs) == {worker.address}
        assert (
            "INFO",
            "shoal.worker",
            f"worker {worker.address} started with 1 threads",
        ) in [r[1:] for r in logs[worker.address]]
        assert (
            client.get_worker_logs(n=1, workers=worker.address)[worker.address]
            == (logs[worker.address][-1:])
        )


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def test_progress_is_the_public_name() -> None:
    assert shoal.progress is progress


def test_progress_shows_a_bar_until_every_future_is_done(client: Client) -> None:
    futures = client.map(inc, range(7))
    bad = client.submit(fail, 1)
    out = io.StringIO()
    progress({"ok": futures, "bad": [bad]}, file=out)
    assert all(f.done() for f in [*futures, bad])
    text = out.getvalue()
    assert "8/8" in text
    assert "erred=1" in text


def test_progress_counts_a_persisted_collection(client: Client) -> None:
    import dask

    values = [dask.delayed(inc)(i) for i in range(3)]
    persisted = client.persist(values)
    assert len(futures_in([persisted])) == 3
    out = io.StringIO()
    progress(persisted, file=out)
    assert "3/3" in out.getvalue()
    wait(futures_in([persisted]))


def test_progress_refuses_a_collection_that_holds_no_futures() -> None:
    import dask

    with pytest.raises(TypeError, match="persist it first"):
        progress(dask.delayed(inc)(1))
