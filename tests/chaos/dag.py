"""A seeded random DAG whose tasks return a digest of their key and inputs.

Rules of this file:

* ``chaos_task`` is the only function workers run: it records its execution in the
  ledger (one line per execution, in a file named after the worker's pid) and returns
  ``sha256(key | input digests)``; nothing else, so the oracle can recompute every value.
* The DAG depends only on ``(seed, n_tasks)``: the same arguments give the same graph on
  every machine, and the oracle (``oracle.py``) the same digests.
* Keys are strings ``"chaos-<i>"``; the task's own index travels as an ``int`` argument
  (a key string in a task tuple would be read as a dependency by dask).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass
from typing import Any

#: the ledger's directory in a worker process, set by the cluster fixture
LEDGER_ENV = "SHOAL_CHAOS_LEDGER"


def key_of(index: int) -> str:
    return f"chaos-{index}"


def digest(key: str, inputs: tuple[str, ...]) -> str:
    """The value of task ``key`` given its inputs' values (hex digests)."""
    h = hashlib.sha256(key.encode())
    for value in inputs:
        h.update(b"|")
        h.update(value.encode())
    return h.hexdigest()


def chaos_task(index: int, *inputs: str) -> str:
    """A DAG node: log the execution in the ledger, return the digest."""
    key = key_of(index)
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        with open(os.path.join(ledger, f"{os.getpid()}.log"), "a") as f:
            f.write(key + "\n")
    return digest(key, inputs)


def slow_chaos_task(seconds: float, index: int, *inputs: str) -> str:
    """``chaos_task`` that first waits ``seconds`` (a task that takes time, like real
    ones: the DAG then lasts long enough for the kill storm's pace)."""
    time.sleep(seconds)
    return chaos_task(index, *inputs)


@dataclass(frozen=True)
class Dag:
    """``deps[i]``: the indices task ``i`` reads (all smaller than ``i``)."""

    seed: int
    deps: tuple[tuple[int, ...], ...]
    #: how long each task takes besides its digest (seconds)
    task_seconds: float = 0.0

    @property
    def n_tasks(self) -> int:
        return len(self.deps)

    def sinks(self) -> list[str]:
        """Keys no task reads: computing them computes the whole DAG."""
        read = {d for deps in self.deps for d in deps}
        return [key_of(i) for i in range(self.n_tasks) if i not in read]

    def dask_graph(self) -> dict[str, Any]:
        if self.task_seconds:
            return {
                key_of(i): (slow_chaos_task, self.task_seconds, i, *(key_of(d) for d in deps))
                for i, deps in enumerate(self.deps)
            }
        return {
            key_of(i): (chaos_task, i, *(key_of(d) for d in deps))
            for i, deps in enumerate(self.deps)
        }


def random_dag(
    seed: int, n_tasks: int, width: int = 400, max_inputs: int = 3, task_seconds: float = 0.0
) -> Dag:
    """Layers of ``width`` tasks; each task reads 0..``max_inputs`` tasks of the layer
    before (and sometimes one further back), so results must travel between workers."""
    rng = random.Random(seed)
    deps: list[tuple[int, ...]] = []
    for i in range(n_tasks):
        layer = i // width
        if layer == 0:
            deps.append(())
            continue
        prev_start = (layer - 1) * width
        picks = {
            rng.randrange(prev_start, prev_start + width) for _ in range(rng.randint(1, max_inputs))
        }
        if layer >= 2 and rng.random() < 0.1:
            picks.add(rng.randrange(0, prev_start))
        deps.append(tuple(sorted(picks)))
    return Dag(seed=seed, deps=tuple(deps), task_seconds=task_seconds)
