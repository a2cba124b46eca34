"""A worker imports what unpickling dask run specs and ``sizeof`` need before any task."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from shoal.worker.warm_imports import import_task_modules

# a fresh interpreter: in this test process dask is long imported already
_PROBE = textwrap.dedent(
    """
    import sys
    from shoal.worker.server import Worker
    worker = Worker("tcp://127.0.0.1:9", http_port=None)
    after = [m for m in ("dask.sizeof", "dask.utils", "dask._task_spec") if m not in sys.modules]
    assert not after, f"not imported when the worker was made: {after}"
    print("ok")
    """
)


def test_worker_imports_task_modules_when_made() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_missing_modules_are_skipped() -> None:
    assert import_task_modules(("json", "no_such_module_for_shoal")) == ["json"]


def test_making_a_worker_imports_every_task_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the import of the worker module already brought in, constructing a
    Worker imports the whole list itself, before any task thread exists."""
    import shoal.worker.server as server
    from shoal.worker.warm_imports import TASK_MODULES

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        server, "import_task_modules", lambda names=TASK_MODULES: calls.append(names)
    )
    worker = server.Worker("tcp://127.0.0.1:9", http_port=None)
    try:
        assert calls == [TASK_MODULES]
        assert {"dask.sizeof", "dask.utils", "dask._task_spec"} <= set(TASK_MODULES)
    finally:
        worker._local_dir.release()
