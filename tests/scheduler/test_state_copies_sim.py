"""Kept inputs on a shuffle-like graph, driven to the end by a small simulated cluster:
what is kept stays bounded by the copies in flight, and is all gone at the end."""

from __future__ import annotations

import random
from collections import deque

from shoal.scheduler.events import NewTask, SchedulerEvent, WorkerAddedKeys
from shoal.scheduler.instructions import AcquireReplicas, ComputeTask, SchedulerInstruction
from shoal.scheduler.state import SchedulerState

from .helpers import finished, join, new_state, sid, submit, task

WORKERS = ("w1", "w2", "w3", "w4")
STAGES, WIDTH, FAN_IN = 5, 16, 4
#: a spare copy lands this many simulated steps after it was asked for
COPY_LAG = 5


def _shuffle_graph() -> tuple[list[NewTask], list[str]]:
    """STAGES stages of WIDTH tasks; each reads FAN_IN tasks of the stage before, spread
    over the whole stage (a partial shuffle, as a rechunk or a staged shuffle makes)."""
    tasks = [task(f"s0-{i}") for i in range(WIDTH)]
    for stage in range(1, STAGES):
        for i in range(WIDTH):
            deps = sorted({f"s{stage - 1}-{(i * 7 + j * 5) % WIDTH}" for j in range(FAN_IN)})
            tasks.append(task(f"s{stage}-{i}", *deps))
    return tasks, [f"s{STAGES - 1}-{i}" for i in range(WIDTH)]


class Cluster:
    """Runs what the scheduler asks, in a seeded order; copies land ``COPY_LAG`` steps late;
    a worker that runs a task announces the inputs it fetched (AddKeys), as workers do."""

    def __init__(self, s: SchedulerState, seed: int) -> None:
        self.s, self.rng = s, random.Random(seed)
        self.running: list[ComputeTask] = []
        self.copies: deque[tuple[int, str, str]] = deque()  # (due step, worker, key)
        self.step = 0
        self.peak_kept = self.peak_keepers = self.peak_in_flight = 0

    def feed(self, *events: SchedulerEvent) -> None:
        self.take(self.s.handle_stimulus(*events))

    def take(self, out: list[SchedulerInstruction]) -> None:
        for inst in out:
            if isinstance(inst, ComputeTask):
                self.running.append(inst)
                fetched = [k for k, who in inst.who_has.items() if inst.worker not in who]
                if fetched:
                    self.feed(
                        WorkerAddedKeys(stimulus_id=sid(), worker=inst.worker, keys=tuple(fetched))
                    )
            elif isinstance(inst, AcquireReplicas):
                for key in inst.who_has:
                    self.copies.append((self.step + COPY_LAG, inst.worker, str(key)))

    def advance(self) -> bool:
        """One step: land the copies due, then finish one running task; False when idle."""
        self.step += 1
        while self.copies and self.copies[0][0] <= self.step:
            _, worker, key = self.copies.popleft()
            self.feed(WorkerAddedKeys(stimulus_id=sid(), worker=worker, keys=(key,)))
        if self.running:
            ct = self.running.pop(self.rng.randrange(len(self.running)))
            self.feed(finished(ct, nbytes=100))
        engine = self.s.engine
        keepers = engine.kept.keepers()
        in_flight = len(self.copies)
        # what is kept: small inputs (FAN_IN at most) of results whose copy is on its way
        assert len(keepers) <= in_flight, (len(keepers), in_flight)
        assert len(engine.kept) <= FAN_IN * len(keepers)
        self.peak_kept = max(self.peak_kept, len(engine.kept))
        self.peak_keepers = max(self.peak_keepers, len(keepers))
        self.peak_in_flight = max(self.peak_in_flight, in_flight)
        return bool(self.running or self.copies)


def test_kept_inputs_stay_bounded_on_a_shuffle_and_are_gone_at_the_end() -> None:
    for seed in range(2):
        s = new_state(spare_copy_bytes=1000)
        cluster = Cluster(s, seed)
        cluster.feed(*(join(w, nthreads=2) for w in WORKERS))
        tasks, sinks = _shuffle_graph()
        cluster.feed(submit(tasks, sinks))
        for _ in range(10_000):
            if not cluster.advance():
                break
        assert all(s.tasks[k].state == "memory" for k in sinks)
        # bounded by the copies in flight, never by the graph: at most one stage-worth
        assert 0 < cluster.peak_kept <= FAN_IN * cluster.peak_in_flight
        assert cluster.peak_kept < WIDTH * 2, cluster.peak_kept
        # the sinks are wanted and have two copies each: nothing is kept for them
        assert len(s.engine.kept) == 0 and not s.engine.spare_in_flight
        in_memory = [ts.key for ts in s.tasks.values() if ts.state == "memory"]
        assert sorted(in_memory) == sorted(sinks)
