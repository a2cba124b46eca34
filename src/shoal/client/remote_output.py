"""``shoal.print`` and ``shoal.warn``: output from tasks that shows up in the clients.

Called inside a task, they print (or warn) on the worker as usual and also send the text
through the scheduler to every connected client, which prints it to its own stdout or
stderr (or issues the warning); called anywhere else they are ``print`` and
``warnings.warn``. As in dask.distributed.

Rules of this file:

* Only text travels: the scheduler forwards it unread, the client never unpickles it.
* A client that cannot show a message logs it and goes on: output never breaks a stream.
"""

from __future__ import annotations

import builtins
import io
import sys
import warnings
from typing import Any

from shoal.protocol import ops
from shoal.protocol.rpc_scheduler import SchedulerForwardOutput


def _in_task() -> bool:
    from shoal.worker.execute import thread_state

    return getattr(thread_state, "worker", None) is not None


def _forward(output: SchedulerForwardOutput) -> None:
    from shoal.client.primitives import calls

    client = calls.resolve_client(None)
    client._run(calls.call(client, output))


def print(*args: Any, **kwargs: Any) -> None:
    """``print``, and inside a task also printed by every client of the cluster."""
    builtins.print(*args, **kwargs)
    if not _in_task():
        return
    file = kwargs.get("file")
    stream = "stderr" if file is sys.stderr else "stdout"
    if file is not None and file not in (sys.stdout, sys.stderr):
        return  # printed to a file of the task's own: nothing for the clients
    text = io.StringIO()
    builtins.print(*args, sep=kwargs.get("sep"), end=kwargs.get("end"), file=text)
    _forward(SchedulerForwardOutput(kind="print", text=text.getvalue(), stream=stream))


def warn(message: Any, category: type[Warning] | None = UserWarning, stacklevel: int = 1,
         source: Any = None) -> None:  # fmt: skip
    """``warnings.warn``, and inside a task also issued in every client of the cluster."""
    category = category or UserWarning
    warnings.warn(message, category, stacklevel=stacklevel + 1, source=source)
    if _in_task():
        _forward(SchedulerForwardOutput(kind="warn", text=str(message), category=category.__name__))


def show(op: ops.Output) -> None:
    """A client's handler for forwarded output."""
    if op.kind == "warn":
        found = getattr(builtins, op.category, None) if op.category else None
        category = found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
        warnings.warn(op.text, category, stacklevel=2)
        return
    out = sys.stderr if op.file == "stderr" else sys.stdout
    out.write(op.text)
    out.flush()
