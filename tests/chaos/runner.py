"""Run a DAG on a cluster and check it against the oracle; print the scenario's figures.

Rules of this file:

* A run passes only if every sink's value equals the oracle's and the watchdog never
  fired; its figures (executions / tasks, wall time, faults) are printed as one
  ``CHAOS`` line, so CI logs carry them (``pytest -s`` or the captured output).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal._types import Key
from shoal.client.collections import submit_graph
from shoal.graph.dask import materialize
from tests.chaos import ledger
from tests.chaos.dag import Dag
from tests.chaos.oracle import combined, oracle_values
from tests.chaos.watchdog import Watchdog

#: wall seconds of fault-free runs, by (seed, n_tasks), measured in this session
FAULT_FREE_WALL: dict[tuple[int, int, float], float] = {}


@dataclass
class RunResult:
    scenario: str
    n_tasks: int
    wall: float
    executions: int
    max_per_key: int
    missing: list[str]
    faults: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.executions / self.n_tasks

    def line(self, baseline: float | None) -> str:
        vs = f" fault_free_wall={baseline:.1f}s x{self.wall / baseline:.2f}" if baseline else ""
        faults = " ".join(f"{k}={v}" for k, v in self.faults.items())
        return (
            f"CHAOS {self.scenario}: tasks={self.n_tasks} executions={self.executions} "
            f"ratio={self.ratio:.2f} max_per_key={self.max_per_key} wall={self.wall:.1f}s"
            f"{vs} {faults}"
        )


def run_dag(
    client: Any,
    dag: Dag,
    ledger_dir: Path,
    scenario: str,
    timeout: float,
    tick: Callable[[], None] | None = None,
    stall: float = 15.0,
) -> RunResult:
    """Compute ``dag``'s sinks; assert they match the oracle; the run's figures."""
    sinks = dag.sinks()
    expected = oracle_values(dag)
    start = time.monotonic()
    futures = submit_graph(client, materialize(dag.dask_graph()), list[Key](sinks), {})
    Watchdog(client, ledger_dir, stall).wait(futures, timeout, tick)
    values = dict(zip(sinks, client.gather(futures), strict=True))
    wall = time.monotonic() - start
    del futures
    assert combined(values, sinks) == combined(expected, sinks), (
        f"{scenario}: wrong answer: "
        f"{[k for k in sinks if values[k] != expected[k]][:5]} differ from the oracle"
    )
    counts = ledger.executions(ledger_dir)
    result = RunResult(
        scenario=scenario,
        n_tasks=dag.n_tasks,
        wall=wall,
        executions=sum(counts.values()),
        max_per_key=max(counts.values(), default=0),
        missing=[k for k in expected if k not in counts][:5],
    )
    assert not result.missing, f"{scenario}: never executed: {result.missing}"
    return result


@contextmanager
def figures_on_failure(scenario: str, ledger_dir: Path, faults: dict[str, Any]) -> Iterator[None]:
    """If the block fails, print the figures so far (a failed run is a figure too)."""
    start = time.monotonic()
    try:
        yield
    except BaseException as exc:
        figures = " ".join(f"{k}={v}" for k, v in faults.items())
        print(
            f"CHAOS {scenario} FAILED after {time.monotonic() - start:.1f}s: "
            f"executions={sum(ledger.executions(ledger_dir).values())} {figures} "
            f"error={type(exc).__name__}: {str(exc)[:300]}",
            flush=True,
        )
        raise


def report(result: RunResult, seed: int) -> None:
    baseline = next(
        (w for (s, n, _), w in FAULT_FREE_WALL.items() if (s, n) == (seed, result.n_tasks)), None
    )
    print(result.line(baseline), flush=True)
