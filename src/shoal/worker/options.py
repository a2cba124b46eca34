"""The worker's constructor options (the seed's parameters), typed, and what they become.

``Worker`` and ``Nanny`` list these options as explicit keyword parameters; this module
holds their types, turns them into a ``WorkerConfig`` (applying dask.config where an
option was not given), into executors and services, and into the JSON a nanny hands its
worker process (``SHOAL_WORKER_OPTIONS``).

Rules of this file:

* No IO and no event loop: executors are made here, never started or waited on.
* "Not given" is explicit: ``FROM_CONFIG`` for the memory fractions (where ``None`` and
  ``False`` mean *off*), ``None`` for the other settings dask.config can supply.
* What cannot cross a process boundary (a live ``Executor``, a live mapping, a service
  object) is refused on the nanny's side with a ``TypeError`` that says what to give
  instead; an importable factory crosses as its import path.
"""

from __future__ import annotations

import enum
import functools
import importlib
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from shoal import inherited_settings
from shoal._types import Key
from shoal.config import WorkerConfig
from shoal.sizes import parse_bytes, parse_timedelta
from shoal.worker.task_threads import TaskThreads


class FromConfig(enum.Enum):
    """The default of an option whose ``None`` means something: read it from dask.config."""

    FROM_CONFIG = "from dask.config"

    def __repr__(self) -> str:
        return "FROM_CONFIG"


#: "not given: use dask.config" for options where None/False mean "off"
FROM_CONFIG = FromConfig.FROM_CONFIG

#: a memory fraction: a number, or ``False``/``None`` for off (dask spells off ``False``)
Fraction: TypeAlias = float | Literal[False] | None
#: names of executors, as users of dask know them: "offload" is a single thread shared
#: by the process's workers; "threads" and "default" are a pool of ``nthreads`` threads
ExecutorName: TypeAlias = Literal["default", "threads", "offload"]
#: an executor, a name, or named executors (tasks pick one with the ``executor``
#: annotation, ``dask.annotate(executor="gpu")``; "default" is used otherwise)
ExecutorOption: TypeAlias = Executor | ExecutorName | Mapping[str, Executor | ExecutorName] | None
#: a mapping for ``worker.data``, a factory of one, or (factory, keyword arguments)
DataFactory: TypeAlias = Callable[..., MutableMapping[Key, Any]]
DataOption: TypeAlias = (
    MutableMapping[Key, Any] | DataFactory | tuple[DataFactory, Mapping[str, Any]] | None
)
#: seconds, or text like "1 hour"
Duration: TypeAlias = str | float


class Service(Protocol):
    """An auxiliary server running on a worker (``worker.services[name]``)."""

    @property
    def port(self) -> int: ...

    async def stop(self) -> None: ...


#: makes and starts a service for a started worker: ``await factory(worker)``
ServiceFactory: TypeAlias = Callable[[Any], Awaitable[Service]]
#: name -> service factory (``worker.service_ports[name]`` is its port once started)
ServicesOption: TypeAlias = Mapping[str, ServiceFactory] | None

#: the one process-wide "offload" executor (dask's is a single thread, too)
_offload: ThreadPoolExecutor | None = None
#: threads beyond nthreads that seceded tasks may keep busy in a pool shoal makes
SPARE_THREADS = 512


def _fraction(name: str, value: Fraction) -> float | None:
    if value is None or value is False:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"Worker({name}={value!r}): a fraction from 0 to 1, or False for off")
    return float(value)


def worker_config(
    *,
    memory_limit: int,
    memory_target_fraction: Fraction | FromConfig,
    memory_spill_fraction: Fraction | FromConfig,
    memory_pause_fraction: Fraction | FromConfig,
    lifetime: Duration | None,
    lifetime_stagger: Duration | None,
    local_directory: str | os.PathLike[str] | None,
    resources: Mapping[str, float] | None,
    **given: Any,
) -> WorkerConfig:
    """The ``WorkerConfig`` of these arguments over dask.config's settings."""
    explicit: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    explicit["memory_limit"] = memory_limit
    for name, fraction in (
        ("memory_target_fraction", memory_target_fraction),
        ("memory_spill_fraction", memory_spill_fraction),
        ("memory_pause_fraction", memory_pause_fraction),
    ):
        if fraction is not FROM_CONFIG:
            explicit[name] = _fraction(name, fraction)
    for name, duration in (("lifetime", lifetime), ("lifetime_stagger", lifetime_stagger)):
        if duration is not None:
            explicit[name] = parse_timedelta(duration)
    if local_directory is not None:
        explicit["local_directory"] = os.fspath(local_directory)
    explicit["resources"] = {k: float(v) for k, v in (resources or {}).items()}
    if "total_comm_nbytes" in explicit:
        explicit["total_comm_nbytes"] = parse_bytes(explicit["total_comm_nbytes"])
    if "name" in explicit:
        explicit["name"] = str(explicit["name"])
    base = inherited_settings.start_setting(inherited_settings.WORKER)
    return WorkerConfig(**inherited_settings.with_settings(base, explicit))


# -- executors --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Executors:
    """The worker's executors by name ("default" always there) and which ones it made
    (only those are shut down when it closes: an executor given by the user is theirs)."""

    by_name: dict[str, Executor]
    owned: frozenset[str]

    @property
    def default(self) -> Executor:
        return self.by_name["default"]

    def shutdown(self) -> None:
        for name in self.owned:
            self.by_name[name].shutdown(wait=False, cancel_futures=True)


def offload_executor() -> ThreadPoolExecutor:
    """The process's single-thread "offload" executor (made on first use, never shut)."""
    global _offload
    if _offload is None:
        _offload = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-offload")
    return _offload


def make_executors(executor: ExecutorOption, nthreads: int) -> Executors:
    """Executors from the ``executor=`` option: an Executor, a name, or named ones."""
    named: Mapping[str, Executor | str]
    if executor is None or isinstance(executor, str | Executor):
        named = {"default": executor if executor is not None else "default"}
    elif isinstance(executor, Mapping):
        named = dict(executor)
    else:
        raise TypeError(
            f"Worker(executor={executor!r}): give a concurrent.futures.Executor, one of "
            '"default", "threads", "offload", or a dict of those by name'
        )
    by_name: dict[str, Executor] = {}
    owned: set[str] = set()
    for name, spec in named.items():
        if isinstance(spec, Executor):
            by_name[name] = spec
        elif spec in ("default", "threads"):
            by_name[name] = TaskThreads(nthreads + SPARE_THREADS, f"shoal-task-{name}")
            owned.add(name)
        elif spec == "offload":
            by_name[name] = offload_executor()
        else:
            raise ValueError(
                f"Worker(executor=...): unknown executor {spec!r} for {name!r}; "
                'names are "default", "threads" and "offload"'
            )
    if "default" not in by_name:
        by_name["default"] = TaskThreads(nthreads + SPARE_THREADS, "shoal-task")
        owned.add("default")
    return Executors(by_name, frozenset(owned))


# -- data and services ---------------------------------------------------------------------------
def data_factory(
    data: DataOption,
) -> MutableMapping[Key, Any] | Callable[[], MutableMapping[Key, Any]] | None:
    """``data=`` as a mapping or a factory without arguments ((factory, kwargs) bound)."""
    if isinstance(data, tuple):
        factory, kwargs = data
        return functools.partial(factory, **kwargs)
    return data


async def start_services(worker: Any, factories: Mapping[str, ServiceFactory]) -> None:
    """Start the ``services=`` of a started worker into ``worker.services`` and
    ``worker.service_ports``."""
    for name, factory in factories.items():
        if name in worker.services:
            raise ValueError(f"Worker(services=...): the name {name!r} is taken")
        service = await factory(worker)
        worker.services[name] = service
        worker.service_ports[name] = service.port


# -- what crosses to a worker process ------------------------------------------------------------
#: options a nanny hands its worker process as JSON (the CLI has no flags for them)
PROCESS_OPTIONS = (
    "executor",
    "services",
    "data",
    "memory_target_fraction",
    "memory_spill_fraction",
    "memory_pause_fraction",
    "total_out_connections",
    "total_in_connections",
    "total_comm_nbytes",
    "heartbeat_interval",
)


def import_path(obj: object, option: str) -> str:
    """``"package.module:Name"`` of an importable function or class, else a TypeError."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise TypeError(
            f"Nanny({option}=...): {obj!r} cannot cross to the worker process; give an "
            "importable function or class (defined at the top of a module, not in __main__)"
        )
    return f"{module}:{qualname}"


def load_import_path(path: str) -> Any:
    """The object named by ``"package.module:Name"``."""
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _executor_for_process(executor: ExecutorOption) -> Any:
    def one(spec: object, where: str) -> str:
        if isinstance(spec, str):
            return spec
        raise TypeError(
            f"Nanny(executor={where}{spec!r}): a live executor cannot cross to the worker "
            'process; give a name ("default", "threads", "offload")'
        )

    if isinstance(executor, Mapping):
        return {name: one(spec, f"{{{name!r}: ...}} ") for name, spec in executor.items()}
    return one(executor, "")


def _data_for_process(data: DataOption) -> Any:
    if isinstance(data, tuple):
        factory, kwargs = data
        return {"import": import_path(factory, "data"), "kwargs": dict(kwargs)}
    if isinstance(data, MutableMapping):
        raise TypeError(
            "Nanny(data=...): a live mapping cannot cross to the worker process; give an "
            "importable factory (a class or function), or (factory, kwargs)"
        )
    return {"import": import_path(data, "data"), "kwargs": {}}


def process_options(**options: Any) -> dict[str, Any]:
    """The JSON-ready form of the ``PROCESS_OPTIONS`` given (None and FROM_CONFIG: left out)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value is FROM_CONFIG:
            continue
        if name == "executor":
            value = _executor_for_process(value)
        elif name == "data":
            value = _data_for_process(value)
        elif name == "services":
            value = {k: import_path(v, "services") for k, v in value.items()}
        out[name] = value
    return out


def from_process_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Worker keyword arguments from ``process_options``' JSON (import paths loaded)."""
    out = dict(options)
    data = out.get("data")
    if isinstance(data, Mapping) and "import" in data:
        out["data"] = (load_import_path(str(data["import"])), dict(data.get("kwargs") or {}))
    services = out.get("services")
    if isinstance(services, Mapping):
        out["services"] = {
            name: load_import_path(path) if isinstance(path, str) else path
            for name, path in services.items()
        }
    return out


__all__ = [
    "FROM_CONFIG",
    "PROCESS_OPTIONS",
    "DataOption",
    "Duration",
    "ExecutorName",
    "ExecutorOption",
    "Executors",
    "Fraction",
    "FromConfig",
    "Service",
    "ServiceFactory",
    "ServicesOption",
    "data_factory",
    "from_process_options",
    "import_path",
    "make_executors",
    "process_options",
    "start_services",
    "worker_config",
]
