"""A pass forgets at most ``forgets_per_pass`` tasks; ``ForgettingDue`` passes do the rest."""

from __future__ import annotations

from shoal.scheduler.events import ForgettingDue, KeysReleased
from shoal.scheduler.instructions import FreeKeys
from shoal.scheduler.state import SchedulerState

from .helpers import computes, finished, handle, join, new_state, sid, submit, task


def _computed_chain(s: SchedulerState, n: int) -> None:
    """A chain t-0 <- t-1 <- ... <- t-(n-1), all run; only the last is wanted."""
    handle(s, join("w1", nthreads=4))
    out = handle(s, submit([task("t-0"), *(task(f"t-{i}", f"t-{i - 1}") for i in range(1, n))],
                           [f"t-{n - 1}"]))  # fmt: skip
    while cts := computes(out):
        out = [i for ct in cts for i in handle(s, finished(ct))]
    assert s.tasks[f"t-{n - 1}"].state == "memory"


def due() -> ForgettingDue:
    return ForgettingDue(stimulus_id=sid("forget"))


def test_releasing_a_big_graph_forgets_it_over_several_passes() -> None:
    s = new_state()  # validates after every event: put-off tasks are a valid state
    s.engine.forgets_per_pass = 3
    _computed_chain(s, 10)
    out = handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("t-9",)))
    assert [i.keys for i in out if isinstance(i, FreeKeys)] == [("t-9",)]  # freed at once
    assert len(s.tasks) == 7 and list(s.forgetting) == [s.tasks["t-6"]]
    passes = 0
    while s.forgetting:
        handle(s, due())
        passes += 1
        assert len(s.tasks) == max(0, 7 - 3 * passes)
    assert passes == 3 and not s.tasks
    assert handle(s, due()) == []  # nothing put off: a no-op


def test_a_put_off_task_wanted_again_is_not_forgotten() -> None:
    s = new_state()
    s.engine.forgets_per_pass = 2
    _computed_chain(s, 6)
    handle(s, KeysReleased(stimulus_id=sid(), client="c1", keys=("t-5",)))
    assert [ts.key for ts in s.forgetting] == ["t-3"] and s.tasks["t-3"].state == "released"
    out = handle(s, submit([], ["t-3"]))  # a client asks for it again: computed anew
    assert s.tasks["t-3"].state == "waiting" and s.tasks["t-3"].who_wants == ("c1",)  # type: ignore[comparison-overlap]
    handle(s, due())
    assert set(s.tasks) == {"t-0", "t-1", "t-2", "t-3"} and not s.forgetting
    assert [ct.key for ct in computes(out)] == ["t-0"]
