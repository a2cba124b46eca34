"""Memory limits. (Spilling and the memory monitor arrive with the memory issue.)"""

from __future__ import annotations

import logging

import psutil

from shoal.sizes import format_bytes, parse_bytes

logger = logging.getLogger("shoal.worker")


def system_memory() -> int:
    """The machine's memory in bytes, respecting a cgroup limit when one is set."""
    total = int(psutil.virtual_memory().total)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def parse_memory_limit(limit: object, nthreads: int, total_cores: int | None = None) -> int:
    """Bytes from ``"auto"``, ``"5GB"``, a fraction of machine memory, a number, or 0/None."""
    if limit is None or limit == 0 or limit == "0":
        return 0
    machine = system_memory()
    if limit == "auto":
        cores = total_cores or psutil.cpu_count() or 1
        return int(machine * min(1.0, nthreads / cores))
    if isinstance(limit, float) and 0 < limit <= 1:
        return int(machine * limit)
    value = parse_bytes(limit) if isinstance(limit, str) else int(limit)  # type: ignore[call-overload]
    if value > machine:
        logger.warning(
            "memory_limit %s is more than the machine has; using %s",
            format_bytes(value),
            format_bytes(machine),
        )
        return machine
    return value
