"""Stimulus ids: unique per process run, cheap, readable.

Rules of this file:

* An id is ``"{prefix}-{process token}-{counter}"``: the counter never repeats within a
  process, the token (random, made once at import) tells processes apart, so two ids
  never collide the way ids built from a float timestamp did (two stimuli in one clock
  tick, or on two machines).
* The prefix says what caused the stimulus; callers put names or keys in it, never a time.
"""

from __future__ import annotations

import itertools
import uuid

from shoal._types import StimulusId

#: tells this process's ids from every other's (a pid repeats across hosts and restarts)
PROCESS_TOKEN = uuid.uuid4().hex[:8]
_counter = itertools.count(1)


def new_stimulus_id(prefix: str) -> StimulusId:
    """A fresh id for a stimulus caused by ``prefix`` (e.g. ``"scatter"``)."""
    return f"{prefix}-{PROCESS_TOKEN}-{next(_counter)}"
