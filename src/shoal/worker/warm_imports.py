"""The modules a worker imports before its first task.

A worker's event loop measures results with ``dask.sizeof`` while task threads unpickle
dask run specs (which import ``dask.utils``, ``dask._task_spec`` ...). Python's import lock
is per module: two threads importing the same package for the first time at once can see
it ``partially initialized`` and fail (a restarted worker erred with
``SerializationError: ... partially initialized module 'dask.utils'``). Importing them
once, on one thread, before any task runs removes the race.

Rules of this file:

* Called from ``Worker.start`` once the worker has registered and told its nanny (so it
  is up before dask is imported), on the thread that owns the event loop, before the
  scheduler stream handles a message: no task has run, so no task thread imports.
* A module that is not installed is skipped: dask is optional for plain ``submit`` work.
"""

from __future__ import annotations

import importlib

#: what task unpickling, running dask task specs and ``sizeof`` import on first use
TASK_MODULES = (
    "cloudpickle",
    "dask",
    "dask.utils",
    "dask.core",
    "dask.sizeof",
    "dask._task_spec",
    "dask.base",
    "dask.optimization",
    "dask.typing",
)


def import_task_modules(names: tuple[str, ...] = TASK_MODULES) -> list[str]:
    """Import ``names`` now; returns those that are installed and imported."""
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        imported.append(name)
    return imported
