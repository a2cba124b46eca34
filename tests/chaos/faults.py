"""Faults injected while a DAG runs: kill storms, node loss, freezes.

Rules of this file:

* Faults run in a background thread started by ``FaultThread`` and stop when told to;
  every signal goes through ``ChaosCluster.signal_pid`` (our own pids only).
* A stopped (SIGSTOP) process is always continued again, even when the test fails.
* Randomness comes from a seeded ``random.Random``: a failing run can be replayed.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.chaos.cluster import ChaosCluster


class FaultThread:
    """Runs ``action(stop_event)`` in a thread; ``errors`` keeps what it raised."""

    def __init__(self, action: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(action,), daemon=True)

    def _run(self, action: Callable[[threading.Event], None]) -> None:
        try:
            action(self.stop)
        except BaseException as exc:  # reported by check() in the test's thread
            self.errors.append(exc)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> FaultThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the fault thread did not stop within 60s"


def kill_storm(
    cluster: ChaosCluster, rng: random.Random, interval: tuple[float, float], stats: dict[str, int]
) -> Callable[[threading.Event], None]:
    """SIGKILL a random worker process (never a nanny) every ``interval`` seconds."""

    def action(stop: threading.Event) -> None:
        while not stop.wait(rng.uniform(*interval)):
            pids = cluster.worker_pids()
            if not pids:
                stats["no_worker_to_kill"] = stats.get("no_worker_to_kill", 0) + 1
                continue
            if cluster.signal_pid(rng.choice(sorted(pids)), signal.SIGKILL):
                stats["kills"] = stats.get("kills", 0) + 1

    return action


@contextmanager
def frozen(cluster: ChaosCluster, pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block; SIGCONT it afterwards, whatever happens."""
    cluster.signal_pid(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            cluster.signal_pid(pid, signal.SIGCONT)


def after(delay: float, stop: threading.Event) -> bool:
    """Sleep ``delay`` seconds unless stopped; True if the delay passed."""
    deadline = time.monotonic() + delay
    return not stop.wait(max(0.0, deadline - time.monotonic()))
