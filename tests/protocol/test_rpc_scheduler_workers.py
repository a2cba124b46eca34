"""The scheduler rpcs workers send live apart: a worker process builds only those, and
everyone else still finds them in ``rpc_scheduler`` and in the registry."""

from __future__ import annotations

import subprocess
import sys

from shoal.protocol import rpc_ops, rpc_scheduler, rpc_scheduler_workers


def test_they_are_the_same_structs_everywhere() -> None:
    for name in ("SchedulerRegisterWorker", "SchedulerRetireWorkers", "SchedulerWorkerDied"):
        cls = getattr(rpc_scheduler_workers, name)
        assert getattr(rpc_scheduler, name) is cls
        assert rpc_ops.RPCS["scheduler"][cls.rpc] is cls


def test_a_worker_process_does_not_build_the_rest_of_the_schedulers_rpcs() -> None:
    code = (
        "import sys, shoal.cli, shoal.worker.server\n"
        "assert 'shoal.protocol.rpc_scheduler' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
