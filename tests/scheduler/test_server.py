"""The scheduler shell's views while a worker is leaving."""

from __future__ import annotations

from typing import Any

from shoal import Client, LocalCluster


def remove_then_describe(dask_scheduler: Any) -> dict[str, Any]:
    """In one loop callback: the worker leaves, then someone asks for the cluster's view
    (its ``worker-left`` event is handled only at the scheduler's next flush)."""
    (address,) = dask_scheduler.worker_streams
    dask_scheduler._remove_worker(address, "test")
    still_in_state = address in dask_scheduler.state.workers
    return {"address": address, "in_state": still_in_state, **dask_scheduler.scheduler_info()}


def test_scheduler_info_leaves_out_a_worker_that_just_left() -> None:
    """A departing worker used to be listed with ``pid`` None for a loop turn (a test that
    collected pids with ``int(w["pid"])`` failed on it during worker recycling)."""
    with (
        LocalCluster(
            n_workers=1,
            processes=False,
            dashboard_address=None,
            scheduler_kwargs={"allow_client_code": True},  # run_on_scheduler below
        ) as cluster,
        Client(cluster) as client,
    ):
        info = client.run_on_scheduler(remove_then_describe)
        assert info["in_state"]  # the window this is about: the state still has it
        assert info["address"] not in info["workers"]
        assert info["workers"] == {}
