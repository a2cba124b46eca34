"""docs/worker-states.md and docs/scheduler-states.md are drawn from the tables, and fresh."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from shoal.scheduler.state_transitions import TRANSITIONS as SCHEDULER_TRANSITIONS
from shoal.worker.state_transitions import TRANSITIONS as WORKER_TRANSITIONS

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "state_diagrams.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("state_diagrams", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_diagrams_are_fresh() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("doc", "table"),
    [("worker-states.md", WORKER_TRANSITIONS), ("scheduler-states.md", SCHEDULER_TRANSITIONS)],
)
def test_every_pair_of_the_table_is_an_edge_and_nothing_else(
    doc: str, table: dict[tuple[str, str], object]
) -> None:
    text = (ROOT / "docs" / doc).read_text()
    diagram = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    edges = set()
    for line in diagram.splitlines():
        if "-->" in line and "[*] -->" not in line:
            start, rest = line.strip().split(" --> ")
            finish = rest.split(":")[0]
            edges.add((start, "forgotten" if finish == "[*]" else finish))
    expected = {(a.replace("-", "_"), b.replace("-", "_")) for a, b in table}
    assert edges == expected


def test_check_reports_a_stale_diagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script()
    monkeypatch.setattr(module, "DOCS", tmp_path)
    assert module.main([]) == 0  # writes both into tmp_path
    assert module.main(["--check"]) == 0
    stale = tmp_path / "scheduler-states.md"
    stale.write_text(stale.read_text().replace("queued --> queued", "queued --> memory"))
    assert module.main(["--check"]) == 1
