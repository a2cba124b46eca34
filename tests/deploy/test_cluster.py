"""The Cluster base without a scheduler: job naming, scale arithmetic, jobs starting
together, and waiting for workers on the scheduler's answer."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar, cast

import pytest

from shoal.comm import Security
from shoal.deploy.cluster import Cluster, Job
from shoal.errors import ShoalTimeoutError
from shoal.protocol.rpc_base import Rpc
from shoal.protocol.rpc_scheduler import SchedulerNthreads, SchedulerWaitForWorkers

R = TypeVar("R")


class Sized(Cluster):
    processes = 3
    job_cores = 6
    job_memory = 2**30


def cluster() -> Sized:
    return Sized(security=Security(token="t"), asynchronous=True)


def test_a_job_owns_its_workers_by_name() -> None:
    job = Job("ssh-1")
    assert job.owns("ssh-1") and job.owns("ssh-1-0") and job.owns("ssh-1-12")
    assert not job.owns("ssh-10") and not job.owns("ssh-10-1") and not job.owns("ssh")


@pytest.mark.parametrize(
    ("request_", "jobs"),
    [({"n": 0}, 0), ({"n": 1}, 1), ({"n": 3}, 1), ({"n": 4}, 2), ({"jobs": 5}, 5),
     ({"cores": 7}, 2), ({"memory": "1.5GiB"}, 2), ({"memory": 2**30}, 1)],
)  # fmt: skip
def test_scale_requests_become_jobs(request_: dict[str, object], jobs: int) -> None:
    assert cluster().jobs_for(**request_) == jobs  # type: ignore[arg-type]


def test_a_cluster_without_job_sizes_refuses_cores_and_memory() -> None:
    plain = Cluster(security=Security(token="t"), asynchronous=True)
    with pytest.raises(ValueError, match="cores"):
        plain.jobs_for(cores=2)
    with pytest.raises(ValueError, match="memory"):
        plain.jobs_for(memory="1GB")
    with pytest.raises(TypeError, match="exactly one"):
        plain.jobs_for()


# -- starting jobs and waiting for their workers (the scheduler faked) ------------------------
class Gate(Job):
    """A job whose start returns only once ``expected`` jobs are starting at the same time."""

    def __init__(self, name: str, starting: list[str], expected: int, fail: bool) -> None:
        super().__init__(name)
        self.starting, self.expected, self.fail = starting, expected, fail
        self.closed = False

    async def start(self) -> None:
        self.starting.append(self.name)
        while len(self.starting) < self.expected:
            await asyncio.sleep(0)
        if self.fail:
            raise OSError(f"{self.name} cannot start")

    async def close(self) -> None:
        self.closed = True


class Gated(Cluster):
    job_prefix = "gate"

    def __init__(self, expected: int, failing: tuple[str, ...] = ()) -> None:
        super().__init__(security=Security(token="t"), asynchronous=True)
        self.starting: list[str] = []
        self.made: list[Gate] = []
        self.expected, self.failing = expected, failing

    def new_job(self, name: str) -> Job:
        self.made.append(Gate(name, self.starting, self.expected, name in self.failing))
        return self.made[-1]


def test_jobs_start_at_the_same_time() -> None:
    cluster = Gated(expected=3)
    asyncio.run(asyncio.wait_for(cluster._scale(3), 10))  # one at a time: never 3 starting
    assert list(cluster.jobs) == ["gate-0", "gate-1", "gate-2"]


def test_a_job_that_fails_to_start_is_closed_and_its_error_raised_the_others_kept() -> None:
    cluster = Gated(expected=3, failing=("gate-1",))
    with pytest.raises(OSError, match="gate-1 cannot start"):
        asyncio.run(asyncio.wait_for(cluster._scale(3), 10))
    assert list(cluster.jobs) == ["gate-0", "gate-2"]
    assert [job.closed for job in cluster.made] == [False, True, False]


def test_closing_the_cluster_while_jobs_start_stops_them_too() -> None:
    async def main() -> list[bool]:
        cluster = Gated(expected=99)  # their starts never return
        scaling = asyncio.ensure_future(cluster._scale(2))
        while len(cluster.starting) < 2:
            await asyncio.sleep(0)
        assert list(cluster.jobs) == ["gate-0", "gate-1"]
        await cluster._close()
        scaling.cancel()
        await asyncio.gather(scaling, return_exceptions=True)
        return [job.closed for job in cluster.made]

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [True, True]


class Failing(Job):
    def __init__(self, name: str, failed: asyncio.Event) -> None:
        super().__init__(name)
        self.failed = failed

    async def wait_failure(self) -> str:
        await self.failed.wait()
        return "it exited with code 3"


class Waiting(Cluster):
    """A cluster whose scheduler answers ``wait_for_workers`` only when told to."""

    def __init__(self, answer: asyncio.Event, joined: int = 0) -> None:
        super().__init__(security=Security(token="t"), asynchronous=True)
        self.answer, self.joined = answer, joined
        self.calls: list[Rpc[Any]] = []

    @property
    def scheduler_address(self) -> str:
        return "tcp://scheduler:1"

    async def scheduler_call(self, rpc: Rpc[R], /, *, reply_timeout: Any = None) -> R:
        self.calls.append(rpc)
        if isinstance(rpc, SchedulerNthreads):
            return cast(R, {f"w{i}": 1 for i in range(self.joined)})
        assert isinstance(rpc, SchedulerWaitForWorkers)
        await self.answer.wait()
        if self.joined < rpc.n:
            raise TimeoutError(f"{self.joined} of {rpc.n} workers registered")
        return cast(R, self.joined)


def test_waiting_for_workers_ends_when_a_job_fails_without_polling_the_scheduler() -> None:
    async def main() -> None:
        failed = asyncio.Event()
        cluster = Waiting(asyncio.Event())
        cluster.jobs["job-0"] = Failing("job-0", failed)
        waiting = asyncio.ensure_future(cluster._wait_for_workers(2, timeout=60))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waiting.done()
        failed.set()
        with pytest.raises(RuntimeError, match="job job-0 failed: it exited with code 3"):
            await waiting
        assert cluster.calls == [SchedulerWaitForWorkers(n=2, timeout=60)]  # one ask, no polls

    asyncio.run(asyncio.wait_for(main(), 10))


def test_waiting_for_workers_returns_with_the_schedulers_answer_or_times_out() -> None:
    async def main(joined: int) -> None:
        answer = asyncio.Event()
        answer.set()
        cluster = Waiting(answer, joined)
        cluster.jobs["job-0"] = Failing("job-0", asyncio.Event())
        await cluster._wait_for_workers(2, timeout=5)

    asyncio.run(asyncio.wait_for(main(2), 10))
    with pytest.raises(ShoalTimeoutError, match="only 1 of 2 workers joined"):
        asyncio.run(asyncio.wait_for(main(1), 10))
