"""scripts/api_coverage.py runs, and shoal has what issue 15 asks for on this branch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "api_coverage.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_the_report_prints_counts_and_missing_names() -> None:
    out = run_script()
    assert out.returncode == 0, out.stderr
    for name in ("distributed.Client", "distributed.__all__", "distributed.Future"):
        assert f"{name}: " in out.stdout
    assert "distributed.as_completed: " in out.stdout and "LocalCluster: " in out.stdout


def test_client_methods_and_the_names_of_this_work_are_there() -> None:
    out = run_script("--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    client = report["distributed.Client"]
    assert len(client["have"]) >= 52, client["missing"]
    wanted = {
        "upload_file", "register_plugin", "unregister_worker_plugin",
        "register_worker_callbacks", "run_on_scheduler", "replicate", "wait_for_workers",
        "restart_workers", "get_versions", "run", "get_executor", "processing", "ncores",
        "nbytes", "call_stack", "profile", "get_task_stream", "dump_cluster_state",
        "log_event", "get_events", "set_metadata", "get_metadata", "as_current", "current",
        "write_scheduler_file", "scheduler_info", "dashboard_link",
    }  # fmt: skip
    assert wanted <= set(client["have"])
    assert {"batches", "next_batch", "has_ready", "clear"} <= set(
        report["distributed.as_completed"]["have"]
    )
    top = set(report["distributed.__all__"]["have"])
    assert {"performance_report", "get_task_stream", "WorkerPlugin", "SchedulerPlugin"} <= top
    assert {"NannyPlugin", "UploadFile", "UploadDirectory", "PipInstall", "Environ"} <= top


def test_the_readme_shows_the_current_client_count() -> None:
    report = json.loads(run_script("--json").stdout)
    client = report["distributed.Client"]
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"distributed.Client: {len(client['have'])} of {client['total']}" in readme
    for name in client["missing"]:
        assert f"`{name}`" in readme, f"README does not explain why {name} is missing"
