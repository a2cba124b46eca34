"""A worker's local directory (spill files and the like), and cleaning up after dead ones.

A worker killed with SIGKILL cannot remove its directory; its spilled data would stay on
disk forever. So each directory carries a lock file naming its owner, and:

* a starting worker removes the ``shoal-worker-*`` directories beside its own whose
  owner is dead (``remove_stale_directories``);
* the nanny removes its worker's directory once the process has exited (it learns the
  directory in ``worker_ready``).

Rules of this file:

* Only directories that carry shoal's lock file are ever removed, and only when the pid
  written in it is dead (or was reused by a process started later), and, where ``flock``
  exists, no live process holds the lock (so a live worker in another pid namespace
  sharing the folder is never touched).
* The owner keeps the lock file open and locked for its whole life.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import psutil

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

PREFIX = "shoal-worker-"
#: a worker directory being made: ``.shoal-worker-starting-<pid>-<random>``
STAGING_PREFIX = ".shoal-worker-starting-"
LOCK_NAME = "shoal-worker.lock"
#: seconds of slack when comparing a process's start time with the one in a lock file
_START_TIME_SLACK = 1.0


class LocalDirectory:
    """A fresh ``shoal-worker-*`` directory, locked by this process until ``release``."""

    def __init__(self, parent: str | None = None) -> None:
        parent = parent or tempfile.gettempdir()
        os.makedirs(parent, exist_ok=True)
        remove_stale_directories(parent)
        # made under a staging name that carries our pid, locked, then renamed: a process
        # killed half way leaves a staging folder the sweep can judge by its pid alone
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent)
        lock = _write_lock(Path(staging) / LOCK_NAME)
        self.path = os.path.join(parent, PREFIX + os.path.basename(staging).rsplit("-", 1)[1])
        os.rename(staging, self.path)
        # a Worker made and dropped without close() (a test, help(), a failed start) must
        # not leak the open lock file or the folder: this runs when it is collected
        self._finalizer = weakref.finalize(self, _release, lock, self.path)

    def release(self, remove: bool = True) -> None:
        """Give the lock up; remove the directory too unless told not to."""
        if remove:
            self._finalizer()
        elif self._finalizer.alive:
            _, (lock, _path), _ = self._finalizer.detach()  # type: ignore[misc]
            lock.close()


def _release(lock: IO[str], path: str) -> None:
    lock.close()
    shutil.rmtree(path, ignore_errors=True)


def _write_lock(path: Path) -> IO[str]:
    lock = open(path, "w")  # noqa: SIM115 - held open (and locked) for the owner's life
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    json.dump({"pid": os.getpid(), "start_time": _start_time(os.getpid())}, lock)
    lock.flush()
    return lock


def _start_time(pid: int) -> float | None:
    """When ``pid`` started; None when it does not run (a zombie, killed and not yet reaped
    by its parent, runs no more: its folder is stale already)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable, or being written right now: not ours to judge
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def owner_is_dead(lock_path: Path) -> bool:
    """True when the process named in ``lock_path`` no longer runs (and holds no lock)."""
    info = _read_lock(lock_path)
    if info is None:
        return False
    pid = info["pid"]
    started = _start_time(pid)
    recorded = info.get("start_time")
    alive = started is not None and (
        not isinstance(recorded, int | float) or abs(started - recorded) <= _START_TIME_SLACK
    )
    return not alive and not _locked_by_someone(lock_path)


def _locked_by_someone(lock_path: Path) -> bool:
    if fcntl is None:
        return False
    try:
        with open(lock_path) as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except OSError:
        return True  # cannot even open it: leave it alone
    return False


def remove_stale_directories(parent: str) -> list[str]:
    """Remove ``shoal-worker-*`` directories in ``parent`` whose owner is dead; their paths."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(STAGING_PREFIX) and _staging_owner_dead(entry.name):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
            continue
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        lock = Path(entry.path) / LOCK_NAME
        if lock.is_file() and owner_is_dead(lock):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _staging_owner_dead(name: str) -> bool:
    pid_text = name[len(STAGING_PREFIX) :].split("-", 1)[0]
    return pid_text.isdigit() and _start_time(int(pid_text)) is None


def remove_directory_of_dead_worker(path: str | None) -> bool:
    """The nanny's cleanup: remove ``path`` if it is a worker directory whose owner died."""
    if not path or not os.path.basename(path.rstrip("/")).startswith(PREFIX):
        return False
    lock = Path(path) / LOCK_NAME
    if not lock.is_file() or not owner_is_dead(lock):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True
