"""Every invariant of SchedulerState, checked from scratch (O(size): tests only).

A broken invariant raises AssertionError naming the task or worker, with the task's story.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.scheduler.state_records import SchedulerTask, WorkerInfo
from shoal.scheduler.state_speculation import speculation_depth
from shoal.scheduler.state_transitions import ACTIVE

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

STATES = frozenset({"released", "waiting", "queued", "no-worker", "processing", "memory", "erred"})


class _Checker:
    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        #: released tasks whose forgetting a pass put off (``ForgettingDue``)
        self.put_off = set(state.forgetting)

    def fail(self, what: object, message: str) -> None:
        key = what.key if isinstance(what, SchedulerTask) else None
        story = self.state.story(key) if key is not None else []
        lines = "\n".join(f"  {entry}" for entry in story[-30:])
        raise AssertionError(f"{what!r}: {message}\nstory:\n{lines}")

    def check(self, ok: bool, what: object, message: str) -> None:
        if not ok:
            self.fail(what, message)

    def live(self, ts: SchedulerTask) -> bool:
        return self.state.tasks.get(ts.key) is ts

    # -- tasks ------------------------------------------------------------------------------

    def task(self, ts: SchedulerTask) -> None:
        check = self.check
        check(ts.state in STATES, ts, "unknown state")
        for dep in ts.dependencies:
            check(self.live(dep), ts, f"dependency {dep!r} is forgotten")
            check(ts in dep.dependents, ts, f"not among the dependents of {dep!r}")
            check((ts in dep.waiters) == (ts.state in ACTIVE), ts, f"waiters of {dep!r}")
        for dts in ts.dependents:
            check(self.live(dts), ts, f"dependent {dts!r} is forgotten")
            check(ts in dts.dependencies, ts, f"not among the dependencies of {dts!r}")
        for dts in ts.waiters:
            check(dts.state in ACTIVE and dts in ts.dependents, ts, f"waiter {dts!r}")
        for client in ts.who_wants:
            cs = self.state.clients.get(client)
            check(cs is not None and ts in cs.wants_what, ts, f"wanted by {client}")
        for ws in ts.who_has:
            check(self.state.workers.get(ws.address) is ws, ts, f"held by gone {ws!r}")
            check(ts in ws.has_what, ts, f"not in has_what of {ws!r}")
        check(bool(ts.who_has) == (ts.state == "memory"), ts, "who_has vs memory")
        check((ts.processing_on is not None) == (ts.state == "processing"), ts, "processing_on")
        check((ts in self.state.queued) == (ts.state == "queued"), ts, "queue membership")
        check((ts in self.state.unrunnable) == (ts.state == "no-worker"), ts, "no-worker set")
        if ts.state == "waiting":
            check(bool(ts.waiting_on), ts, "waiting on nothing")
        elif ts.state != "processing":  # a processing one: task_inputs (speculative or not)
            check(not ts.waiting_on, ts, f"waiting_on outside waiting: {ts.waiting_on}")
        check((ts.exception_blame is not None) == (ts.state == "erred"), ts, "exception_blame")
        self.task_inputs(ts)
        self.task_state(ts)

    def task_inputs(self, ts: SchedulerTask) -> None:
        if ts.state == "waiting":
            missing = {dep for dep in ts.dependencies if dep.state != "memory"}
            self.check(ts.waiting_on == missing, ts, f"waiting_on {ts.waiting_on} != {missing}")
        elif ts.state in ("queued", "no-worker", "processing"):
            missing = {dep for dep in ts.dependencies if dep.state != "memory"}
            if ts.state == "processing" and (missing or ts.waiting_on):  # state_speculation
                self.speculative(ts, missing)
                return
            self.check(not missing, ts, f"inputs {missing} not in memory")

    def speculative(self, ts: SchedulerTask, missing: set[SchedulerTask]) -> None:
        check = self.check
        check(ts.waiting_on == missing, ts, f"waiting_on {ts.waiting_on} != {missing}")
        check(len(missing) == 1, ts, f"speculative with inputs {missing} missing")
        (dep,) = missing
        check(dep.processing_on is ts.processing_on, ts, f"input {dep!r} on another worker")
        check(ts.restriction_sig is None, ts, "speculative with restrictions")
        limit = self.state.engine.speculation_depth
        depth = speculation_depth(ts, limit + 1)
        check(depth <= limit, ts, f"speculated {depth} deep")

    def task_state(self, ts: SchedulerTask) -> None:
        check = self.check
        if ts.state in ACTIVE:
            check(ts.run_spec is not None, ts, "active without a run spec")
            check(bool(ts.who_wants or ts.waiters), ts, "active but nobody needs it")
        if ts.state == "processing":
            ws = ts.processing_on
            assert ws is not None
            check(self.state.workers.get(ws.address) is ws, ts, f"processing on gone {ws!r}")
            check(ts in ws.processing, ts, f"not in processing of {ws!r}")
        if ts.state == "erred":
            blame = ts.exception_blame
            assert blame is not None
            check(blame is ts or self.live(blame), ts, f"blames forgotten {blame!r}")
        if ts.state == "released":
            check(
                bool(ts.dependents) or ts in self.put_off,
                ts,
                "released with no dependents: should be forgotten (or put off)",
            )
            check(not ts.waiters and not ts.who_wants, ts, "released but needed")

    # -- workers and clients ----------------------------------------------------------------

    def worker(self, ws: WorkerInfo) -> None:
        check = self.check
        for ts in ws.has_what:
            check(self.live(ts) and ws in ts.who_has, ws, f"has_what {ts!r}")
        for ts in ws.processing:
            check(self.live(ts) and ts.processing_on is ws, ws, f"processing {ts!r}")
        check(all(ts in ws.processing for ts in ws.executing), ws, "executing ⊆ processing")
        check(all(ts in ws.processing for ts in ws.long_running), ws, "long_running")
        nbytes = sum(max(ts.nbytes, 0) for ts in ws.has_what)
        check(ws.nbytes == nbytes, ws, f"nbytes {ws.nbytes} != {nbytes}")
        used: dict[str, float] = {}
        for ts in ws.processing:
            for name, quantity in ts.resource_restrictions.items():
                used[name] = used.get(name, 0.0) + quantity
        for name in set(used) | set(ws.used_resources):
            diff = used.get(name, 0.0) - ws.used_resources.get(name, 0.0)
            check(abs(diff) < 1e-6, ws, f"used resource {name}")
        indexed = ws.fill_seq >= 0
        check(indexed == (ws.status == "running" and ws.nthreads > 0), ws, "fill index")

    def all(self) -> None:
        state = self.state
        counts: dict[str, int] = {}
        for key, ts in state.tasks.items():
            self.check(ts.key == key, ts, f"stored under {key!r}")
            counts[ts.state] = counts.get(ts.state, 0) + 1
            self.task(ts)
        for ws in state.workers.values():
            self.worker(ws)
        for cs in state.clients.values():
            for ts in cs.wants_what:
                self.check(self.live(ts) and cs.id in ts.who_wants, cs, f"wants {ts!r}")
        for ts in state.queued:
            self.check(self.live(ts), ts, "queued but forgotten")
        for ts in state.unrunnable:
            self.check(self.live(ts), ts, "no-worker but forgotten")
        self.check(counts == state.n_tasks_by_state(), state, f"counts {counts}")
        self.copies()

    def copies(self) -> None:
        """Kept inputs and spare copies in flight (``state_copies``)."""
        engine, check = self.state.engine, self.check
        for ts in engine.kept.keepers():
            check(self.live(ts) and ts.state == "memory", ts, "keeps inputs, not in memory")
            check(len(ts.who_has) == 1, ts, "keeps inputs with two copies")
            for dep in engine.kept.keeping(ts):
                check(dep in ts.dependencies and ts in engine.kept.kept_by(dep), dep, "kept")
                check(self.live(dep) and dep.state == "memory", dep, "kept, not in memory")
        for ts in engine.spare_in_flight:
            check(self.live(ts) and len(ts.who_has) == 1, ts, "spare copy in flight")


def validate_state(state: SchedulerState) -> None:
    """Check every invariant of ``state``; raise AssertionError on the first broken one."""
    _Checker(state).all()
