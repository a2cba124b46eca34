"""The same short programs on shoal and on dask.distributed (in-process, to keep it light),
with the same results: plugins, upload_file, run options, events, metadata, signatures,
as_completed, configuration and performance_report.

Each program gets an ``Engine``: the library's ``Client``, its plugin base class and
``performance_report``, and a cluster of one in-process worker. Where the two differ in
an attribute name (not in behaviour), the program reads both.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import distributed
import pytest


@dataclass
class Engine:
    name: str
    client: Any
    worker_plugin: type
    performance_report: Callable[..., Any]
    as_completed: Callable[..., Any]


def _shoal_engine() -> Iterator[Engine]:
    import shoal

    with (
        shoal.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        shoal.Client(cluster, set_as_default=True) as client,
    ):
        yield Engine(
            "shoal",
            client,
            shoal.WorkerPlugin,
            shoal.performance_report,
            shoal.as_completed,
        )


def _dask_engine() -> Iterator[Engine]:

    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster, set_as_default=True) as client,
    ):
        yield Engine(
            "dask",
            client,
            distributed.WorkerPlugin,
            distributed.performance_report,
            distributed.as_completed,
        )


@pytest.fixture(params=["shoal", "dask"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    make = _shoal_engine if request.param == "shoal" else _dask_engine
    with dask.config.set({"distributed.worker.memory.target": 0.42}):
        yield from make()


def inc(x: int) -> int:
    return x + 1


def kwargs_of(*args: Any, **kwargs: Any) -> list[str]:
    return sorted(kwargs)


def test_worker_plugin_setup(engine: Engine) -> None:
    class Tagger(engine.worker_plugin):  # type: ignore[name-defined, misc]
        name = "tagger"

        def setup(self, worker: Any) -> None:
            worker.compat_tag = "tagged"

    engine.client.register_plugin(Tagger())
    assert list(engine.client.run(read_tag).values()) == ["tagged"]
    assert engine.client.submit(inc, 1, key="compat-inc").result() == 2
    engine.client.unregister_worker_plugin("tagger")


def read_tag(dask_worker: Any) -> str:
    return str(dask_worker.compat_tag)


def test_upload_file_then_import_in_tasks(engine: Engine, tmp_path: Path) -> None:
    module = tmp_path / f"compat_mod_{engine.name}.py"
    module.write_text("def triple(x):\n    return 3 * x\n")
    engine.client.upload_file(str(module))
    futures = engine.client.map(use_uploaded, [module.stem] * 3, [1, 2, 3], pure=False)
    assert engine.client.gather(futures) == [3, 6, 9]
    sys.modules.pop(module.stem, None)


def use_uploaded(name: str, x: int) -> int:
    import importlib

    return int(importlib.import_module(name).triple(x))


def test_run_options(engine: Engine) -> None:
    client = engine.client
    assert list(client.run(worker_name_type).values()) == ["str"]
    assert list(client.run(async_double, 21).values()) == [42]
    returned = client.run(divide_by_zero, on_error="return")
    assert [type(v).__name__ for v in returned.values()] == ["ZeroDivisionError"]
    assert client.run(divide_by_zero, on_error="ignore") == {}
    assert client.run(async_double, 1, wait=False) is None  # dask: coroutines only
    assert list(client.run(kwargs_of, mine=1, wait=True).values()) == [["mine"]]


def worker_name_type(dask_worker: Any) -> str:
    return type(str(dask_worker.address)).__name__


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def divide_by_zero() -> float:
    return 1 / 0


def test_events_and_metadata(engine: Engine) -> None:
    client = engine.client
    client.log_event("compat", {"a": [1, 2]})
    assert [msg for _, msg in client.get_events("compat")] == [{"a": [1, 2]}]
    client.set_metadata(["x", "y"], [1, 2])
    assert client.get_metadata("x") == {"y": [1, 2]}
    assert client.get_metadata(["x", "nope"], default=5) == 5


def test_dask_keywords_never_reach_the_function(engine: Engine) -> None:
    client = engine.client
    options = {"fifo_timeout": "1s", "retries": 1, "priority": 2, "pure": False}
    assert client.submit(kwargs_of, mine=1, **options).result() == ["mine"]
    futures = client.map(kwargs_of, [1, 2], mine=1, batch_size=1, **options)
    assert client.gather(futures) == [["mine"], ["mine"]]
    assert client.compute(dask.delayed(kwargs_of)(mine=1), sync=True) == ["mine"]


def test_as_completed_batches_and_timeout(engine: Engine) -> None:
    client = engine.client
    futures = client.map(inc, range(5))
    results = sorted(f.result() for batch in engine.as_completed(futures).batches() for f in batch)
    assert results == [1, 2, 3, 4, 5]
    pending = client.submit(time.sleep, 5, pure=False)
    with pytest.raises(TimeoutError):
        next(iter(engine.as_completed([pending], timeout=0.2)))
    client.cancel([pending])


def memory_target(dask_worker: Any) -> float:
    manager = getattr(dask_worker, "memory_manager", dask_worker)  # dask keeps it there
    return float(manager.memory_target_fraction)


def test_distributed_config_keys_are_honoured(engine: Engine) -> None:
    assert list(engine.client.run(memory_target).values()) == [0.42]


def test_scheduler_info_fields(engine: Engine) -> None:
    info = engine.client.scheduler_info()
    assert info["n_workers"] == 1 and info["total_threads"] >= 1
    assert {"host", "id", "last_seen", "type"} <= set(next(iter(info["workers"].values())))


def test_performance_report_writes_html(engine: Engine, tmp_path: Path) -> None:
    if engine.name == "dask":
        pytest.importorskip("bokeh", reason="dask's performance_report needs bokeh")
    target = tmp_path / "report.html"
    with engine.performance_report(filename=str(target)):
        engine.client.gather(engine.client.map(inc, range(10)))
    text = target.read_text()
    assert text.lstrip().lower().startswith("<!doctype html") and "</html>" in text.lower()
