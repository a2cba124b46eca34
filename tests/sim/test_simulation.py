"""A deterministic simulation: one SchedulerState, three workers, one client.

The workers are fakes (``bus.FakeWorker``) or real ``WorkerState``s (``real_worker``).

Random DAGs of 500 tasks are submitted in a few graphs; messages travel over seeded
in-memory links (see ``bus.py``); one worker dies midway, with whatever it held and
whatever was in flight to or from it. At the end every wanted key must be correct
against a plain in-process evaluation (a value, or an error where one was due), no
task may be left running, and every worker must hold exactly what the scheduler
believes it holds.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from shoal._types import Key
from shoal.scheduler.events import GraphSubmitted, KeysReleased, NewTask, WorkerJoined, WorkerLeft
from shoal.scheduler.instructions import KeyErred, KeyInMemory
from shoal.scheduler.state import SchedulerState

from .bus import Bus, FakeWorker
from .real_worker import RealWorker

N_TASKS = 500


class Erred:
    """The expected outcome of a task that raises, or depends on one that does."""

    def __repr__(self) -> str:
        return "<erred>"


ERRED = Erred()


def combine(index: int, fails: bool, *inputs: object) -> int:
    if fails:
        raise ValueError(f"task {index} fails on purpose")
    return (index * 7919 + sum(int(x) for x in inputs)) % 1_000_003  # type: ignore[call-overload]


@dataclass
class Graph:
    #: key → (func, dependency keys): the run spec the fake workers execute
    specs: dict[Key, tuple[object, tuple[Key, ...]]] = field(default_factory=dict)
    #: key → priority
    priority: dict[Key, tuple[int, ...]] = field(default_factory=dict)

    def expected(self) -> dict[Key, object]:
        """Evaluate the graph in-process, in key order (a topological order)."""
        out: dict[Key, object] = {}
        for key, (func, deps) in self.specs.items():
            inputs = [out[d] for d in deps]
            if any(v is ERRED for v in inputs):
                out[key] = ERRED
                continue
            try:
                out[key] = func(*inputs)  # type: ignore[operator]
            except ValueError:
                out[key] = ERRED
        return out


def random_graph(rng: random.Random, n: int) -> Graph:
    graph = Graph()
    keys: list[Key] = []
    for i in range(n):
        width = rng.choice([0, 0, 1, 1, 2, 3]) if i else 0
        window = keys[max(0, i - 40) : i]
        deps = tuple(rng.sample(window, min(width, len(window))))
        key = f"{rng.choice(['load', 'inc', 'sum'])}-{i}"
        fails = rng.random() < 0.005
        graph.specs[key] = (functools.partial(combine, i, fails), deps)
        graph.priority[key] = (0, i)
        keys.append(key)
    return graph


class Simulation:
    def __init__(self, seed: int, n_workers: int = 3, worker_type: Any = FakeWorker) -> None:
        self.rng = random.Random(seed)
        self.scheduler = SchedulerState(rng=random.Random(seed), latency=0.002)
        self.bus = Bus(random.Random(seed + 1))
        self.workers: dict[str, Any] = {}
        self.now = 0.0
        self.steps = 0
        for i in range(n_workers):
            address = f"sim://w{i}"
            self.workers[address] = worker_type(address, self.workers, random.Random(seed + i))
            self.bus.connect(address)
            self.feed(
                WorkerJoined(stimulus_id=f"join-{i}", address=address, name=f"w{i}", nthreads=2)
            )

    def feed(self, *events: object) -> None:
        self.bus.post_instructions(self.scheduler.handle_stimulus(*events))  # type: ignore[arg-type]

    def submit(self, graph: Graph, keys: list[Key], wanted: list[Key], n: int) -> None:
        """Submit ``keys`` with the definitions of all their ancestors, as a client does
        for keys it holds no futures for (same tokens: live ones are simply reused)."""
        closure: set[Key] = set()
        stack = list(keys)
        while stack:
            key = stack.pop()
            if key not in closure:
                closure.add(key)
                stack.extend(graph.specs[key][1])
        tasks = []
        for key in graph.specs:
            if key in closure:
                func, deps = graph.specs[key]
                tasks.append(
                    NewTask(
                        key=key,
                        run_spec=(func, deps),
                        dependencies=deps,
                        priority=graph.priority[key],
                        token=str(key),
                    )
                )
        self.feed(
            GraphSubmitted(
                stimulus_id=f"graph-{n}",
                client="client",
                tasks=tuple(tasks),
                wanted=tuple(wanted),
                now=self.now,
            )
        )

    def kill(self, address: str) -> None:
        self.bus.cut(address)
        del self.workers[address]
        self.feed(
            WorkerLeft(
                stimulus_id=f"kill-{address}", address=address, reason="killed", now=self.now
            )
        )

    def step(self) -> bool:
        """One delivery or one task run, chosen by the seed; False once all is quiet."""
        actions: list[tuple[str, str]] = self.bus.busy_links()
        actions += [("run", a) for a, w in self.workers.items() if w.runnable()]
        if not actions:
            return False
        kind, address = self.rng.choice(actions)
        self.now += 0.0001
        self.steps += 1
        if kind == "run":
            self.bus.post_events(address, self.workers[address].step(self.now))
        elif kind == "to_worker":
            worker = self.workers[address]
            for inst in self.bus.take(self.bus.to_worker[address], 4):
                self.bus.post_events(address, worker.deliver(inst))  # type: ignore[arg-type]
        else:
            self.feed(*self.bus.take(self.bus.to_scheduler[address], 4))
        if self.steps % 200 == 0:
            self.scheduler.validate()
        return True


def run_simulation(seed: int, worker_type: Any = FakeWorker) -> tuple[Simulation, Graph, set[Key]]:
    sim = Simulation(seed, worker_type=worker_type)
    graph = random_graph(sim.rng, N_TASKS)
    keys = list(graph.specs)
    has_dependents = {d for _, deps in graph.specs.values() for d in deps}
    wanted = {k for k in keys if k not in has_dependents or sim.rng.random() < 0.1}
    batches = [keys[:200], keys[200:350], keys[350:]]
    sim.submit(graph, batches[0], [k for k in batches[0] if k in wanted], 0)
    submitted, killed, released = 1, False, False
    while True:
        done = sum(w.executed for w in sim.workers.values())
        if submitted < len(batches) and (done > 120 * submitted or not sim.step()):
            sim.submit(
                graph, batches[submitted], [k for k in batches[submitted] if k in wanted], submitted
            )
            submitted += 1
        elif not killed and done > N_TASKS // 2:
            sim.kill(sim.rng.choice(sorted(sim.workers)))
            killed = True
        elif not released and done > N_TASKS // 3:
            dropped = sim.rng.sample(sorted(wanted, key=str), 5)
            sim.feed(KeysReleased(stimulus_id="release", client="client", keys=tuple(dropped)))
            wanted -= set(dropped)
            released = True
        elif not sim.step() and submitted == len(batches):
            break
    assert killed and released
    return sim, graph, wanted


@pytest.mark.parametrize("seed", range(4))
def test_random_dag_survives_a_worker_death(seed: int) -> None:
    sim, graph, wanted = run_simulation(seed)
    expected = graph.expected()
    s = sim.scheduler
    s.validate()
    last_word = {m.key: m for m in sim.bus.client_messages if isinstance(m, KeyInMemory | KeyErred)}
    for key in wanted:
        ts = s.tasks[key]
        if expected[key] is ERRED:
            assert ts.state == "erred", (key, s.story(key))
            assert isinstance(last_word[key], KeyErred)
            assert isinstance(ts.exception, ValueError)
        else:
            assert ts.state == "memory", (key, s.story(key))
            assert isinstance(last_word[key], KeyInMemory)
            for holder in ts.who_has:
                assert sim.workers[holder.address].data[key] == expected[key], key
    assert not {
        k: ts.state for k, ts in s.tasks.items() if ts.state not in ("memory", "erred", "released")
    }
    for address, worker in sim.workers.items():
        assert not worker.tasks, address
        assert set(worker.data) == {ts.key for ts in s.workers[address].has_what}, address
    assert len(s.workers) == 2


def test_simulation_is_deterministic() -> None:
    a, _, _ = run_simulation(7)
    b, _, _ = run_simulation(7)
    assert a.steps == b.steps
    assert list(a.scheduler.transition_log) == list(b.scheduler.transition_log)


@pytest.mark.parametrize("seed", range(4))
def test_random_dag_with_real_worker_states_survives_a_worker_death(seed: int) -> None:
    """The same run with three real WorkerStates (validated after every event)."""
    sim, graph, wanted = run_simulation(seed, worker_type=RealWorker)
    expected = graph.expected()
    s = sim.scheduler
    s.validate()
    for key in wanted:
        ts = s.tasks[key]
        if expected[key] is ERRED:
            assert ts.state == "erred", (key, s.story(key))
        else:
            assert ts.state == "memory", (key, s.story(key))
            for holder in ts.who_has:
                assert sim.workers[holder.address].data[key] == expected[key], key
    assert not {
        k: ts.state for k, ts in s.tasks.items() if ts.state not in ("memory", "erred", "released")
    }
    for address, worker in sim.workers.items():
        worker.state.validate()
        assert not worker.pending, address
        assert not worker.state.executing and not worker.state.in_flight_workers, address
        assert set(worker.data) == {ts.key for ts in s.workers[address].has_what}, address
    assert len(s.workers) == 2
