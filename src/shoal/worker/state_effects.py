"""Effects: what the event being handled does besides moving tasks between containers.

################################################################################
# Rules of this file
################################################################################
#
# Rule 1: pure. No IO, no clock; ``now`` comes from the event.
#
# Rule 2: this is the whole interface a transition step (``state_transitions``) or a
# replica drop (``state_replicas``) has to the event: the stimulus id and time, the
# instructions out, the tasks that may have become unwanted, the keys to announce or to
# ask about, and ``move`` for the further transitions a step makes. Steps change the
# public containers of ``WorkerState`` and nothing private.
#
# Rule 3: ``WorkerState.handle_stimulus`` makes one ``begin`` per event and settles what
# gathered here after each event (``WorkerState._settle``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal._types import Key, StimulusId
from shoal.worker.instructions import WorkerInstruction

if TYPE_CHECKING:
    from shoal.worker.state_task import WorkerTask

__all__ = ["Effects"]

#: ``WorkerState._transition``: move a task to a state, with an optional payload
Move = Callable[["WorkerTask", str, object], None]


class Effects:
    """The pending effects of one event, handed to every transition step."""

    __slots__ = (
        "_move",
        "add_keys",
        "inline_value",
        "log",
        "now",
        "out",
        "refresh_keys",
        "refresh_suppressed",
        "stimulus_id",
        "unwanted",
    )

    def __init__(self, log: deque[tuple[Any, ...]], move: Move) -> None:
        #: the event's stimulus id: every instruction carries it
        self.stimulus_id: StimulusId = ""
        #: the event's time
        self.now = 0.0
        #: the instructions produced so far, in order
        self.out: list[WorkerInstruction] = []
        #: the state machine's bounded log (see ``WorkerState.story``)
        self.log = log
        #: tasks that may have lost their last reason to stay
        self.unwanted: list[WorkerTask] = []
        #: keys that arrived without being assigned: one AddKeysMsg per event
        self.add_keys: dict[Key, int] = {}
        #: keys that went missing: one RequestRefreshWhoHasMsg per event
        self.refresh_keys: list[Key] = []
        #: the scheduler just told us who has what: don't ask it again
        self.refresh_suppressed = False
        #: while an ExecuteSucceeded enters memory: the result's serialized copy it brought
        #: (None if none), for its TaskFinishedMsg; never kept past that event
        self.inline_value: object = None
        self._move = move

    def begin(self, stimulus_id: StimulusId, now: float) -> None:
        """A new event: its id and time stamp what follows."""
        self.stimulus_id = stimulus_id
        self.now = now
        self.inline_value = None

    def emit(self, instruction: WorkerInstruction, subject: object) -> None:
        """Hand ``instruction`` to the shell (and log it, under ``subject``)."""
        self.out.append(instruction)
        self.log.append(
            ("instruction", type(instruction).__name__, subject, self.stimulus_id, self.now)
        )

    def move(self, task: WorkerTask, finish: str, payload: object = None) -> None:
        """A further transition, through the table, now."""
        self._move(task, finish, payload)

    def fetch_or_missing(self, task: WorkerTask) -> None:
        """Fetch ``task`` from a peer that holds it, or wait for one (``missing``)."""
        self._move(task, "fetch" if task.who_has else "missing", None)
