"""``Client.story``: the history of keys, from the scheduler and from every worker.

Every record, on the scheduler and on workers alike, ends with the stimulus id that caused
it and its timestamp (wall clock of the machine that logged it). The merged story appends
where each record comes from and sorts by timestamp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shoal._types import Key
from shoal.client.transport import Transport
from shoal.protocol.rpc_scheduler import SchedulerSchedulerInfo, SchedulerStory
from shoal.protocol.rpc_workers import WorkerStory

#: where a record from the scheduler comes from
SCHEDULER = "scheduler"


async def gather_story(transport: Transport, keys: Sequence[Key]) -> list[tuple[Any, ...]]:
    """``(*record, where)`` for every record about ``keys``, oldest first.

    ``record[-2]`` is the stimulus id and ``record[-1]`` the timestamp; ``where`` is
    ``"scheduler"`` or a worker's address. A worker that cannot answer (it left
    meanwhile) is skipped.
    """
    scheduler = transport.scheduler_address
    info = await transport.call(scheduler, SchedulerSchedulerInfo())
    sources = [SCHEDULER, *info.get("workers", {})]
    calls = [transport.call(scheduler, SchedulerStory(keys=list(keys)))]
    calls += [transport.call(worker, WorkerStory(keys=list(keys))) for worker in sources[1:]]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    merged: list[tuple[Any, ...]] = []
    for where, records in zip(sources, answers, strict=True):
        if isinstance(records, BaseException):
            if where == SCHEDULER:
                raise records
            continue
        merged.extend((*record, where) for record in records)
    merged.sort(key=_timestamp)
    return merged


def _timestamp(entry: tuple[Any, ...]) -> float:
    when = entry[-2] if len(entry) >= 2 else 0.0
    return float(when) if isinstance(when, int | float) else 0.0
