"""A worker imports what unpickling dask run specs and ``sizeof`` need before any task."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from shoal.worker.warm_imports import import_task_modules

# a fresh interpreter: in this test process dask is long imported already
_PROBE = textwrap.dedent(
    """
    import sys
    from shoal.worker.server import Worker
    before = {m for m in ("dask.sizeof", "dask.utils", "dask._task_spec") if m in sys.modules}
    assert not before, f"already imported by the import of the worker: {before}"
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
