"""Adapters between the wire schema (``shoal.protocol.ops``) and the client.

The one place the client builds an ``update-graph``: ``submit``/``map``
(``client/core.py``), dask graphs (``client/graph_submit.py``) and the re-declaration
after a reconnect (``client/reconnect.py``) all call ``update_graph``.

Rules of this file:

* Pure: structs in, structs out; no IO, no loop.
* Fields are read as attributes of the structs, never by string name: the field names
  live in ``shoal.protocol.ops`` alone.
* Every op of the scheduler->client stream has a handler in ``ClientCore.handle_batch``
  (a test checks its table against the schema).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shoal._types import Key
from shoal.protocol import ops


def update_graph(
    rows: Sequence[ops.TaskRow],
    wanted: Iterable[Key],
    restrictions: Mapping[Key, Mapping[str, Any]] | None = None,
    stimulus_id: str = "",
) -> ops.UpdateGraph:
    """The ``update-graph`` of ``rows``: restrictions kept for the rows' keys only,
    ``wanted`` without repeats (in order)."""
    if restrictions:
        sent = {row[0] for row in rows}
        restrictions = {k: r for k, r in restrictions.items() if k in sent}
    return ops.UpdateGraph(
        tasks=rows,
        restrictions=restrictions or {},
        wanted=list(dict.fromkeys(wanted)),
        stimulus_id=stimulus_id,
    )
