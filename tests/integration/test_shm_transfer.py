"""Same-host transfers between worker processes without the socket, in both modes (the
receiver reads the sender's memory; a memfd): bytes intact, TCP when turned off, and
nothing of ours left anywhere after both workers are killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal import Client, LocalCluster, get_worker
from shoal.comm.shm import MEMFD, MODES, READ, SHM_PREFIX, host_identity
from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(not host_identity(), reason="needs Linux memfds and /proc")
NBYTES = 8 * 2**20


def make_array(nbytes: int) -> Any:
    return np.arange(nbytes // 8, dtype=np.int64)


def checksum(x: Any) -> int:
    return int(x.sum())


def shm_books() -> dict[str, int]:
    worker = get_worker()
    return {
        "pid": os.getpid(),
        "held": worker.shm.held,
        "lent": worker.shm.lent_total,
        "incoming": worker.transfer_log.incoming_count,
    }


def use_modes(modes: tuple[str, ...]) -> None:
    get_worker().shm.modes = modes


def traces_of(pids: set[int]) -> list[str]:
    """Every fd, mapping or /dev/shm name of memfds made by ``pids``, in any process we see."""
    marks = tuple(f"{SHM_PREFIX}{pid}-" for pid in pids)
    found = [name for name in os.listdir("/dev/shm") if name.startswith(SHM_PREFIX)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text()
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue  # gone, or not ours to read
        found += [
            f"{proc.name}: {line}" for line in maps.splitlines() if any(m in line for m in marks)
        ]
        found += [f"{proc.name}: {fd}" for fd in fds if any(m in fd for m in marks)]
    return found


def transfer(client: Client, workers: list[str]) -> int:
    source = client.submit(make_array, NBYTES, workers=[workers[0]], pure=False)
    return int(client.submit(checksum, source, workers=[workers[1]], pure=False).result())


def wait_until_gone(pids: set[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {pids} still exist")
        time.sleep(0.05)


EXPECTED = int(np.arange(NBYTES // 8, dtype=np.int64).sum())


@pytest.mark.parametrize("mode", MODES)
def test_large_values_move_through_shared_memory_intact(mode: str) -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        client.run(use_modes, (mode,))
        assert transfer(client, workers) == EXPECTED
        books = client.run(shm_books)
        assert books[workers[0]]["lent"] == 1  # the sender lent the array's one buffer
        assert books[workers[1]]["incoming"] == 1
        pids = {int(b["pid"]) for b in books.values()}
        assert bool(traces_of(pids)) == (mode == MEMFD)  # a read makes nothing to leave
        if mode == READ:  # the receiver handed it back: let go long before the 10 s hold
            wait_until(lambda: client.run(shm_books)[workers[0]]["held"] == 0, timeout=5)


def test_turned_off_it_moves_over_tcp() -> None:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, shared_memory=False) as cluster,
        Client(cluster) as client,
    ):
        workers = sorted(client.scheduler_info()["workers"])
        assert transfer(client, workers) == EXPECTED
        books = client.run(shm_books)
        assert books[workers[0]]["lent"] == 0
        assert books[workers[1]]["incoming"] == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("when", ["after", "during"])
def test_killing_both_workers_leaves_nothing_behind(when: str, mode: str) -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        client.run(use_modes, (mode,))
        pids = {int(b["pid"]) for b in client.run(shm_books).values()}
        if when == "after":
            assert transfer(client, workers) == EXPECTED
            if mode == MEMFD:
                assert traces_of(pids)  # the sender's fd and the receiver's mapping exist now
        else:
            source = client.submit(make_array, 64 * NBYTES, workers=[workers[0]], pure=False)
            client.submit(checksum, source, workers=[workers[1]], pure=False)
            time.sleep(0.2)  # whatever point the transfer reached: the check holds for all
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until_gone(pids)
        assert traces_of(pids) == []
