"""What the scheduler's JSON API and live page show, computed from the scheduler's state.

Rules of this file:

* Read only. Nothing here changes the scheduler; every function is a plain read of
  ``scheduler.state`` (the pure ``SchedulerState``), ``worker_extra`` (heartbeat metrics)
  and ``task_stream``, and returns JSON-ready data.
* Cost is bounded per call: per-worker work is O(workers); the prefix summary is one pass
  over the live tasks; stream slices are capped.
* Memory per worker: ``managed`` is what the worker holds (in memory), ``spilled`` what it
  moved to disk, ``unmanaged`` the rest of its process memory (RSS minus managed).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shoal._types import Key
from shoal.graph.keys import key_split

if TYPE_CHECKING:
    from shoal.scheduler.server import Scheduler

#: task states shown as "waiting" in a progress bar (not yet handed to a worker)
WAITING_STATES = frozenset({"released", "waiting", "queued", "no-worker"})
#: running keys listed per worker, at most
MAX_RUNNING_SHOWN = 8


def key_text(key: Key) -> str:
    """A key as the page shows it (tuple keys as their repr)."""
    return key if isinstance(key, str) else repr(key)


def parse_key(text: str) -> Key:
    """The key a URL names: the text itself, or a tuple written as its repr."""
    if text.startswith("(") and text.endswith(")"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, tuple):
            return value
    return text


def memory_of(metrics: dict[str, Any]) -> dict[str, int]:
    """Managed, spilled and unmanaged bytes, and process memory, from heartbeat metrics."""
    process = int(metrics.get("memory") or 0)
    managed = int(metrics.get("managed_bytes") or 0)
    spilled = int(metrics.get("spilled_bytes") or 0)
    return {
        "managed": managed,
        "spilled": spilled,
        "unmanaged": max(process - managed, 0),
        "process": process,
    }


def workers(scheduler: Scheduler) -> list[dict[str, Any]]:
    """Every worker: identity, threads, running tasks, memory, transfers, status."""
    now = time.monotonic()
    out = []
    for address, ws in scheduler.state.workers.items():
        extra = scheduler.worker_extra.get(address, {})
        metrics = extra.get("metrics") or {}
        running = [key_text(ts.key) for ts in _first(ws.executing, MAX_RUNNING_SHOWN)]
        out.append(
            {
                "address": address,
                "name": ws.name,
                "nthreads": ws.nthreads,
                "status": ws.status,
                "processing": len(ws.processing),
                # workers under a nanny do not say each start: their heartbeat's count then
                "executing": max(len(ws.executing), int(metrics.get("executing") or 0)),
                "running": running,
                "in_memory": len(ws.has_what),
                "nbytes": ws.nbytes,
                "memory_limit": ws.memory_limit,
                "memory": memory_of(metrics),
                "transfer": _transfer_of(metrics),
                "services": dict(ws.services),
                "last_seen": round(now - extra.get("last_seen", now), 3),
            }
        )
    return out


def tasks(scheduler: Scheduler) -> dict[str, Any]:
    """Task counts by state and by prefix and state, and the tasks finished so far."""
    return {
        "by_state": scheduler.state.n_tasks_by_state(),
        "by_prefix": prefix_states(scheduler),
        "total": len(scheduler.state.tasks),
        "finished_total": scheduler.task_stream.n_finished,
    }


def prefix_states(scheduler: Scheduler) -> dict[str, dict[str, int]]:
    """``{prefix: {state: count}}`` over the scheduler's live tasks (one pass)."""
    out: dict[str, dict[str, int]] = {}
    for ts in scheduler.state.tasks.values():
        row = out.get(ts.prefix.name)
        if row is None:
            row = out[ts.prefix.name] = {}
        row[ts.state] = row.get(ts.state, 0) + 1
    return out


def progress(by_prefix: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    """``{prefix: [waiting, processing, memory, erred]}`` from ``prefix_states``."""
    out = {}
    for prefix, states in by_prefix.items():
        waiting = sum(n for state, n in states.items() if state in WAITING_STATES)
        out[prefix] = [
            waiting,
            states.get("processing", 0),
            states.get("memory", 0),
            states.get("erred", 0),
        ]
    return out


def task_stream(scheduler: Scheduler, n: int) -> dict[str, Any]:
    """The last ``n`` finished tasks and transfers, oldest first."""
    stream = scheduler.task_stream
    return {
        "tasks": [
            {"key": key_text(key), "prefix": key_split(key), "worker": w, "start": a, "stop": b}
            for key, w, a, b in stream.recent_tasks(n)
        ],
        "transfers": [
            {"worker": w, "sender": s, "keys": k, "nbytes": b, "start": t0, "stop": t1}
            for w, s, k, b, t0, t1 in stream.recent_transfers(n)
        ],
        "finished_total": stream.n_finished,
    }


def story(scheduler: Scheduler, key: Key) -> list[dict[str, Any]]:
    """The logged transitions of ``key``: from which state to which, why, and when."""
    return [
        {
            "key": key_text(entry[0]),
            "start": entry[1],
            "finish": entry[2],
            "stimulus_id": entry[3],
            "time": entry[4],
        }
        for entry in scheduler.state.story(key)
        if entry[0] == key
    ]


def _first(items: Iterable[Any], n: int) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if len(out) >= n:
            break
        out.append(item)
    return out


def _transfer_of(metrics: dict[str, Any]) -> dict[str, int]:
    return {
        name: int(metrics.get(f"transfer_{name}") or 0)
        for name in ("incoming_bytes", "incoming_count", "outgoing_bytes", "outgoing_count")
    }


__all__ = ["key_text", "memory_of", "parse_key", "progress", "story", "task_stream", "tasks"]
