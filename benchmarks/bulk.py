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
    }


def _reset_monitor(dask_scheduler: Any = None) -> None:
    dask_scheduler.loop_monitor.reset()


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


def million_rows(ntasks: int) -> list[str]:
    """A ``client.map`` of ``ntasks`` no-ops and a dask graph of ~``ntasks`` tasks."""
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
        try:
            _wait_for_port(int(port), 60.0)
            security = Security(token=token.read_text())
            with shoal.Client(f"tcp://127.0.0.1:{port}", security=security) as client:
                client.wait_for_workers(2, timeout=60)
                base = client.run_on_scheduler(_scheduler_numbers)["rss"]

                def one(
                    name: str, expected: int, submit: Callable[[], Any], wait: Callable[[Any], None]
                ) -> None:
                    client.run_on_scheduler(_reset_monitor)
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
                        f"{after['freezes']} freezes)"
                    )

                one(
                    f"map {ntasks:,}",
                    ntasks,
                    lambda: client.map(_noop, range(ntasks), pure=False),
                    lambda futures: (client.gather(futures), None)[1],
                )
                chunks = ntasks // 3  # a chunk, its partial sum and a tree node each
                graph = da.ones(chunks * 4, chunks=4).sum(split_every=2)
                one(
                    f"dask graph {len(graph.__dask_graph__()):,}",
                    len(graph.__dask_graph__()),
                    lambda: client.compute(graph, optimize_graph=False),
                    lambda future: (future.result(), None)[1],
                )
        finally:
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
