"""A worker process that dies with its nanny: Linux's parent-death signal.

Rules of this file:

* The worker asks for the signal itself, first thing at start (``shoal worker
  --nanny-pid PID``), not its nanny from a pre-exec hook: code between fork and exec is
  unsafe in a process with threads (a LocalCluster's nannies live in the user's process)
  and forces a full fork of that process for every worker start.
* The signal comes when the *thread* that started the process ends; nannies start their
  workers from their event loop's thread, which lives as long as the nanny does.
* The nanny may die between the fork and the request: the parent is checked right after
  the request, and a worker whose nanny is already gone exits instead of serving.
* Elsewhere than Linux there is no such signal; only the check is made.
"""

from __future__ import annotations

import os
import signal
import sys

#: prctl option: the signal this process gets when its parent thread ends
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when our parent dies; return whether ``parent_pid`` is still our
    parent (False: it died before we asked, the caller should exit)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # no find_library: that forks ldconfig
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    return os.getppid() == parent_pid


__all__ = ["PR_SET_PDEATHSIG", "die_with_parent"]
