"""A worker process dies with its nanny: the parent-death signal and the race check.

Each case runs in fresh processes: asking for the signal in the test process itself
would tie pytest's life to its parent's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)

#: a parent that starts a child asking to die with it, prints the child's pid, and waits
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
    print(child.pid, flush=True)
    sys.stdin.read()
    """
)
CHILD = textwrap.dedent(
    """
    import sys, time
    from shoal.worker.parent_death import die_with_parent
    assert die_with_parent(int(sys.argv[1]))
    print("asked", flush=True)
    time.sleep(600)
    """
)


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_child_that_asked_dies_when_its_parent_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        try:
            assert parent.stdout.readline() == b"asked\n"  # the child's print, via our pipe
            assert not gone(child)
            parent.kill()  # SIGKILL: the parent runs no clean-up of its own
            parent.wait()
            wait_until(lambda: gone(child), 30, "the child to die with its parent")
        finally:
            if not gone(child):
                os.kill(child, signal.SIGKILL)


def test_asking_too_late_is_seen_the_parent_is_not_the_one_given() -> None:
    check = (
        "import os; from shoal.worker.parent_death import die_with_parent; "
        "print(die_with_parent(os.getppid()), die_with_parent(os.getppid() + 1000000))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, check=True)
    assert out.stdout.split() == [b"True", b"False"]


def test_a_worker_whose_nanny_is_already_gone_does_not_start() -> None:
    """``shoal worker --nanny-pid`` with a pid that is not its parent (the nanny died
    before the worker asked for the signal): it exits before reaching any scheduler."""
    not_parent = os.getpid() + 1000000
    out = subprocess.run(
        [sys.executable, "-m", "shoal", "worker", "tcp://127.0.0.1:9", "--no-nanny",
         "--no-auth", "--nanny-pid", str(not_parent)],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"the nanny (pid {not_parent}) is gone".encode() in out.stderr
