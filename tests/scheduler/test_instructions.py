"""shoal.scheduler.instructions.coalesce_frees: one ``free-keys`` per worker per event,
without reordering anything on a worker's stream."""

from __future__ import annotations

from shoal.scheduler.instructions import (
    CloseWorker,
    FreeKeys,
    SchedulerInstruction,
    coalesce_frees,
)


def free(worker: str, *keys: str) -> FreeKeys:
    return FreeKeys(stimulus_id="s", worker=worker, keys=keys)


def test_frees_for_a_worker_merge_into_the_first_across_other_workers() -> None:
    out: list[SchedulerInstruction] = [free("w1", "a"), free("w2", "b"), free("w1", "c")]
    coalesce_frees(out, 0)
    assert out == [free("w1", "a", "c"), free("w2", "b")]


def test_another_instruction_for_the_worker_closes_its_merge() -> None:
    close = CloseWorker(stimulus_id="s", worker="w1", reason="r")
    out: list[SchedulerInstruction] = [free("w1", "a"), close, free("w1", "b"), free("w2", "c")]
    coalesce_frees(out, 0)
    assert out == [free("w1", "a"), close, free("w1", "b"), free("w2", "c")]


def test_an_instruction_for_another_worker_does_not() -> None:
    close = CloseWorker(stimulus_id="s", worker="w2", reason="r")
    out: list[SchedulerInstruction] = [free("w1", "a"), close, free("w1", "b")]
    coalesce_frees(out, 0)
    assert out == [free("w1", "a", "b"), close]


def test_a_key_freed_twice_is_named_once() -> None:
    out: list[SchedulerInstruction] = [free("w1", "a"), free("w1", "a", "b")]
    coalesce_frees(out, 0)
    assert out == [free("w1", "a", "b")]


def test_only_instructions_from_start_are_touched() -> None:
    out: list[SchedulerInstruction] = [free("w1", "a"), free("w1", "b"), free("w1", "c")]
    coalesce_frees(out, 1)
    assert out == [free("w1", "a"), free("w1", "b", "c")]
