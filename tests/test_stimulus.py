"""Stimulus ids: counter-based, never a timestamp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shoal.stimulus import PROCESS_TOKEN, new_stimulus_id

SRC = Path(__file__).resolve().parents[1] / "src"


def test_ids_never_repeat_within_a_process() -> None:
    ids = [new_stimulus_id("same") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"same-{PROCESS_TOKEN}-") for i in ids)


def test_ids_from_two_processes_differ() -> None:
    code = "from shoal.stimulus import new_stimulus_id; print(new_stimulus_id('x'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert other.startswith("x-") and other.split("-")[1] != PROCESS_TOKEN


def test_no_stimulus_id_is_built_from_a_clock() -> None:
    """The old ids were f"...-{time.time()}": two stimuli in one tick collided."""
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "time.time()}" in line or ("stimulus_id" in line and "{now}" in line)
    ]
    assert offenders == []
