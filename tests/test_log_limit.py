"""Identical log lines are let through once per interval, with a count of those held back."""

from __future__ import annotations

import logging

import pytest

from shoal.log_limit import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_within_the_interval_are_held_back_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = RepeatLimiter(interval=5.0, clock=clock)
    logger = logging.getLogger("shoal.test-log-limit")
    with caplog.at_level(logging.INFO, logger=logger.name):
        results = [
            limiter.log(logger, logging.INFO, "fetch from %s failed", "w1") for _ in range(200)
        ]
        assert results.count(True) == 1
        assert limiter.log(logger, logging.INFO, "fetch from %s failed", "w2")  # another line
        clock.now = 6.0
        assert limiter.log(logger, logging.INFO, "fetch from %s failed", "w1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "fetch from w1 failed",
        "fetch from w2 failed",
        "fetch from w1 failed (199 more like this held back)",
    ]


def test_memory_is_bounded() -> None:
    limiter = RepeatLimiter(interval=60.0, max_lines=10, clock=Clock())
    logger = logging.getLogger("shoal.test-log-limit")
    for n in range(100):
        limiter.log(logger, logging.WARNING, "line %d", n)
    assert len(limiter._seen) == 10
    assert limiter.log(logger, logging.WARNING, "line %d", 0)  # forgotten: logged again


def test_unhashable_arguments_are_fine() -> None:
    limiter = RepeatLimiter(clock=Clock())
    logger = logging.getLogger("shoal.test-log-limit")
    assert limiter.log(logger, logging.WARNING, "keys %s", ["a"])
    assert not limiter.log(logger, logging.WARNING, "keys %s", ["a"])
