"""compare.py's bulk rows: the 200 MB transfer over TCP with shared memory off, and the
million-task runs (``--million N``), which only shoal runs (dask would take an hour).

Rules of this file: one function per row family, so compare.py adds them with a few
lines; the million-task runs use a scheduler in its own process (``shoal scheduler``,
started here), so that its memory is the scheduler's alone.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TCP_ROW = "200 MB over TCP (shm off)"


def run_shoal_tcp(
    workload: Callable[[Any], None], measure: Callable[[Any, Any, int], float], repeat: int
) -> float:
    """The transfer row, between two shoal workers with shared memory turned off."""
    import shoal

    with (
        shoal.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, shared_memory=False
        ) as cluster,
        shoal.Client(cluster, set_as_default=False) as client,
    ):
        return measure(client, workload, repeat)


def _noop(x: Any) -> Any:
    return x


def _scheduler_numbers(dask_scheduler: Any = None) -> dict[str, float]:
    import psutil

    scheduler = dask_scheduler
    return {
        "rss": psutil.Process().memory_info().rss,
        "tasks": len(scheduler.state.tasks),
        **scheduler.loop_monitor.stats(),
        "freezes": scheduler.gc_policy.freezes,
        "slowest_flush": getattr(scheduler, "slowest_flush", (0.0, "")),
        "stall_where": scheduler.loop_monitor.max_stall_where[:3],
    }


def _reset_monitor(dask_scheduler: Any = None) -> None:
    dask_scheduler.loop_monitor.reset()
    dask_scheduler.slowest_flush = (0.0, "")


def _probe_flushes(dask_scheduler: Any = None) -> None:
    """Time each ``flush`` (one batch of events through the state machine), keeping the
    slowest and what it held: a stall longer than that is spent elsewhere (decoding)."""
    from collections import Counter

    scheduler = dask_scheduler
    flush = scheduler.flush
    scheduler.slowest_flush = (0.0, "")

    def timed_flush(whole: bool = False) -> None:
        events = list(scheduler._pending)
        start = time.perf_counter()
        flush(whole)
        took = time.perf_counter() - start
        events = events[: len(events) - len(scheduler._pending)]  # those of this pass
        if took > scheduler.slowest_flush[0]:
            counts = Counter(type(event).__name__ for event in events)
            tasks = sum(len(getattr(event, "tasks", ())) for event in events)
            scheduler.slowest_flush = (took, f"{dict(counts)} with {tasks} new tasks")

    scheduler.flush = timed_flush


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduler on port {port} after {timeout:.0f} s") from None
            time.sleep(0.1)


#: a run whose processes together pass this many bytes is stopped (the machine's safety)
MEMORY_CAP = 12 * 2**30


class PeakMemory:
    """Peak RSS of this process (the client) and of the scheduler and worker processes.

    A thread samples them every ``interval`` seconds; when their sum passes ``cap`` it
    kills the scheduler and workers (the run then fails instead of taking the machine).
    """

    def __init__(self, scheduler_pid: int, worker_pid: int, interval: float = 0.2) -> None:
        import psutil

        self._procs = {
            "client": psutil.Process(),
            "scheduler": psutil.Process(scheduler_pid),
            "workers": psutil.Process(worker_pid),
        }
        self.peaks = dict.fromkeys(self._procs, 0)
        self.capped = False
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self, name: str) -> int:
        import psutil

        proc = self._procs[name]
        try:
            procs = [proc, *proc.children(recursive=True)] if name == "workers" else [proc]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = {name: self._rss(name) for name in self._procs}
            for name, rss in now.items():
                self.peaks[name] = max(self.peaks[name], rss)
            if sum(now.values()) > MEMORY_CAP and not self.capped:
                self.capped = True
                for name in ("workers", "scheduler"):
                    for proc in [*self._procs[name].children(recursive=True), self._procs[name]]:
                        proc.kill()

    def reset(self) -> None:
        self.peaks = dict.fromkeys(self._procs, 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def million_rows(ntasks: int, only: tuple[str, ...] = ("map", "dask")) -> list[str]:
    """A ``client.map`` of ``ntasks`` no-ops and a dask graph of ~``ntasks`` tasks (the
    rows named in ``only``); each line is also printed as soon as it is measured."""
    import dask.array as da

    import shoal
    from shoal.comm import Security

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp, "token")
        token.write_text(secrets.token_hex(16))
        token.chmod(0o600)
        port = str(20000 + os.getpid() % 20000)
        common = ["--token-file", str(token), "--log-level", "warning"]
        here = Path(__file__).parent  # so that both import this module's functions
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "shoal", "scheduler", "--port", port, "--no-dashboard",
             "--allow-client-code", *common], cwd=here,
        )  # fmt: skip
        worker = subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", f"tcp://127.0.0.1:{port}",
             "--nworkers", "2", "--nthreads", "1", *common], cwd=here,
        )  # fmt: skip
        memory = PeakMemory(scheduler.pid, worker.pid)
        try:
            _wait_for_port(int(port), 60.0)
            security = Security(token=token.read_text())
            with shoal.Client(f"tcp://127.0.0.1:{port}", security=security) as client:
                client.wait_for_workers(2, timeout=60)
                base = client.run_on_scheduler(_scheduler_numbers)["rss"]
                client.run_on_scheduler(_probe_flushes)

                def one(
                    name: str, expected: int, submit: Callable[[], Any], wait: Callable[[Any], None]
                ) -> None:
                    client.run_on_scheduler(_reset_monitor)
                    memory.reset()
                    start = time.perf_counter()
                    handle = submit()
                    submitted = time.perf_counter() - start
                    deadline = time.monotonic() + 600
                    numbers = client.run_on_scheduler(_scheduler_numbers)
                    while numbers["tasks"] < 0.99 * expected and time.monotonic() < deadline:
                        time.sleep(0.5)  # memory per task once the graph is in, or at its peak
                        latest = client.run_on_scheduler(_scheduler_numbers)
                        if latest["tasks"] <= numbers["tasks"]:
                            break  # tasks finish and go faster than new ones arrive
                        numbers = latest
                    print(
                        f"{name}: submitted in {submitted:.1f}s; the scheduler held "
                        f"{numbers['tasks']:,} tasks at {numbers['rss'] / 2**20:,.0f} MiB "
                        f"after {time.perf_counter() - start:.1f}s",
                        flush=True,
                    )  # what a run stopped by its timeout still tells
                    wait(handle)
                    total = time.perf_counter() - start
                    after = client.run_on_scheduler(_scheduler_numbers)
                    per_task = (numbers["rss"] - base) / max(numbers["tasks"], 1)
                    lines.append(
                        f"{name:<24} submit {submitted:.1f}s, done {total:.1f}s "
                        f"({ntasks / total:,.0f} tasks/s), scheduler {per_task:,.0f} B/task "
                        f"with {numbers['tasks']:,} tasks, longest loop stall "
                        f"{after['max_stall'] * 1000:.0f} ms, longest full GC "
                        f"{after['max_full_gc'] * 1000:.0f} ms ({after['full_gcs']} full GCs, "
                        f"{after['freezes']} freezes), peak RSS client "
                        f"{memory.peaks['client'] / 2**20:,.0f} MiB, scheduler "
                        f"{memory.peaks['scheduler'] / 2**20:,.0f} MiB, workers "
                        f"{memory.peaks['workers'] / 2**20:,.0f} MiB, load average "
                        f"{os.getloadavg()[0]:.2f}; slowest flush "
                        f"{after['slowest_flush'][0] * 1000:.0f} ms: {after['slowest_flush'][1]}; "
                        f"the longest stall was in {after['stall_where'] or 'no sample'}"
                    )
                    print(lines[-1], flush=True)
                    client.run_on_scheduler(_reset_monitor)
                    start = time.perf_counter()
                    del handle  # the client releases every key: the scheduler forgets them
                    while client.run_on_scheduler(_scheduler_numbers)["tasks"] > 0:
                        if time.perf_counter() - start > 300:
                            break
                        time.sleep(0.2)
                    freed = client.run_on_scheduler(_scheduler_numbers)
                    where = freed["stall_where"] or "no sample"
                    lines.append(
                        f"{name:<24} released: {freed['tasks']:,} tasks left after "
                        f"{time.perf_counter() - start:.1f}s, longest loop stall "
                        f"{freed['max_stall'] * 1000:.0f} ms in {where}"
                    )
                    print(lines[-1], flush=True)

                if "map" in only:
                    one(
                        f"map {ntasks:,}",
                        ntasks,
                        lambda: client.map(_noop, range(ntasks), pure=False),
                        lambda futures: (client.gather(futures), None)[1],
                    )
                if "dask" not in only:
                    return lines
                chunks = ntasks // 3  # a chunk, its partial sum and a tree node each
                graph = da.ones(chunks * 4, chunks=4).sum(split_every=2)
                one(
                    f"dask graph {len(graph.__dask_graph__()):,}",
                    len(graph.__dask_graph__()),
                    lambda: client.compute(graph, optimize_graph=False),
                    lambda future: (future.result(), None)[1],
                )
        finally:
            memory.close()
            for proc in (worker, scheduler):
                proc.terminate()
            for proc in (worker, scheduler):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return lines


def bulk_times(
    names: list[str],
    repeat: int,
    workload: Callable[[Any], None],
    measure: Callable[[Any, Any, int], float],
) -> tuple[dict[str, float], dict[str, float]]:
    """shoal and floor seconds for the bulk rows among ``names``."""
    if TCP_ROW not in names:
        return {}, {}
    from floors import socket_seconds

    shoal_seconds = run_shoal_tcp(workload, measure, repeat)
    floor_seconds = min(socket_seconds(200 * 2**20) for _ in range(repeat))
    return {TCP_ROW: shoal_seconds}, {TCP_ROW: floor_seconds}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the million-task rows alone")
    parser.add_argument("ntasks", type=int)
    parser.add_argument("--only", default="map,dask", help="map, dask or both")
    args = parser.parse_args()
    million_rows(args.ntasks, tuple(args.only.split(",")))
