"""Worker directories carry a lock with their owner's pid; dead owners' ones are removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from shoal.worker.local_dir import (
    LOCK_NAME,
    LocalDirectory,
    remove_directory_of_dead_worker,
    remove_stale_directories,
)
from tests.conftest import wait_until


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    assert done.returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def fake_worker_dir(parent: Path, name: str, pid: int | None) -> Path:
    folder = parent / name
    (folder / "storage").mkdir(parents=True)
    (folder / "storage" / "spilled").write_bytes(b"x" * 1000)
    if pid is not None:
        (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "start_time": 1.0}))
    return folder


def test_only_locked_worker_directories_of_dead_pids_are_removed(tmp_path: Path) -> None:
    pid = dead_pid()
    stale = fake_worker_dir(tmp_path, "shoal-worker-stale", pid)
    unlocked = fake_worker_dir(tmp_path, "shoal-worker-nolock", None)
    other = fake_worker_dir(tmp_path, "not-shoal-stale", pid)
    live = LocalDirectory(str(tmp_path))
    try:
        assert remove_stale_directories(str(tmp_path)) == []  # LocalDirectory cleaned already
        assert not stale.exists()
        assert unlocked.exists() and other.exists() and Path(live.path).exists()
        lock = json.loads((Path(live.path) / LOCK_NAME).read_text())
        assert lock["pid"] == os.getpid()
    finally:
        live.release()
    assert not Path(live.path).exists()


def test_a_live_owner_keeps_its_directory(tmp_path: Path) -> None:
    mine = LocalDirectory(str(tmp_path))
    try:
        assert remove_stale_directories(str(tmp_path)) == []
        assert not remove_directory_of_dead_worker(mine.path)
        assert Path(mine.path).exists()
    finally:
        mine.release()


def test_a_reused_pid_does_not_protect_a_stale_directory(tmp_path: Path) -> None:
    # our own pid, but a start time long before this process began: the owner is gone
    stale = fake_worker_dir(tmp_path, "shoal-worker-reused", os.getpid())
    assert remove_stale_directories(str(tmp_path)) == [str(stale)]


_KILLED_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from shoal.worker.local_dir import LocalDirectory
    d = LocalDirectory(sys.argv[1])
    open(os.path.join(d.path, "spilled"), "wb").write(b"x" * 100_000)
    print(d.path, flush=True)
    time.sleep(120)
    """
)


def test_the_directory_of_a_sigkilled_process_is_removed_by_the_next_one(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        assert path.exists()
        assert remove_stale_directories(str(tmp_path)) == []  # alive: kept
        assert not remove_directory_of_dead_worker(str(path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert path.exists()  # SIGKILL: nobody cleaned up
    assert remove_directory_of_dead_worker(str(path))
    assert not path.exists()


def test_a_folder_left_half_made_by_a_dead_process_is_swept(tmp_path: Path) -> None:
    """A worker killed while making its folder leaves a staging folder naming its pid."""
    import subprocess
    import sys

    from shoal.worker.local_dir import STAGING_PREFIX, remove_stale_directories

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    abandoned = tmp_path / f"{STAGING_PREFIX}{dead.stdout.strip()}-abc123"
    abandoned.mkdir()
    (abandoned / "shoal-worker.lock").write_text("")  # killed before writing it
    ours = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def456"
    ours.mkdir()
    assert remove_stale_directories(str(tmp_path)) == [str(abandoned)]
    assert not abandoned.exists() and ours.exists()


def test_a_killed_owner_not_yet_reaped_counts_as_dead(tmp_path: Path) -> None:
    """A SIGKILLed worker stays a zombie until its parent (or init) reaps it: its folder
    is stale already, and a sweep in that window must not keep it for ever."""
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(child.pid).create_time()
        folder = tmp_path / "shoal-worker-zombie"
        folder.mkdir()
        (folder / LOCK_NAME).write_text(json.dumps({"pid": child.pid, "start_time": started}))
        assert remove_stale_directories(str(tmp_path)) == []  # alive: kept
        os.kill(child.pid, signal.SIGKILL)
        zombie = psutil.Process(child.pid)
        wait_until(lambda: zombie.status() == psutil.STATUS_ZOMBIE, 30, "a zombie child")
        assert remove_stale_directories(str(tmp_path)) == [str(folder)]
    finally:
        child.kill()
        child.wait(timeout=60)
