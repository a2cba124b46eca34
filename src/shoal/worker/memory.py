"""Memory limits: how much memory the machine (or container) has, and ``memory_limit`` parsing.

``system_memory()`` is the least of the physical memory, the cgroup limits that apply to
this process (v1: ``memory.limit_in_bytes`` and ``memory.soft_limit_in_bytes``; v2:
``memory.max`` and ``memory.high``) and a hard ``RLIMIT_RSS``. The cgroup files are looked
up both under this process's own cgroup (from ``/proc/self/cgroup``) and at the mount's
root (inside a container the two are the same); the roots are parameters so that tests
can fake them in a temporary directory.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator

import psutil

from shoal.sizes import format_bytes, parse_bytes

logger = logging.getLogger("shoal.worker")

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"

_V1_FILES = ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
_V2_FILES = ("memory.max", "memory.high")
_OFF = ("", "none", "0", "false")


def system_memory(cgroup_root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int:
    """The machine's memory in bytes, respecting cgroup limits and RLIMIT_RSS."""
    total = int(psutil.virtual_memory().total)
    for limit in _cgroup_limits(cgroup_root, proc_cgroup):
        total = min(total, limit)
    return min(total, _rlimit_rss() or total)


def _cgroup_limits(cgroup_root: str, proc_cgroup: str) -> Iterator[int]:
    """Every positive limit in the cgroup files that apply to us ("max" means none)."""
    v1_path, v2_path = _own_cgroups(proc_cgroup)
    places = [
        (os.path.join(cgroup_root, "memory", v1_path.lstrip("/")), _V1_FILES),
        (os.path.join(cgroup_root, "memory"), _V1_FILES),
        (os.path.join(cgroup_root, v2_path.lstrip("/")), _V2_FILES),
        (cgroup_root, _V2_FILES),
    ]
    for directory, names in places:
        for name in names:
            value = _read_limit(os.path.join(directory, name))
            if value is not None:
                yield value


def _own_cgroups(proc_cgroup: str) -> tuple[str, str]:
    """This process's cgroup paths: (v1 memory controller, v2 unified)."""
    v1 = v2 = "/"
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _read_limit(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None  # "max": no limit


def _rlimit_rss() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    hard = resource.getrlimit(resource.RLIMIT_RSS)[1]
    return hard if hard > 0 and hard != resource.RLIM_INFINITY else None


def parse_memory_limit(
    limit: object,
    nthreads: int,
    total_cores: int | None = None,
    *,
    machine: int | None = None,
) -> int:
    """Bytes from ``"auto"``, ``"5GB"``, a fraction <= 1 of machine memory, a number, 0/None.

    0 means no limit. A limit above the machine's memory is clamped to it, with a warning.
    ``machine`` overrides ``system_memory()`` (tests).
    """
    if limit is None or limit is False or (isinstance(limit, str) and limit.lower() in _OFF):
        return 0
    if isinstance(limit, int | float) and limit == 0:
        return 0
    total = machine if machine is not None else system_memory()
    if limit == "auto":
        cores = total_cores or psutil.cpu_count() or 1
        return int(total * min(1.0, nthreads / cores))
    value, may_be_fraction = _as_number(limit)
    if may_be_fraction and 0 < value <= 1:
        return int(total * value)
    if value < 0:
        raise ValueError(f"memory_limit must not be negative, got {limit!r}")
    if value > total:
        logger.warning(
            "memory_limit %s is more than this machine has; using %s",
            format_bytes(value),
            format_bytes(total),
        )
        return total
    return int(value)


def _as_number(limit: object) -> tuple[float, bool]:
    """(the number, whether it is a bare number and so may be a fraction); junk raises."""
    if isinstance(limit, bool) or not isinstance(limit, str | int | float):
        raise ValueError(f"cannot use {limit!r} as a memory_limit")
    if isinstance(limit, str):
        try:
            value, bare = float(limit), True
        except ValueError:
            value, bare = float(parse_bytes(limit)), False
    else:
        value, bare = float(limit), True
    if not math.isfinite(value):
        raise ValueError(f"cannot use {limit!r} as a memory_limit")
    return value, bare


__all__ = ["parse_memory_limit", "system_memory"]
