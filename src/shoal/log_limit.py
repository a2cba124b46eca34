"""Rate limits for log lines that can repeat many times a second.

A failing fetch, retried in a tight loop, used to log one identical line per try. A
``RepeatLimiter`` lets the first of each distinct line through, then at most one per
``interval`` seconds, saying how many were held back meanwhile.

Rules of this file:

* Lines are told apart by (logger, level, format string, args): the same failure from
  another peer is a different line.
* Memory is bounded: at most ``max_lines`` distinct lines are remembered (oldest dropped).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class RepeatLimiter:
    """Logs each distinct line at most once per ``interval`` seconds."""

    def __init__(
        self,
        interval: float = 10.0,
        max_lines: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_lines = max_lines
        self._clock = clock
        #: line -> (when it was last logged, how many were held back since)
        self._seen: OrderedDict[tuple[Any, ...], tuple[float, int]] = OrderedDict()

    def log(self, logger: logging.Logger, level: int, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless the same line was logged within ``interval``; True if
        it was logged."""
        if not logger.isEnabledFor(level):
            return False
        line = (logger.name, level, msg, _hashable(args))
        now = self._clock()
        last = self._seen.get(line)
        if last is not None and now - last[0] < self.interval:
            self._seen[line] = (last[0], last[1] + 1)
            return False
        held_back = last[1] if last is not None else 0
        self._remember(line, now)
        if held_back:
            logger.log(level, msg + " (%d more like this held back)", *args, held_back)
        else:
            logger.log(level, msg, *args)
        return True

    def _remember(self, line: tuple[Any, ...], now: float) -> None:
        self._seen[line] = (now, 0)
        self._seen.move_to_end(line)
        while len(self._seen) > self.max_lines:
            self._seen.popitem(last=False)


def _hashable(args: tuple[Any, ...]) -> tuple[Any, ...]:
    out = []
    for arg in args:
        try:
            hash(arg)
        except TypeError:
            arg = repr(arg)
        out.append(arg)
    return tuple(out)
