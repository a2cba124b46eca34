"""Prometheus metrics of the scheduler and of each worker, computed when scraped.

Rules of this file:

* Custom collectors read the live state at scrape time: nothing is counted twice and the
  hot path pays nothing. Each server has its own ``CollectorRegistry`` (never the global
  one, so that several servers in one process each report their own numbers).
* Names follow ``shoal_<subsystem>_<name>`` with Prometheus units and suffixes
  (``_bytes``, ``_seconds``, ``_total``).
* Totals summed over workers (transferred bytes) drop when a worker leaves; Prometheus
  treats that as a counter reset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from shoal.http import views
from shoal.http.service import LoopLagMonitor

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler
    from shoal.worker.server import Worker

#: scheduler task states always reported, even at zero
SCHEDULER_TASK_STATES = (
    "released", "waiting", "queued", "no-worker", "processing", "memory", "erred",
)  # fmt: skip
MEMORY_TYPES = ("managed", "spilled", "unmanaged")

__all__ = [
    "CONTENT_TYPE_LATEST",
    "SchedulerCollector",
    "WorkerCollector",
    "registry_for",
    "render",
]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _loop_metrics(prefix: str, lag: LoopLagMonitor) -> Iterator[Metric]:
    yield _gauge(f"{prefix}_event_loop_lag_seconds", "Latest event-loop lag.", lag.last)
    yield _gauge(
        f"{prefix}_event_loop_lag_maximum_seconds",
        "Largest event-loop lag since the previous scrape.",
        lag.take_maximum(),
    )


def _memory_family(prefix: str, memory: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        f"{prefix}_memory_bytes", "Memory by kind (managed, spilled, unmanaged).", labels=["type"]
    )
    for kind in MEMORY_TYPES:
        family.add_metric([kind], memory.get(kind, 0))
    return family


def _transfer_families(prefix: str, totals: dict[str, int]) -> Iterator[Metric]:
    nbytes = CounterMetricFamily(
        f"{prefix}_transfer_bytes", "Bytes moved between peers.", labels=["direction"]
    )
    count = CounterMetricFamily(
        f"{prefix}_transfers", "Transfers between peers.", labels=["direction"]
    )
    for direction in ("incoming", "outgoing"):
        nbytes.add_metric([direction], totals.get(f"{direction}_bytes", 0))
        count.add_metric([direction], totals.get(f"{direction}_count", 0))
    yield nbytes
    yield count


class SchedulerCollector:
    """The cluster as the scheduler sees it."""

    def __init__(self, scheduler: Scheduler, lag: LoopLagMonitor) -> None:
        self.scheduler = scheduler
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        s = self.scheduler
        p = "shoal_scheduler"
        tasks = GaugeMetricFamily(f"{p}_tasks", "Tasks by state.", labels=["state"])
        counts = s.state.n_tasks_by_state()
        for state in sorted(set(SCHEDULER_TASK_STATES) | set(counts)):
            tasks.add_metric([state], counts.get(state, 0))
        yield tasks
        yield _counter(f"{p}_tasks_finished", "Tasks finished.", s.task_stream.n_finished)
        yield from self._workers()
        yield _gauge(f"{p}_clients", "Connected clients.", len(s.client_streams))
        yield from _loop_metrics(p, self.lag)
        counters = s.counters
        yield _counter(f"{p}_workers_added", "Workers that joined.", counters.workers_added)
        yield _counter(f"{p}_workers_removed", "Workers that left.", counters.workers_removed)
        yield _counter(
            f"{p}_workers_lost", "Workers that left without a goodbye.", counters.workers_lost
        )
        yield _counter(
            f"{p}_worker_restarts",
            "Workers that joined under the name of a worker that had left.",
            counters.restarts,
        )
        yield _counter(
            f"{p}_worker_reconnects",
            "Workers that registered again holding results (after an outage).",
            s.worker_reconnects,
        )
        yield _counter(
            f"{p}_client_reconnects", "Clients that came back after an outage.", s.client_reconnects
        )
        yield _counter(
            f"{p}_fenced_events",
            "Messages ignored: from an old worker incarnation or a removed worker.",
            s.state.fenced_events,
        )

    def _workers(self) -> Iterator[Metric]:
        p = "shoal_scheduler"
        rows = views.workers(self.scheduler)
        by_status = GaugeMetricFamily(f"{p}_workers", "Workers by status.", labels=["status"])
        for status, n in sorted(Counter(w["status"] for w in rows).items()):
            by_status.add_metric([status], n)
        yield by_status
        yield _gauge(f"{p}_threads", "Threads over all workers.", sum(w["nthreads"] for w in rows))
        memory = {kind: sum(w["memory"][kind] for w in rows) for kind in MEMORY_TYPES}
        yield _memory_family(p, memory)
        yield _gauge(
            f"{p}_memory_limit_bytes",
            "Memory limits over all workers (0: none).",
            sum(w["memory_limit"] for w in rows),
        )
        totals: dict[str, int] = Counter()
        for w in rows:
            totals.update(w["transfer"])
        yield from _transfer_families(p, totals)


class WorkerCollector:
    """One worker: its tasks, threads, memory, transfers and loop."""

    def __init__(self, worker: Worker, lag: LoopLagMonitor) -> None:
        self.worker = worker
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        p = "shoal_worker"
        tasks = GaugeMetricFamily(f"{p}_tasks", "Tasks by state.", labels=["state"])
        for state, n in sorted(Counter(ts.state for ts in w.state.tasks.values()).items()):
            tasks.add_metric([state], n)
        yield tasks
        yield _gauge(f"{p}_threads", "Threads running tasks.", w.nthreads)
        yield _counter(f"{p}_tasks_executed", "Tasks run here.", w.state.executed_count)
        metrics: dict[str, Any] = w.metrics()
        yield _memory_family(p, views.memory_of(metrics))
        yield _gauge(f"{p}_memory_limit_bytes", "Memory limit (0: none).", w.memory_limit or 0)
        transfers = w.transfer_log
        yield from _transfer_families(
            p,
            {
                "incoming_bytes": transfers.incoming_bytes,
                "incoming_count": transfers.incoming_count,
                "outgoing_bytes": transfers.outgoing_bytes,
                "outgoing_count": transfers.outgoing_count,
            },
        )
        yield from _loop_metrics(p, self.lag)


def registry_for(collector: SchedulerCollector | WorkerCollector) -> CollectorRegistry:
    """A registry of this server's own (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
