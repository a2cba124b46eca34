"""No dead code under src/shoal: vulture (settings and paths in pyproject.toml) finds
nothing there. The tests and benchmarks count as users; names used where vulture cannot
see (dask keywords with no effect, hooks Python calls) are in scripts/vulture_whitelist.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_vulture_finds_no_dead_code_in_src() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vulture"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr  # 3: found something (tests included)
    dead = [line for line in done.stdout.splitlines() if line.startswith("src/")]
    assert dead == [], "dead code (remove it, or whitelist it with the reason):\n" + "\n".join(dead)


def test_vulture_would_see_dead_code(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "def used() -> int:\n    return 1\n\n\ndef forgotten() -> int:\n    return 2\n\n\nused()\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "vulture", str(module), "--min-confidence", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "forgotten" in done.stdout and "'used'" not in done.stdout
