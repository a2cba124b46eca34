"""The scheduler never runs client code unless allowed; scheduler code comes by import
path (``preload``). Both behaviours, on in-process schedulers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import LocalCluster
from shoal.client import Client
from shoal.plugins import SchedulerPlugin
from shoal.preload import PreloadError
from shoal.scheduler.extras import ClientCodeRefused


class Counter(SchedulerPlugin):
    name = "counter"

    def start(self, scheduler: Any) -> None:
        scheduler.extras.metadata["counter-started"] = scheduler.address


def scheduler_address(dask_scheduler: Any) -> str:
    return str(dask_scheduler.address)


@pytest.fixture
def guarded() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def test_client_code_is_refused_by_default_with_the_flag_named(guarded: Client) -> None:
    with pytest.raises(ClientCodeRefused, match="--allow-client-code") as info:
        guarded.run_on_scheduler(scheduler_address)
    assert "run_on_scheduler" in str(info.value) and "--preload" in str(info.value)
    with pytest.raises(ClientCodeRefused, match="SchedulerPlugin"):
        guarded.register_plugin(Counter())
    with pytest.raises(ClientCodeRefused):
        guarded.unregister_scheduler_plugin("counter")
    assert guarded.get_metadata("counter-started", None) is None


def test_client_code_runs_with_allow_client_code() -> None:
    with (
        LocalCluster(
            n_workers=1,
            processes=False,
            dashboard_address=None,
            scheduler_kwargs={"allow_client_code": True},
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        assert client.run_on_scheduler(scheduler_address) == cluster.scheduler_address
        assert client.register_plugin(Counter()) == "OK"
        assert client.get_metadata("counter-started") == cluster.scheduler_address
        assert client.unregister_scheduler_plugin("counter") == "OK"


def test_preload_imports_a_module_and_calls_its_setup(tmp_path: Path) -> None:
    module = tmp_path / "shoal_preload_mod.py"
    module.write_text(
        "from shoal.plugins import SchedulerPlugin\n"
        "class P(SchedulerPlugin):\n"
        "    name = 'preloaded'\n"
        "    def start(self, scheduler):\n"
        "        scheduler.extras.metadata['preloaded'] = True\n"
        "async def shoal_setup(scheduler):\n"
        "    await scheduler.add_plugin(P())\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with (
            LocalCluster(
                n_workers=1,
                processes=False,
                dashboard_address=None,
                scheduler_kwargs={"preload": ("shoal_preload_mod",)},
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            assert client.get_metadata("preloaded") is True
            assert "preloaded" in cluster.scheduler.extras.plugins
        with pytest.raises(PreloadError, match="no_such_shoal_module"):
            LocalCluster(
                n_workers=1,
                processes=False,
                dashboard_address=None,
                scheduler_kwargs={"preload": ("no_such_shoal_module",)},
            )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shoal_preload_mod", None)
