"""The scheduler's rpcs that workers and nannies send: one struct each.

Apart from ``rpc_scheduler`` (which imports them, so they are found there too) because a
worker process imports this module at every start and the rest of the scheduler's rpcs
are built for nothing there (a dataclass costs about half a millisecond to build). See
``shoal.protocol.rpc_ops`` for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from shoal._types import Address, Key
from shoal.protocol.rpc_base import SCHEDULER, Rpc, _register
from shoal.protocol.serialize import Serialized


@_register
class SchedulerRegisterWorker(Rpc[Any], frozen=True, kw_only=True):
    """Opens the worker stream, as register-client; the fields describe the worker."""

    rpc: ClassVar[str] = "register-worker"
    role: ClassVar[str] = SCHEDULER
    address: Address
    nthreads: int
    name: str | int | None = None
    memory_limit: int = 0
    resources: Mapping[str, float] | None = None
    nanny: Address | None = None
    #: service name -> port (the dashboard's "http", ``services=``)
    services: Mapping[str, int] | None = None
    local_directory: str | None = None
    pid: int | None = None
    #: on a rejoin: ``[(key, nbytes), ...]`` it holds, and the keys it runs
    held: Sequence[Sequence[Any]] = ()
    running: Sequence[Key] = ()
    #: the worker plugins it has, pickled, by name (a restarted scheduler learns them)
    worker_plugins: Mapping[str, Serialized] | None = None


@_register
class SchedulerRetireWorkers(Rpc[dict[str, Sequence[Address]]], frozen=True, kw_only=True):
    """Retire ``workers`` (addresses)."""

    rpc: ClassVar[str] = "retire_workers"
    role: ClassVar[str] = SCHEDULER
    workers: Sequence[Address] = ()
    timeout: float = 120.0


@_register
class SchedulerWorkerDied(Rpc[Any], frozen=True, kw_only=True):
    """A nanny's report."""

    rpc: ClassVar[str] = "worker_died"
    role: ClassVar[str] = SCHEDULER
    address: Address | None
    nanny: Address
    reason: str
    #: (key, run_id) of the tasks it was running, read by the nanny after the death
    #: (None: not known; the scheduler then blames what it thinks ran)
    running: Sequence[tuple[Key, int]] | None = None
