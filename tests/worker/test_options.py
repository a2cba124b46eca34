"""Worker and Nanny constructors: the seed's parameters, typed; executors; what crosses
to a worker process."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shoal.cluster_options import WORKER_OPTIONS_ENV, nanny_arguments
from shoal.nanny import Nanny
from shoal.worker import options
from shoal.worker.server import Worker
from shoal.worker.task_threads import TaskThreads

#: the parameters the seed (worker-description.txt) names, and its informational state
#: that a user sets at construction
SEED_PARAMETERS = [
    "nthreads",
    "executor",
    "local_directory",
    "name",
    "services",
    "data",
    "memory_limit",
    "memory_target_fraction",
    "memory_spill_fraction",
    "memory_pause_fraction",
    "resources",
    "nanny",
    "lifetime",
    "lifetime_stagger",
    "lifetime_restart",
    "total_out_connections",
    "total_in_connections",
    "total_comm_nbytes",
]
ADDRESS = "tcp://127.0.0.1:9"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.runner.shutdown()
        worker._local_dir.release()


def make(workers: list[Worker], **kwargs: Any) -> Worker:
    worker = Worker(ADDRESS, http_port=None, **kwargs)
    workers.append(worker)
    return worker


@pytest.mark.parametrize("cls", [Worker, Nanny])
def test_every_seed_parameter_is_an_annotated_keyword(cls: type) -> None:
    params = inspect.signature(cls).parameters
    # a Nanny is its worker's nanny: it passes its own address, so takes no ``nanny=``
    expected = [p for p in SEED_PARAMETERS if not (cls is Nanny and p == "nanny")]
    for name in expected:
        assert name in params, f"{cls.__name__} lacks {name}"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].annotation is not inspect.Parameter.empty, name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # documented in Worker's docstring (the Nanny's refers to it)
    assert all(f"``{name}``" in (Worker.__init__.__doc__ or "") for name in expected)
    assert cls is Worker or "Worker" in (Nanny.__init__.__doc__ or "")


def test_a_misspelt_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="memory_target_fracton"):
        Worker(ADDRESS, memory_target_fracton=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="memory_target_fracton"):
        Nanny(ADDRESS, memory_target_fracton=0.5)  # type: ignore[call-arg]


def test_state_and_runner_exist_before_start(workers: list[Worker]) -> None:
    worker = make(workers, nthreads=3, resources={"GPU": 2})
    assert worker.state.nthreads == 3 and worker.state.available_resources == {"GPU": 2.0}
    assert worker.tasks == {} and worker.executing_count == 0
    assert isinstance(worker.executor, TaskThreads)
    assert worker.runner.executor is worker.executor


def test_fractions_durations_and_bytes_are_parsed(workers: list[Worker]) -> None:
    worker = make(
        workers,
        memory_limit="1GB",
        memory_target_fraction=False,
        memory_spill_fraction=0.5,
        lifetime="1 hour",
        lifetime_stagger="5 minutes",
        total_comm_nbytes="10MB",
        name=7,
    )
    cfg = worker.config
    assert (cfg.memory_target_fraction, cfg.memory_spill_fraction) == (None, 0.5)
    assert (cfg.lifetime, cfg.lifetime_stagger) == (3600.0, 300.0)
    assert cfg.total_comm_nbytes == 10_000_000 and cfg.name == "7"
    with pytest.raises(ValueError, match=r"memory_pause_fraction=1\.5"):
        make(workers, memory_pause_fraction=1.5)


def test_executor_options(workers: list[Worker]) -> None:
    mine = ThreadPoolExecutor(1)
    try:
        assert make(workers, executor=mine).executor is mine
        offload = make(workers, executor="offload").executor
        assert offload is options.offload_executor()
        named = make(workers, executor={"gpu": mine, "io": "threads"})
        assert named.executors["gpu"] is mine and set(named.executors) == {"gpu", "io", "default"}
        named.runner.shutdown()  # shuts what it made, never the user's executor
        assert mine.submit(int, "3").result(timeout=10) == 3
        with pytest.raises(ValueError, match="'processes'"):
            make(workers, executor="processes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Executor"):
            make(workers, executor=3)  # type: ignore[arg-type]
    finally:
        mine.shutdown()


class Store(dict[str, Any]):
    """An importable mapping class, with an argument."""

    def __init__(self, tag: str = "") -> None:
        super().__init__()
        self.tag = tag


def test_data_factory_with_arguments(workers: list[Worker]) -> None:
    worker = make(workers, data=(Store, {"tag": "x"}))
    assert isinstance(worker.data, Store) and worker.data.tag == "x"


class _Service:
    port = 1234

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def start_service(worker: Any) -> _Service:
    return _Service()


def test_services_are_started_and_stopped(workers: list[Worker]) -> None:
    worker = make(workers, services={"mine": start_service})

    async def main() -> _Service:
        await options.start_services(worker, worker._service_factories)
        service = worker.services["mine"]
        assert worker.service_ports["mine"] == 1234
        await worker._stop_http()
        return service

    assert asyncio.run(main()).stopped and worker.services == {}


def test_nanny_passes_options_without_flags_as_json() -> None:
    nanny = Nanny(
        ADDRESS,
        executor={"default": "threads", "one": "offload"},
        data=(Store, {"tag": "y"}),  # type: ignore[arg-type]
        services={"mine": start_service},
        memory_target_fraction=False,
        memory_spill_fraction=0.4,
        resources={"GPU": 1},
        nthreads=2,
        lifetime="1 hour",
    )
    sent = json.loads(nanny._environ()[WORKER_OPTIONS_ENV])
    assert sent["memory_target_fraction"] is False and sent["memory_spill_fraction"] == 0.4
    assert "memory_pause_fraction" not in sent  # not given: the worker reads dask.config
    back = options.from_process_options(sent)
    assert back["data"] == (Store, {"tag": "y"}) and back["services"]["mine"] is start_service
    assert back["executor"] == {"default": "threads", "one": "offload"}
    assert nanny.spec.resources == "GPU=1" and nanny.spec.lifetime == "1 hour"


def test_nanny_refuses_what_cannot_cross_with_the_reason() -> None:
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match="live executor"):
            Nanny(ADDRESS, executor=pool)
        with pytest.raises(TypeError, match="live executor"):
            Nanny(ADDRESS, executor={"gpu": pool})
    with pytest.raises(TypeError, match="live mapping"):
        Nanny(ADDRESS, data={})
    with pytest.raises(TypeError, match="importable"):
        Nanny(ADDRESS, data=lambda: {})
    with pytest.raises(TypeError, match=r"LocalCluster.*processes=False"):
        nanny_arguments({"data": {}})
