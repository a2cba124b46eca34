"""A cgroup with a hard memory limit for the memory scenario (root only), v2 or v1.

Rules of this file:

* Whichever hierarchy the machine mounts: cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``,
  ``memory.max``, ``memory.events``, ``memory.peak``) or v1's memory controller
  (``/sys/fs/cgroup/memory``: ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``
  where swap accounting is on, ``memory.oom_control``'s ``oom_kill``,
  ``memory.max_usage_in_bytes``). ``events()`` reads the same names on both
  (``oom_kill``, and v1's ``failcnt`` as ``max``: times the limit was hit).
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
V1_MEMORY = ROOT / "memory"


def version() -> int | None:
    """2 or 1: the hierarchy whose memory controller is usable here; None if neither."""
    controllers = ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return 2
    if (V1_MEMORY / "memory.limit_in_bytes").exists():
        return 1
    return None


def unavailable() -> str | None:
    """None if a memory-limited cgroup can be made here, else why not."""
    if os.geteuid() != 0:
        return "cgroups need root"
    found = version()
    if found is None:
        return "no cgroup memory controller (neither v2 at /sys/fs/cgroup nor v1 at memory/)"
    if not os.access(ROOT if found == 2 else V1_MEMORY, os.W_OK):
        return f"the cgroup v{found} hierarchy is not writable"
    return None


class MemoryCgroup:
    def __init__(self, max_bytes: int) -> None:
        found = version()
        assert found is not None, unavailable()
        self.version = found
        name = f"shoal-chaos-{os.getpid()}"
        if found == 2:
            subtree = ROOT / "cgroup.subtree_control"
            if "memory" not in subtree.read_text().split():
                subtree.write_text("+memory")
            self.path = ROOT / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(max_bytes))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")  # the limit must bite: no escape into swap
        else:
            self.path = V1_MEMORY / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(max_bytes))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # memory + swap: no escape into swap (set after the limit)
                memsw.write_text(str(max_bytes))
            else:
                (self.path / "memory.swappiness").write_text("0")

    def prefix(self) -> list[str]:
        """Put before a command: it runs inside the cgroup from its first instruction."""
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def events(self) -> dict[str, int]:
        """``oom_kill`` (and more) on either version."""
        if self.version == 2:
            lines = (self.path / "memory.events").read_text().splitlines()
        else:
            lines = (self.path / "memory.oom_control").read_text().splitlines()
            failcnt = (self.path / "memory.failcnt").read_text().strip()
            lines.append(f"max {failcnt}")
        return {name: int(value) for name, value in (line.split() for line in lines)}

    def peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        peak = self.path / name
        return int(peak.read_text()) if peak.exists() else None

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not (self.path / "cgroup.procs").read_text().strip():
                break
            time.sleep(0.2)
        self.path.rmdir()
