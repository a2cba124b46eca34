"""One logging setup for every shoal process, and the in-memory log each server keeps.

Rules of this file:

* Every shoal logger is named after its component (``shoal.scheduler``, ``shoal.worker``,
  ``shoal.comm``, ``shoal.http``, ...): the name is the component, and every line shows it.
* ``setup_logging`` configures the ``shoal`` logger only, once per process (calling it
  again changes the level); the user's root logger is left alone.
* A ``MemoryLogHandler`` keeps the last records of one server's components in a bounded
  deque, which ``client.get_scheduler_logs()`` / ``get_worker_logs()`` read.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable
from typing import TextIO

#: the line format of every shoal process: time, component, level, message
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
#: records kept in memory per server
DEFAULT_LOG_LENGTH = 10_000

#: one stored record: (unix time, level name, component, message)
LogRecordTuple = tuple[float, str, str, str]

_HANDLER_NAME = "shoal-console"


def setup_logging(level: str | int = "info", stream: TextIO | None = None) -> logging.Logger:
    """Send shoal's records at ``level`` and above to ``stream`` (stderr) in one format."""
    root = logging.getLogger("shoal")
    root.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.propagate = False  # our own handler prints; no second copy through the root
    return root


class MemoryLogHandler(logging.Handler):
    """Keeps the latest records of some components, as tuples, in a bounded deque."""

    def __init__(self, maxlen: int = DEFAULT_LOG_LENGTH) -> None:
        super().__init__(level=logging.NOTSET)
        #: (time, level, component, message), oldest first; at most ``maxlen``
        self.records: deque[LogRecordTuple] = deque(maxlen=maxlen)
        self._attached: list[logging.Logger] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in someone's log call must not break us
            message = str(record.msg)
        self.records.append((record.created, record.levelname, record.name, message))

    def attach(self, components: Iterable[str]) -> MemoryLogHandler:
        """Start collecting the records of these loggers (and their children)."""
        for name in components:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            self._attached.append(logger)
        return self

    def detach(self) -> None:
        """Stop collecting; what was kept stays readable."""
        for logger in self._attached:
            logger.removeHandler(self)
        self._attached.clear()

    def tail(self, n: int | None = None) -> list[LogRecordTuple]:
        """The last ``n`` records (all when None), oldest first."""
        records = list(self.records)
        return records if n is None else records[-n:] if n > 0 else []


__all__ = ["LOG_FORMAT", "LogRecordTuple", "MemoryLogHandler", "setup_logging"]
