"""A worker imports what unpickling dask run specs and ``sizeof`` need before any task."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

from shoal.comm import Security
from shoal.worker.warm_imports import import_task_modules

# a fresh interpreter: in this test process dask is long imported already; the settings a
# nanny resolves stand in for dask.config
_PROBE = textwrap.dedent(
    """
    import sys
    import shoal.cli, shoal.nanny
    from shoal.worker.server import Worker
    worker = Worker("tcp://127.0.0.1:9", http_port=None)
    assert worker.config.heartbeat_interval == 0.25, worker.config
    early = sorted(m for m in sys.modules if m == "dask" or m.startswith(("dask.", "yaml")))
    assert not early, f"imported before the worker registered: {early}"
    print("ok")
    """
)


def test_a_worker_under_a_nanny_is_made_without_importing_dask() -> None:
    """dask is half of a worker process's start: it is imported once registered."""
    from shoal import inherited_settings, settings

    passed = settings.worker_start_settings()
    passed[inherited_settings.WORKER]["heartbeat_interval"] = 0.25
    env = {**os.environ, inherited_settings.ENV: json.dumps(passed)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_missing_modules_are_skipped() -> None:
    assert import_task_modules(("json", "no_such_module_for_shoal")) == ["json"]


def test_task_modules_are_imported_after_registering_and_before_any_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registered (the scheduler knows the worker) when the import runs; no message of
    the scheduler's is handled, so no task runs, until it is done."""
    import shoal.worker.server as server
    from shoal.scheduler.server import Scheduler
    from shoal.worker.warm_imports import TASK_MODULES

    seen: list[tuple[tuple[str, ...], int, bool]] = []

    async def main() -> None:
        security = Security.local()
        async with Scheduler(port=0, dashboard_address=None, security=security) as scheduler:
            worker = server.Worker(scheduler.address, http_port=None, security=security)

            def record(names: tuple[str, ...] = TASK_MODULES) -> list[str]:
                seen.append((names, len(scheduler.state.workers), worker._warm.is_set()))
                return list(names)

            monkeypatch.setattr(server, "import_task_modules", record)
            assert not seen  # making the worker imports nothing any more
            async with worker:
                assert seen == [(TASK_MODULES, 1, False)]
                assert worker._warm.is_set()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert {"dask.sizeof", "dask.utils", "dask._task_spec"} <= set(TASK_MODULES)
