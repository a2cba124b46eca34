"""Clusters for chaos scenarios, started with the real CLI in a temporary folder.

Rules of this file:

* Every process is started by ``ChaosCluster`` (``shoal scheduler``, ``shoal worker``,
  optionally under a prefix such as ``ip netns exec NAME``) with a marker in its
  environment (``SHOAL_CHAOS_RUN``); children inherit it. Only marked processes are
  ever signalled, by pid: never a process this run did not start.
* ``close`` stops nodes politely, then for good, and returns what was left behind:
  marked processes still alive, worker folders still on disk. Tests assert it is empty.
* Every wait has a deadline and fails with what it was waiting for.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.chaos.dag import LEDGER_ENV
from tests.conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_MARKER = "SHOAL_CHAOS_RUN"
SHOAL = [sys.executable, "-m", "shoal"]


@dataclass
class Node:
    """One ``shoal worker`` process: its nannies, and their worker processes."""

    proc: subprocess.Popen[bytes]
    nworkers: int
    name: str

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (not the nannies) this node runs now."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        pids = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "--no-nanny" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                    pids.append(child.pid)
        return pids

    def all_pids(self) -> list[int]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [self.proc.pid, *(c.pid for c in children)]


@dataclass
class ChaosCluster:
    root: Path
    worker_ttl: str = "60s"
    prefix_scheduler: Sequence[str] = ()
    scheduler_host: str = "127.0.0.1"
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    scheduler: subprocess.Popen[bytes] | None = None
    nodes: list[Node] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    #: soft RLIMIT_NOFILE of every process started (None: inherited). 1,024 is the usual
    #: default soft limit; shoal must cope with it (raise it, keep fds for comm)
    nofile_soft: int | None = None

    def __post_init__(self) -> None:
        self.ledger = self.root / "ledger"
        self.workdir = self.root / "work"
        self.scheduler_file = self.root / "scheduler.json"
        self.token_file = self.root / "token"
        for folder in (self.ledger, self.workdir):
            folder.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(uuid.uuid4().hex + "\n")
        os.chmod(self.token_file, 0o600)

    # -- starting ----------------------------------------------------------------------------
    def _environ(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {
            **os.environ,
            RUN_MARKER: self.marker,
            LEDGER_ENV: str(self.ledger),
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
            # storms lose fewer results with a spare copy of small ones (off by default:
            # it costs one transfer per result)
            "SHOAL_SCHEDULER__SPARE_COPY_BYTES": "64KiB",
        }

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv,
                cwd=self.root,
                env=self._environ(),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit_fds if self.nofile_soft else None,
            )

    def _limit_fds(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile_soft or 1024, hard))

    def start_scheduler(self, *extra: str) -> None:
        argv = [
            *self.prefix_scheduler, *SHOAL, "scheduler", "--host", self.scheduler_host,
            "--port", "0", "--scheduler-file", str(self.scheduler_file),
            "--token-file", str(self.token_file), "--worker-ttl", self.worker_ttl,
            "--dashboard-address", f"{self.scheduler_host}:0", "--log-level", "warning", *extra,
        ]  # fmt: skip
        self.scheduler = self._spawn("scheduler", argv)
        wait_until(self._scheduler_file_ready, 60, "the scheduler to write its scheduler file")

    def _scheduler_file_ready(self) -> bool:
        assert self.scheduler is not None
        if self.scheduler.poll() is not None:
            raise AssertionError(
                f"scheduler exited with {self.scheduler.returncode}: {self.tail()}"
            )
        try:
            return bool(json.loads(self.scheduler_file.read_text()).get("address"))
        except (OSError, ValueError):
            return False

    @property
    def address(self) -> str:
        return str(json.loads(self.scheduler_file.read_text())["address"])

    def start_node(
        self, nworkers: int = 4, *extra: str, prefix: Sequence[str] = (), host: str = "127.0.0.1"
    ) -> Node:
        name = f"node{len(self.nodes)}"
        argv = [
            *prefix, *SHOAL, "worker", "--scheduler-file", str(self.scheduler_file),
            "--nworkers", str(nworkers), "--nthreads", "1", "--host", host,
            "--local-directory", str(self.workdir), "--name", name,
            "--log-level", "warning", *extra,
        ]  # fmt: skip
        node = Node(self._spawn(name, argv), nworkers, name)
        self.nodes.append(node)
        return node

    def worker_pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.worker_pids()]

    # -- signals (only to our own pids) ------------------------------------------------------
    def signal_pid(self, pid: int, sig: signal.Signals) -> bool:
        """Send ``sig`` to ``pid`` if it is one of ours; False if it is gone."""
        try:
            process = psutil.Process(pid)
            if process.environ().get(RUN_MARKER) != self.marker:
                raise AssertionError(f"pid {pid} is not a process of this run")
            process.send_signal(sig)
            return True
        except psutil.NoSuchProcess:
            return False

    def kill_node(self, node: Node) -> None:
        """Node loss: SIGKILL the nanny process and its workers together; returns once all
        of them are gone (a lost machine runs nothing: the next node to start then finds
        their folders stale and removes them)."""
        pids = node.all_pids()
        for pid in pids:
            self.signal_pid(pid, signal.SIGKILL)
        node.proc.wait(timeout=30)
        wait_until(lambda: not any(_alive(pid) for pid in pids), 30, f"{node.name}'s processes")
        self.nodes.remove(node)

    # -- stopping ----------------------------------------------------------------------------
    def ours(self) -> list[psutil.Process]:
        """Live processes started by this run (by us or by one we started)."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                mine = process.environ().get(RUN_MARKER) == self.marker
                if mine and process.pid != os.getpid() and process.status() != "zombie":
                    found.append(process)
        return found

    def close(self) -> dict[str, list[str]]:
        """Stop everything; what was left behind: ``{"processes": [...], "folders": [...]}``."""
        procs = [node.proc for node in self.nodes]
        if self.scheduler is not None:
            procs.append(self.scheduler)
        for proc in procs:  # nodes first: the scheduler sees them leave
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        # what is still alive 10 s after its parents exited is an orphan
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self.ours(), 10, "processes of this run to exit")
        orphans = []
        for process in self.ours():
            with contextlib.suppress(psutil.Error):
                orphans.append(f"{process.pid} {' '.join(process.cmdline()[:8])}")
                process.kill()
        return {
            "processes": orphans,
            "folders": sorted(str(p) for p in self.workdir.iterdir()),
        }

    def tail(self, lines: int = 30) -> str:
        """The last log lines of every process, for failure messages."""
        out = []
        for log in self.logs:
            with contextlib.suppress(OSError):
                text = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
