"""Small shared type aliases. Pure: imported by every layer."""

from __future__ import annotations

from typing import Literal, TypeAlias

#: A task key: a string, or a (possibly nested) tuple of strings and ints as dask makes them.
Key: TypeAlias = "str | tuple[object, ...]"
#: A transport address such as ``tcp://127.0.0.1:8786`` or ``inproc://1234/5``.
Address: TypeAlias = str
#: Identifies what caused a change; follows the change into every effect and log line.
StimulusId: TypeAlias = str

WorkerTaskStateName = Literal[
    "released",
    "waiting",
    "ready",
    "constrained",
    "executing",
    "long-running",
    "memory",
    "error",
    "fetch",
    "flight",
    "missing",
    "cancelled",
    "forgotten",
]

SchedulerTaskStateName = Literal[
    "released",
    "waiting",
    "queued",
    "no-worker",
    "processing",
    "memory",
    "erred",
    "forgotten",
]
