"""shoal: a fast, safe-by-default distributed task-execution system for Python.

Public names are imported lazily, so ``import shoal.protocol`` (as worker processes and
the scheduler do) does not pull in the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shoal._version import __version__

if TYPE_CHECKING:  # what type checkers see of the lazy names the client side uses most
    from shoal.client import Client as Client
    from shoal.client import Future as Future
    from shoal.client.actor import Actor as Actor
    from shoal.client.actor import ActorFuture as ActorFuture
    from shoal.client.as_completed import as_completed as as_completed
    from shoal.client.as_completed import wait as wait
    from shoal.client.default import default_client as default_client
    from shoal.client.future import futures_of as futures_of
    from shoal.client.primitives import fire_and_forget as fire_and_forget
    from shoal.cluster import LocalCluster as LocalCluster
    from shoal.comm import Security as Security
    from shoal.worker.context import get_client as get_client

_PUBLIC = {
    "Client": "shoal.client",
    "Future": "shoal.client",
    "as_completed": "shoal.client",
    "wait": "shoal.client",
    "LocalCluster": "shoal.cluster",
    "SSHCluster": "shoal.deploy",
    "SLURMCluster": "shoal.deploy",
    "PBSCluster": "shoal.deploy",
    "Security": "shoal.comm",
    "progress": "shoal.progressbar",
    "get_client": "shoal.worker.context",
    "get_worker": "shoal.worker.context",
    "secede": "shoal.worker.context",
    "rejoin": "shoal.worker.context",
    "worker_client": "shoal.worker.context",
    "default_client": "shoal.client.default",
    "futures_of": "shoal.client.future",
    "fire_and_forget": "shoal.client.primitives",
    "Lock": "shoal.client.primitives",
    "MultiLock": "shoal.client.primitives",
    "Semaphore": "shoal.client.primitives",
    "Event": "shoal.client.primitives",
    "Queue": "shoal.client.primitives",
    "Variable": "shoal.client.primitives",
    "Actor": "shoal.client.actor",
    "ActorFuture": "shoal.client.actor",
    "Reschedule": "shoal.errors",
    "KilledWorker": "shoal.errors",
    "CancelledError": "shoal.errors",
    # dask's TimeoutError is the builtin one; every shoal timeout is one too
    "TimeoutError": "builtins",
    "Scheduler": "shoal.scheduler.server",
    "Worker": "shoal.worker.server",
    "Nanny": "shoal.nanny",
    "print": "shoal.client.remote_output",
    "warn": "shoal.client.remote_output",
    # plugins and reports (issue 15, items 4-5)
    "performance_report": "shoal.client.report",
    "get_task_stream": "shoal.client.report",
    "WorkerPlugin": "shoal.plugins",
    "SchedulerPlugin": "shoal.plugins",
    "NannyPlugin": "shoal.plugins",
    "UploadFile": "shoal.plugins",
    "UploadDirectory": "shoal.plugins",
    "PipInstall": "shoal.plugins",
    "Environ": "shoal.plugins",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
