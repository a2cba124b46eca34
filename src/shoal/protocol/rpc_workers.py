"""The rpcs of workers and nannies: one struct each.

See ``shoal.protocol.rpc_ops`` for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from shoal._types import Key
from shoal.protocol.rpc_base import NANNY, WORKER, AddPlugin, ByName, Rpc, RunFunction, _register
from shoal.protocol.serialize import Serialized

# -- worker --------------------------------------------------------------------------------


@_register
class WorkerActorAttribute(Rpc[Serialized], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "actor_attribute"
    role: ClassVar[str] = WORKER
    actor: Key
    attribute: str


@_register
class WorkerActorExecute(Rpc[Serialized], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "actor_execute"
    role: ClassVar[str] = WORKER
    actor: Key
    function: str
    args: Serialized


@_register
class WorkerCallStack(Rpc[Any], frozen=True, kw_only=True):
    """The formatted stack of each running task (of ``keys``, or all)."""

    rpc: ClassVar[str] = "call_stack"
    role: ClassVar[str] = WORKER
    keys: Sequence[Key] | None = None


@_register
class WorkerClose(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "close"
    role: ClassVar[str] = WORKER
    reason: str = ""


@_register
class WorkerGetData(Rpc[dict[str, Any]], frozen=True, kw_only=True):
    """-> ``{"status": "OK", "data": {key: Serialized}, "nbytes"}`` or ``{"status": "busy"}``."""

    rpc: ClassVar[str] = "get_data"
    role: ClassVar[str] = WORKER
    keys: Sequence[Key]
    who: str | None = None
    shm: str | None = None


@_register
class WorkerGetLogs(Rpc[list[Any]], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "get_logs"
    role: ClassVar[str] = WORKER
    n: int = 1000


@_register
class WorkerKeys(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "keys"
    role: ClassVar[str] = WORKER


@_register
class WorkerPluginAdd(AddPlugin[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "plugin_add"
    role: ClassVar[str] = WORKER


@_register
class WorkerPluginRemove(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "plugin_remove"
    role: ClassVar[str] = WORKER


@_register
class WorkerProfile(Rpc[Any], frozen=True, kw_only=True):
    """The sampling profile between ``start`` and ``stop`` (all kept, by default)."""

    rpc: ClassVar[str] = "profile"
    role: ClassVar[str] = WORKER
    start: float | None = None
    stop: float | None = None
    key: Any = None


@_register
class WorkerRun(RunFunction[Any], frozen=True, kw_only=True):
    """``Client.run``."""

    rpc: ClassVar[str] = "run"
    role: ClassVar[str] = WORKER


@_register
class WorkerStory(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "story"
    role: ClassVar[str] = WORKER
    keys: Sequence[Key]


@_register
class WorkerUpdateData(Rpc[dict[str, Any]], frozen=True, kw_only=True):
    """Store these values -> ``{"nbytes": {...}, "type_names": {...}}``."""

    rpc: ClassVar[str] = "update_data"
    role: ClassVar[str] = WORKER
    data: Mapping[Key, Serialized]


@_register
class WorkerVersions(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "versions"
    role: ClassVar[str] = WORKER
    packages: Sequence[str] | None = None


# -- nanny ---------------------------------------------------------------------------------


@_register
class NannyKill(Rpc[Any], frozen=True, kw_only=True):
    """Stop the worker."""

    rpc: ClassVar[str] = "kill"
    role: ClassVar[str] = NANNY


@_register
class NannyPluginAdd(AddPlugin[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "plugin_add"
    role: ClassVar[str] = NANNY


@_register
class NannyPluginRemove(ByName[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "plugin_remove"
    role: ClassVar[str] = NANNY


@_register
class NannyRestart(Rpc[Any], frozen=True, kw_only=True):
    """Stop the worker and start a fresh one."""

    rpc: ClassVar[str] = "restart"
    role: ClassVar[str] = NANNY


@_register
class NannyRun(RunFunction[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "run"
    role: ClassVar[str] = NANNY


@_register
class NannyTerminate(Rpc[Any], frozen=True, kw_only=True):
    """Stop the worker and close the nanny."""

    rpc: ClassVar[str] = "terminate"
    role: ClassVar[str] = NANNY


@_register
class NannyWorkerClosing(Rpc[Any], frozen=True, kw_only=True):
    """The worker ``pid`` is closing on request and will exit with ``exit_code``."""

    rpc: ClassVar[str] = "worker_closing"
    role: ClassVar[str] = NANNY
    pid: int
    exit_code: int = 0


@_register
class NannyWorkerReady(Rpc[Any], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "worker_ready"
    role: ClassVar[str] = NANNY
    address: str
    pid: int
    local_directory: str | None = None
    #: the worker's running-keys file (``shoal.worker.running``); the nanny answers
    #: "mapped" once it reads it, and the worker then stops sending ``task-started``
    running_file: str | None = None
