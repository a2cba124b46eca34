"""The execution ledger: one line per task execution, one file per worker process.

Rules of this file:

* Workers append (``dag.chaos_task``); this module only reads. A worker killed in the
  middle of a write leaves at most a partial last line, which is still counted as the
  execution it was.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def executions(directory: Path) -> Counter[str]:
    """``{key: how many times it ran}`` over every process's file."""
    counts: Counter[str] = Counter()
    for path in directory.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line:
                counts[line] += 1
    return counts


def size(directory: Path) -> int:
    """Bytes written so far: cheap progress for the watchdog."""
    return sum(p.stat().st_size for p in directory.glob("*.log"))


def processes(directory: Path) -> int:
    """How many worker processes executed at least one task."""
    return len(list(directory.glob("*.log")))
