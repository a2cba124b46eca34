"""Quick tasks run ahead in real workers: with a nanny, tasks queue behind the busy
thread (more keys executing than threads, within the bound); without one, never."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import Client, LocalCluster
from shoal.plugins import WorkerPlugin
from shoal.worker.state_run_ahead import RUN_AHEAD_PER_THREAD

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class PeakExecuting(WorkerPlugin):
    """Records the most keys the worker ever had executing at once."""

    name = "peak-executing"

    def setup(self, worker: Any) -> None:
        self.state = worker.state
        worker.peak_executing = 0
        self.worker = worker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing":  # the hook runs before the key joins ``executing``
            busy = len(self.state.executing) + 1
            self.worker.peak_executing = max(self.worker.peak_executing, busy)


def inc(x: int) -> int:
    return x + 1


def peak_of(dask_worker: Any) -> int:
    return int(dask_worker.peak_executing)


@pytest.mark.parametrize("processes", [True, False], ids=["nanny", "no-nanny"])
def test_quick_tasks_queue_behind_the_thread_only_with_a_nanny(processes: bool) -> None:
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(PeakExecuting())
        assert client.gather(client.map(inc, range(2000))) == list(range(1, 2001))
        (peak,) = client.run(peak_of).values()
    if processes:
        assert 1 < peak <= 1 + RUN_AHEAD_PER_THREAD
    else:
        assert peak == 1
