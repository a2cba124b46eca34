"""Run a chaos DAG from inside a network namespace: ``python -m tests.chaos.driver``.

Rules of this file:

* The client of a partition scenario must live in a namespace of the lab, so it runs in
  this subprocess (started with ``ip netns exec``); it writes one JSON object to
  ``--out``: the run's figures, or the failure (the watchdog's dump) as ``error``.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from shoal import Client
from tests.chaos.cluster import wait_until
from tests.chaos.dag import random_dag
from tests.chaos.runner import run_dag
from tests.chaos.watchdog import ask, worker_summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduler-file", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--rejoin-timeout", type=float, default=60)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out: dict[str, object] = {}
    try:
        with Client(scheduler_file=args.scheduler_file, set_as_default=False) as client:
            has_workers = lambda: len(client.scheduler_info()["workers"]) >= args.workers  # noqa: E731
            wait_until(has_workers, 60, f"{args.workers} workers")
            Path(args.out + ".started").write_text("1")
            dag = random_dag(args.seed, args.tasks)
            result = run_dag(client, dag, Path(args.ledger), "partition", timeout=300)
            out["result"] = asdict(result)
            out["done_at"] = time.time()  # wall clock: compared with the heal's, another process
            out["fenced_events"] = client.scheduler_info().get("fenced_events")
            start = time.monotonic()
            try:
                wait_until(has_workers, args.rejoin_timeout, f"{args.workers} workers again")
                out["rejoined_after"] = time.monotonic() - start
            except AssertionError as exc:
                out["rejoin_error"] = f"{exc}: {client.scheduler_info()['workers'].keys()}"
            out["in_flight"] = ask(lambda: client.run(worker_summary), 10)
    except BaseException as exc:
        out["error"] = "".join(traceback.format_exception(exc))[-20000:]
    Path(args.out).write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
