"""The invariants of a WorkerState, checked after every event when ``validate=True``.

O(tasks) per call: for tests and debugging, never the hot path. A failure raises
AssertionError naming the key and carrying its story.

Pure: no IO, no clock. See ``state.py`` for the rules of the machine.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from shoal._types import Key
from shoal.worker.state_task import WorkerTask
from shoal.worker.state_transitions import RUNNING_STATES, TASK_STATES, resource_need

if TYPE_CHECKING:
    from shoal.worker.state import WorkerState

_STATES = frozenset(TASK_STATES) - {"forgotten"}


def validate_state(ws: WorkerState) -> None:
    _Checker(ws).run()


class _Checker:
    def __init__(self, ws: WorkerState) -> None:
        self.ws = ws
        #: state -> keys in it
        self.by_state: defaultdict[str, set[Key]] = defaultdict(set)
        #: keys a thread or a transfer is busy with, by activity
        self.busy: defaultdict[str, set[Key]] = defaultdict(set)

    def fail(self, key: object, message: str) -> None:
        story = "\n".join(f"  {record}" for record in self.ws.story(key)[-40:])
        raise AssertionError(f"{key!r}: {message}\nstory:\n{story}")

    def check(self, condition: bool, key: object, message: str) -> None:
        if not condition:
            self.fail(key, message)

    def run(self) -> None:
        for key, task in self.ws.tasks.items():
            self.check(task.key == key, key, f"filed under the wrong key: {task!r}")
            self.by_state[task.state].add(key)
            if task.state in RUNNING_STATES:
                self.busy[task.state].add(key)
            elif task.state == "cancelled" and task.previous is not None:
                self.busy[task.previous].add(key)
            self.task(task)
        self.queues()
        self.threads()
        self.transfers()
        self.holders()
        self.counts()

    # -- one task ---------------------------------------------------------------------------

    def task(self, task: WorkerTask) -> None:
        key, state = task.key, task.state
        self.check(state in _STATES, key, f"unknown state {state!r}")
        self.links(task)
        wanted = task.assigned or task.replica or bool(task.dependents)
        if state == "cancelled":
            self.check(not wanted, key, "cancelled but wanted")
            self.check(task.previous in RUNNING_STATES, key, f"cancelled from {task.previous}")
        else:
            self.check(wanted, key, "kept but wanted by nobody")
            self.check(task.previous is None, key, f"previous={task.previous} outside cancelled")
        self.check(not task.assigned or task.run_id is not None, key, "assigned without run_id")
        self.check(self.ws.address not in task.who_has, key, "we are listed as a holder")
        if state != "waiting":
            self.check(not task.waiting_for_data, key, "waiting_for_data outside waiting")
        running = state in ("executing", "long-running") or (
            state == "cancelled" and task.previous != "flight"
        )
        self.check((task.exec_run_id is not None) == running, key, "exec_run_id vs running")
        flying = state == "flight" or (state == "cancelled" and task.previous == "flight")
        self.check((task.coming_from is not None) == flying, key, "coming_from vs flight")
        self.check((task.error is not None) == (state == "error"), key, "error vs state")
        self.state_rules(task)

    def links(self, task: WorkerTask) -> None:
        tasks = self.ws.tasks
        for dep in task.dependencies:
            self.check(tasks.get(dep.key) is dep, task.key, f"input {dep!r} is not kept")
            self.check(task in dep.dependents, task.key, f"{dep!r} does not list us")
        for dependent in task.dependents:
            self.check(tasks.get(dependent.key) is dependent, task.key, f"{dependent!r} gone")
            self.check(task in dependent.dependencies, task.key, f"{dependent!r} lacks us")

    def state_rules(self, task: WorkerTask) -> None:
        key, state = task.key, task.state
        deps_in_memory = all(dep.state == "memory" for dep in task.dependencies)
        if state == "released":
            waiting = [d for d in task.dependents if d.state == "waiting"]
            self.check(not waiting, key, f"released while {waiting} wait for it")
        elif state == "waiting":
            self.waiting_rules(task)
        elif state in ("ready", "constrained", "executing", "long-running"):
            self.check(deps_in_memory, key, f"{state} with inputs not in memory")
            constrained = bool(task.resource_restrictions)
            if state in ("ready", "constrained"):
                self.check(constrained == (state == "constrained"), key, "restrictions")
        elif state == "memory":
            self.check(key in self.ws.nbytes, key, "in memory without nbytes")
        elif state in ("fetch", "missing"):
            self.check(not task.assigned, key, f"assigned here but in {state}")
            self.check(bool(task.who_has) == (state == "fetch"), key, f"{state} vs who_has")
        elif state == "flight":
            worker = task.coming_from
            keys = self.ws.in_flight_workers.get(worker) if worker is not None else None
            self.check(keys is not None and key in keys, key, "in flight but not counted")

    def waiting_rules(self, task: WorkerTask) -> None:
        key = task.key
        expected = {dep for dep in task.dependencies if dep.state != "memory"}
        self.check(task.waiting_for_data == expected, key, "waiting_for_data out of date")
        self.check(bool(expected), key, "waiting with every input in memory")
        for dep in expected:
            stuck = dep.state in ("released", "cancelled") or (
                dep.state == "error" and not dep.assigned
            )
            self.check(not stuck, key, f"waits for {dep!r}, which is going nowhere")

    # -- containers -------------------------------------------------------------------------

    def queues(self) -> None:
        ws, by_state = self.ws, self.by_state
        self.same(set(ws.ready), by_state["ready"], "ready heap")
        constrained: set[Key] = set()
        for need, heap in ws.constrained_by_need.items():
            self.check(len(heap) > 0, need, "empty constrained group kept")
            for key in heap:
                self.check(resource_need(ws.tasks[key]) == need, key, "wrong resource group")
                constrained.add(key)
        self.same(constrained, by_state["constrained"], "constrained groups")
        self.same(set(ws.data_needed), by_state["fetch"], "data_needed")
        self.same(ws.missing, by_state["missing"], "missing")
        self.same(set(ws.nbytes), by_state["memory"], "nbytes")
        self.check(ws.managed_nbytes == sum(ws.nbytes.values()), None, "managed_nbytes")
        copies = {k for k in by_state["memory"] if ws.tasks[k].replica and not ws.tasks[k].assigned}
        self.same(set(ws.replicas), copies, "replicas")
        for worker, heap in ws.pending_data_per_worker.items():
            self.check(len(heap) > 0, worker, "empty pending heap kept")
            for key in heap:
                task = ws.tasks[key]
                self.check(task.state == "fetch", key, f"pending on {worker} but {task.state}")
                self.check(worker in task.who_has, key, f"pending on non-holder {worker}")
        for key in by_state["fetch"]:
            for worker in ws.tasks[key].who_has:
                queue = ws.pending_data_per_worker.get(worker)
                self.check(queue is not None and key in queue, key, f"not pending on {worker}")

    def threads(self) -> None:
        ws = self.ws
        self.same(ws.executing, self.busy["executing"], "executing")
        self.same(ws.long_running, self.busy["long-running"], "long_running")
        rejoining = set(ws.rejoining)
        self.check(rejoining <= ws.long_running, None, f"rejoining {rejoining} not seceded")
        # beyond one task per thread only quick tasks queued behind quick ones (run ahead)
        ahead = 0 if ws.report_started else ws.run_ahead
        self.check(len(ws.executing) <= ws.nthreads * (1 + ahead), None, "too many executing")
        self.check(ws.slow_executing <= ws.executing, None, "slow but not executing")
        queued = len(ws.executing) > ws.nthreads
        self.check(not (queued and ws.slow_executing), None, "a task queued behind a slow one")
        self.check(set(ws.available_resources) == set(ws.total_resources), None, "resources")
        for name, total in ws.total_resources.items():
            used = sum(
                ws.tasks[key].resource_restrictions.get(name, 0.0)
                for key in ws.executing | ws.long_running
            )
            available = ws.available_resources[name]
            self.check(abs(available + used - total) < 1e-9, name, f"{available}+{used}!={total}")

    def transfers(self) -> None:
        ws = self.ws
        self.check(set(ws.in_flight_workers) == set(ws.in_flight_nbytes), None, "flight books")
        self.check(
            len(ws.in_flight_workers) <= ws.total_out_connections, None, "too many transfers"
        )
        flying: set[Key] = set()
        for worker, keys in ws.in_flight_workers.items():
            nbytes = 0
            for key in keys:
                task = ws.tasks[key]
                self.check(task.coming_from == worker, key, f"in flight from {worker}?")
                nbytes += task.fetch_nbytes()
            self.check(nbytes == ws.in_flight_nbytes[worker], worker, "bytes in flight")
            flying |= keys
        self.same(flying, self.busy["flight"], "in_flight_workers")
        self.check(ws.in_flight_tasks == len(flying), None, "in_flight_tasks")
        self.check(ws.comm_bytes == sum(ws.in_flight_nbytes.values()), None, "comm_bytes")

    def holders(self) -> None:
        ws = self.ws
        for worker, keys in ws.has_what.items():
            self.check(bool(keys), worker, "empty has_what entry kept")
            for key in keys:
                task = ws.tasks.get(key)
                self.check(task is not None and worker in task.who_has, key, f"has_what {worker}")
        for key, task in ws.tasks.items():
            for worker in task.who_has:
                self.check(key in ws.has_what.get(worker, ()), key, f"{worker} lacks it")

    def counts(self) -> None:
        counts = self.ws._state_counts
        for state in set(TASK_STATES) | set(counts):
            expected = len(self.by_state.get(state, ()))
            self.check(counts[state] == expected, state, f"count {counts[state]} != {expected}")

    def same(self, actual: set[Key], expected: set[Key], what: str) -> None:
        if actual != expected:
            extra, lacking = actual - expected, expected - actual
            key = next(iter(extra or lacking))
            self.fail(key, f"{what}: extra {extra!r}, lacking {lacking!r}")
