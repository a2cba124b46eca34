"""A cgroup v2 with a hard memory limit for the memory scenario (root only).

Rules of this file:

* The cgroup is named with this process's pid and removed in ``close`` (after its
  processes exited); nothing else under /sys/fs/cgroup is touched.
* Processes join it at exec time: the command is prefixed with ``sh -c 'echo $$ >
  cgroup.procs && exec "$@"'``, so every process of the node is inside from its start.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def unavailable() -> str | None:
    """None if a memory-limited cgroup v2 can be made here, else why not."""
    if os.geteuid() != 0:
        return "cgroups need root"
    controllers = ROOT / "cgroup.controllers"
    if not controllers.exists():
        return "no cgroup v2 hierarchy at /sys/fs/cgroup (this machine mounts cgroup v1)"
    if "memory" not in controllers.read_text().split():
        return "the cgroup v2 memory controller is not available"
    if not os.access(ROOT, os.W_OK):
        return "/sys/fs/cgroup is not writable"
    return None


class MemoryCgroup:
    def __init__(self, max_bytes: int) -> None:
        self.path = ROOT / f"shoal-chaos-{os.getpid()}"
        subtree = ROOT / "cgroup.subtree_control"
        if "memory" not in subtree.read_text().split():
            subtree.write_text("+memory")
        self.path.mkdir()
        (self.path / "memory.max").write_text(str(max_bytes))
        swap = self.path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")  # the limit must bite: no escape into swap

    def prefix(self) -> list[str]:
        """Put before a command: it runs inside the cgroup from its first instruction."""
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def events(self) -> dict[str, int]:
        lines = (self.path / "memory.events").read_text().splitlines()
        return {name: int(value) for name, value in (line.split() for line in lines)}

    def peak(self) -> int | None:
        peak = self.path / "memory.peak"
        return int(peak.read_text()) if peak.exists() else None

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not (self.path / "cgroup.procs").read_text().strip():
                break
            time.sleep(0.2)
        self.path.rmdir()
