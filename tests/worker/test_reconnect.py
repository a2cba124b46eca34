"""Reaching the scheduler again: back-off, death_timeout, the scheduler file."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from shoal.errors import CommError
from shoal.worker.reconnect import RETRY_MAX, reach_scheduler, retry_delays


def test_retry_delays_double_up_to_the_cap_with_jitter() -> None:
    delays = retry_delays(random.Random(0))
    values = [next(delays) for _ in range(12)]
    assert 0.075 <= values[0] <= 0.125
    assert values[1] > values[0] * 1.1
    assert all(v <= RETRY_MAX * 1.25 for v in values) and values[-1] >= RETRY_MAX * 0.75


def test_reach_scheduler_keeps_trying_until_it_answers() -> None:
    tries: list[str] = []

    async def register(address: str) -> None:
        tries.append(address)
        if len(tries) < 3:
            raise CommError("connection refused")

    result = asyncio.run(reach_scheduler(register, "tcp://a:1", death_timeout=10))
    assert result == "tcp://a:1" and len(tries) == 3


def test_reach_scheduler_gives_up_after_death_timeout() -> None:
    async def register(address: str) -> None:
        raise OSError("connection refused")

    start = time.monotonic()
    result = asyncio.run(reach_scheduler(register, "tcp://a:1", death_timeout=0.5))
    elapsed = time.monotonic() - start
    assert result is None and 0.45 <= elapsed < 3


def test_reach_scheduler_reads_the_scheduler_file_again(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": "tcp://old:1"}))
    seen: list[str] = []

    async def register(address: str) -> None:
        seen.append(address)
        if address == "tcp://old:1":
            path.write_text(json.dumps({"address": "tcp://new:2"}))  # restarted elsewhere
            raise CommError("connection refused")

    result = asyncio.run(
        reach_scheduler(register, "tcp://old:1", death_timeout=10, scheduler_file=str(path))
    )
    assert result == "tcp://new:2" and seen == ["tcp://old:1", "tcp://new:2"]


def test_reach_scheduler_stops_when_the_worker_closes() -> None:
    async def register(address: str) -> None:
        raise OSError("connection refused")

    result = asyncio.run(
        reach_scheduler(register, "tcp://a:1", death_timeout=None, is_closing=lambda: True)
    )
    assert result is None


def test_reach_scheduler_stops_on_a_cancellation_that_a_failure_hid() -> None:
    async def register(address: str) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # as asyncio.wait_for may do when both race
            raise OSError("connection refused") from None

    async def main() -> bool:
        task = asyncio.ensure_future(reach_scheduler(register, "tcp://a:1", death_timeout=None))
        await asyncio.sleep(0.01)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:
            task.cancel()  # a second request: the loop catches only the first one's error
            await asyncio.wait([task], timeout=5)
            return False
        return task.cancelled()

    assert asyncio.run(main()), "the retry loop swallowed the cancellation and kept trying"
