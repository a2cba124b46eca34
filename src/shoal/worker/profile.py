"""A statistical profiler of a worker's task threads, in dask's profile-tree shape.

A daemon thread samples the stacks of the threads running tasks every ``INTERVAL``
seconds, but only while someone asked for profiles recently (``KEEP_SAMPLING`` seconds
after the last ask), so an idle cluster pays nothing. Samples are merged into one tree
per second and task prefix (``key_split`` of the key the thread runs, as dask's
``profile(key="inc")`` selects); ``tree(start, stop, key)`` merges what was asked for.

Rules of this file:

* The sampler never holds the GIL long: one ``sys._current_frames()`` per tick.
* The kept history is bounded (``HISTORY`` seconds).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from types import FrameType
from typing import Any

from shoal.graph.keys import key_split

#: seconds between samples
INTERVAL = 0.01
#: seconds the sampler keeps running after the last request
KEEP_SAMPLING = 120.0
#: seconds of per-second trees kept
HISTORY = 3600


def empty_tree() -> dict[str, Any]:
    return {
        "count": 0,
        "children": {},
        "identifier": "root",
        "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
    }


def _describe(frame: FrameType) -> tuple[str, dict[str, Any]]:
    code = frame.f_code
    identifier = f"{code.co_name};{code.co_filename};{code.co_firstlineno}"
    description = {
        "filename": code.co_filename,
        "name": code.co_name,
        "line_number": frame.f_lineno,
        "line": "",
    }
    return identifier, description


def add_stack(tree: dict[str, Any], frame: FrameType | None) -> None:
    """Add one sampled stack (innermost frame given) to ``tree``, root first."""
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    tree["count"] += 1
    node = tree
    for f in reversed(stack):
        identifier, description = _describe(f)
        child = node["children"].get(identifier)
        if child is None:
            child = {
                "count": 0,
                "children": {},
                "identifier": identifier,
                "description": description,
            }
            node["children"][identifier] = child
        child["count"] += 1
        node = child


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    """One tree with the counts of all of ``trees``."""
    out = empty_tree()
    for tree in trees:
        _merge_into(out, tree)
    return out


def _merge_into(target: dict[str, Any], source: dict[str, Any]) -> None:
    target["count"] += source["count"]
    for identifier, child in source["children"].items():
        mine = target["children"].get(identifier)
        if mine is None:
            mine = {
                "count": 0,
                "children": {},
                "identifier": identifier,
                "description": dict(child["description"]),
            }
            target["children"][identifier] = mine
        _merge_into(mine, child)


class Sampler:
    """Samples the task threads of ``worker`` (its ``active_threads``: ident -> key)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        #: (second, {task prefix: tree}) for each second with samples, oldest first
        self.history: deque[tuple[float, dict[str, dict[str, Any]]]] = deque(maxlen=HISTORY)
        self._asked_until = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def keep_sampling(self) -> None:
        """Sample for the next ``KEEP_SAMPLING`` seconds (starting the thread if needed)."""
        with self._lock:
            self._asked_until = time.monotonic() + KEEP_SAMPLING
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="shoal-profile", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while time.monotonic() < self._asked_until and self.worker.status != "closed":
            self.sample_once()
            time.sleep(INTERVAL)

    def sample_once(self) -> None:
        threads = dict(getattr(self.worker, "active_threads", {}) or {})
        if not threads:
            return
        frames = sys._current_frames()
        second = float(int(time.time()))
        if not self.history or self.history[-1][0] != second:
            self.history.append((second, {}))
        by_prefix = self.history[-1][1]
        for ident, key in threads.items():
            frame = frames.get(ident)
            if frame is not None:
                prefix = key_split(key)
                tree = by_prefix.get(prefix)
                if tree is None:
                    tree = by_prefix[prefix] = empty_tree()
                add_stack(tree, frame)

    def tree(self, start: float | None, stop: float | None, key: Any = None) -> dict[str, Any]:
        """The merged profile of the seconds in [start, stop], of the tasks whose prefix is
        ``key_split(key)`` (all tasks: ``key=None``); asks to keep sampling."""
        self.keep_sampling()
        prefix = None if key is None else key_split(key)
        chosen = [
            tree
            for second, by_prefix in list(self.history)
            if (start is None or second + 1 >= start) and (stop is None or second <= stop)
            for name, tree in by_prefix.items()
            if prefix is None or name == prefix
        ]
        return merge(*chosen)
