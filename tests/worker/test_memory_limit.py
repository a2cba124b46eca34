"""memory_limit parsing and the machine's memory as cgroups limit it (files faked)."""

from __future__ import annotations

import logging
from pathlib import Path

import psutil
import pytest

from shoal.worker.memory import parse_memory_limit, system_memory

GB = 10**9
MACHINE = 16 * GB


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, 0),
        (0, 0),
        ("0", 0),
        (False, 0),
        ("none", 0),
        (5 * GB, 5 * GB),
        ("5GB", 5 * GB),
        ("4GiB", 4 * 2**30),
        ("10e9", 10 * GB),
        ("300MB", 300 * 10**6),
        (0.5, MACHINE // 2),
        ("0.25", MACHINE // 4),
        (1, MACHINE),
    ],
)
def test_parse(limit: object, expected: int) -> None:
    assert parse_memory_limit(limit, nthreads=1, machine=MACHINE) == expected


def test_auto_is_machine_memory_split_by_thread_share() -> None:
    assert parse_memory_limit("auto", nthreads=2, total_cores=8, machine=MACHINE) == MACHINE // 4
    assert parse_memory_limit("auto", nthreads=16, total_cores=8, machine=MACHINE) == MACHINE


def test_a_unit_is_never_a_fraction() -> None:
    assert parse_memory_limit("1B", nthreads=1, machine=MACHINE) == 1


def test_more_than_the_machine_is_clamped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="shoal.worker"):
        assert parse_memory_limit("100GB", nthreads=1, machine=MACHINE) == MACHINE
    assert "more than this machine has" in caplog.text


@pytest.mark.parametrize("junk", ["lots", "-5GB", -3, float("nan"), [1], "inf"])
def test_junk_raises(junk: object) -> None:
    with pytest.raises(ValueError):
        parse_memory_limit(junk, nthreads=1, machine=MACHINE)


def _fake_cgroups(tmp_path: Path, proc_lines: str, files: dict[str, str]) -> tuple[str, str]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_lines)
    return str(root), str(proc)


def test_cgroup_v2_max_and_high(tmp_path: Path) -> None:
    root, proc = _fake_cgroups(
        tmp_path, "0::/job/a\n", {"job/a/memory.max": "3000000000\n", "job/a/memory.high": "max\n"}
    )
    assert system_memory(root, proc) == 3 * GB
    root, proc = _fake_cgroups(
        tmp_path, "0::/job/a\n", {"job/a/memory.max": "max\n", "job/a/memory.high": "2000000000\n"}
    )
    assert system_memory(root, proc) == 2 * GB


def test_cgroup_v2_at_the_root_of_a_container(tmp_path: Path) -> None:
    root, proc = _fake_cgroups(tmp_path, "0::/\n", {"memory.max": "1500000000\n"})
    assert system_memory(root, proc) == 1_500_000_000


def test_cgroup_v1_limit_and_soft_limit(tmp_path: Path) -> None:
    root, proc = _fake_cgroups(
        tmp_path,
        "5:cpu,cpuacct:/\n4:memory:/slurm/job7\n0::/\n",
        {
            "memory/slurm/job7/memory.limit_in_bytes": "4000000000\n",
            "memory/slurm/job7/memory.soft_limit_in_bytes": "9223372036854771712\n",
        },
    )
    assert system_memory(root, proc) == 4 * GB
    root, proc = _fake_cgroups(
        tmp_path, "4:memory:/\n", {"memory/memory.soft_limit_in_bytes": "2500000000\n"}
    )
    assert system_memory(root, proc) == 2_500_000_000


def test_no_cgroup_limit_means_physical_memory(tmp_path: Path) -> None:
    root, proc = _fake_cgroups(tmp_path, "0::/\n", {"memory.max": "max\n"})
    assert system_memory(root, proc) == psutil.virtual_memory().total
    assert system_memory(str(tmp_path / "absent"), str(tmp_path / "absent")) == (
        psutil.virtual_memory().total
    )


def test_a_cgroup_limit_shrinks_auto_and_clamps(tmp_path: Path) -> None:
    root, proc = _fake_cgroups(tmp_path, "0::/\n", {"memory.max": "2000000000\n"})
    machine = system_memory(root, proc)
    assert parse_memory_limit("auto", nthreads=1, total_cores=2, machine=machine) == GB
    assert parse_memory_limit("8GB", nthreads=1, machine=machine) == 2 * GB
