"""The watchdog: fail a stuck run with a dump of the cluster instead of hanging.

Rules of this file:

* Progress is anything that moves: futures done, ledger bytes, the scheduler's task
  counts. Nothing moving for ``stall`` seconds fails the test with a dump:
  ``scheduler_info``, each worker's state (executing, ready, in flight) and the story of
  the keys that are stuck.
* Every question to the cluster has its own deadline (a daemon thread): a frozen or
  partitioned process cannot hang the dump itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.chaos import ledger

T = TypeVar("T")
STALL_SECONDS = 15.0


class Stuck(AssertionError):
    """Nothing moved for too long; the message is the cluster's dump."""


def ask(question: Callable[[], T], timeout: float = 5.0) -> T | str:
    """``question()``, or a line saying why there is no answer within ``timeout``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = question()
        except Exception as exc:  # a dump reports failures, it does not raise them
            box["value"] = f"<failed: {exc!r}>"

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return box.get("value", f"<no answer within {timeout}s>")  # type: ignore[no-any-return]


def worker_summary() -> dict[str, Any]:
    """Run on each worker: what it is doing now."""
    from shoal import get_worker

    worker = get_worker()
    state = worker.state
    flight = [k for k, t in state.tasks.items() if getattr(t, "state", None) == "flight"]
    return {
        "state": repr(state),
        "executing": sorted(map(str, state.executing))[:10],
        "in_flight": sorted(map(str, flight))[:10],
        "ready": len(state.ready),
    }


class Watchdog:
    def __init__(self, client: Any, ledger_dir: Path, stall: float = STALL_SECONDS) -> None:
        self.client = client
        self.ledger_dir = ledger_dir
        self.stall = stall

    def _probe(self, futures: list[Any]) -> tuple[Any, ...]:
        info = ask(self.client.scheduler_info, 5)
        tasks = sorted(info["tasks"].items()) if isinstance(info, dict) else None
        return (sum(f.done() for f in futures), ledger.size(self.ledger_dir), tasks)

    def wait(
        self, futures: list[Any], timeout: float, tick: Callable[[], None] | None = None
    ) -> None:
        """Return once every future is done; raise ``Stuck`` with a dump if nothing moves
        for ``stall`` seconds, or ``timeout`` passes. ``tick`` runs each poll (checks)."""
        start = last_move = time.monotonic()
        last = self._probe(futures)
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            if tick is not None:
                tick()
            now = time.monotonic()
            probe = self._probe(futures)
            if probe != last:
                last, last_move = probe, now
            if now - last_move > self.stall:
                raise Stuck(f"nothing moved for {self.stall}s\n{self.dump(futures)}")
            if now - start > timeout:
                raise Stuck(f"not done within {timeout}s\n{self.dump(futures)}")

    def dump(self, futures: list[Any]) -> str:
        """The cluster's state, as text for the test's output."""
        info = ask(self.client.scheduler_info, 10)
        if isinstance(info, dict):
            info = {k: v for k, v in info.items() if k != "events"}
            for w in info.get("workers", {}).values():
                w.pop("heartbeats", None)
        workers = ask(lambda: self.client.run(worker_summary), 10)
        pending = [f.key for f in futures if not f.done()][:5]
        stuck: list[str] = list(pending)
        if isinstance(workers, dict):
            for summary in workers.values():
                stuck += summary["executing"][:2] + summary["in_flight"][:2]
        story = ask(lambda: self.client.story(*stuck[:12]), 10)
        text = {
            "pending_futures": len([f for f in futures if not f.done()]),
            "executions_so_far": ledger.size(self.ledger_dir),
            "scheduler_info": info,
            "workers": workers,
            "stuck_keys": stuck[:12],
            "story": story if isinstance(story, str) else [list(map(str, r)) for r in story][-60:],
        }
        return json.dumps(text, indent=1, default=str)
