"""CPU time per no-op task, summed over every process of a local cluster, and split by process.

Rules of this file:

* Usage: python benchmarks/cpu_per_task.py [--tasks 10000] [--repeat 2] [--pause S]
* A 2-worker x 1-thread local cluster (processes); the scheduler runs in this process
  beside the client, so this process is split by thread: the shared loop thread (scheduler
  + client core) and the rest (the client's caller). Nanny processes count on their own.
* Each sample reads every process's ``cpu_times`` (user + system, psutil) before and after
  one ``client.map`` of no-ops plus ``gather``; the best (least total CPU) sample counts.
* ``--pause S`` sleeps S seconds before the samples, so a profiler can attach to the pids
  it prints.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import psutil


def noop(x: Any) -> Any:
    return x


def cpu_of(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def loop_thread_cpu() -> float:
    """CPU of this process's shoal-loop thread (scheduler and client core)."""
    from shoal import loop as shoal_loop

    thread = shoal_loop._thread
    if thread is None or thread.native_id is None:
        return 0.0
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def label(proc: psutil.Process, me: psutil.Process) -> str:
    """A LocalCluster's nannies run in this process, so its child processes are the
    workers; a child that has children of its own is a nanny process (``shoal worker``)."""
    return "nanny" if proc.ppid() == me.pid and proc.children() else "worker"


def sample(client: Any, procs: dict[str, psutil.Process], ntasks: int) -> dict[str, float]:
    before = {name: cpu_of(p) for name, p in procs.items()}
    loop_before = loop_thread_cpu()
    start = time.perf_counter()
    client.gather(client.map(noop, range(ntasks), pure=False))
    wall = time.perf_counter() - start
    after = {name: cpu_of(p) for name, p in procs.items()}
    loop_cpu = loop_thread_cpu() - loop_before
    out = {name: after[name] - before[name] for name in procs}
    out["this: loop thread"] = loop_cpu
    out["this: other threads"] = out.pop("this") - loop_cpu
    out["wall"] = wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    import shoal

    with (
        shoal.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        shoal.Client(cluster, set_as_default=False) as client,
    ):
        me = psutil.Process()
        procs: dict[str, psutil.Process] = {"this": me}
        counts: dict[str, int] = {}
        for child in me.children(recursive=True):
            kind = label(child, me)
            counts[kind] = counts.get(kind, 0) + 1
            procs[f"{kind} {counts[kind]} ({child.pid})"] = child
        print("pids:", {name: p.pid for name, p in procs.items()}, flush=True)
        client.gather(client.map(noop, range(1000), pure=False))  # warm-up
        if args.pause:
            time.sleep(args.pause)
        samples = [sample(client, procs, args.tasks) for _ in range(args.repeat)]
    best = min(samples, key=lambda s: sum(v for k, v in s.items() if k != "wall"))
    total = sum(v for k, v in best.items() if k != "wall")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.tasks} tasks; wall {best['wall']:.3f}s")
    for name, cpu in best.items():
        if name != "wall":
            print(f"  {name:<28} {cpu * 1e3 / args.tasks:7.3f} ms CPU/task")
    print(f"  {'total':<28} {total * 1e3 / args.tasks:7.3f} ms CPU/task")


if __name__ == "__main__":
    main()
