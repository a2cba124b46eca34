"""The rpc schema: one frozen, slotted struct per rpc a server answers, with typed fields.

An rpc request is a msgpack map ``{"op": NAME, field: value, ...}`` read by
``Server._serve``, which calls ``handlers[NAME](comm=comm, **fields)``. This module names
each server's rpcs and their fields; ``tests/protocol/test_rpc_ops.py`` fails when a
scheduler, worker or nanny registers a handler that has no struct here, or whose
parameters (less ``comm``) differ from the struct's fields. ``docs/protocol.md`` lists
them, generated from here (``scripts/protocol_doc.py``). Callers may build a struct and
send ``request(struct)``; the field names are then spelled here alone.

Rules of this file:

* Pure: no IO, no imports from the rest of shoal but ``_types``/``errors``/``protocol``.
* One struct per (role, rpc name); a name recurs on several roles (``run``, ``story``)
  with its own fields.
* ``open = True``: the handler also takes further keyword fields (``register-worker``'s
  worker description, ``adaptive_target``'s options) that it reads itself.
* Replies are not in the schema yet: each handler's docstring says what it returns.
"""

from __future__ import annotations

from shoal.protocol import rpc_scheduler, rpc_workers
from shoal.protocol.rpc_base import NANNY, ROLES, RPCS, SCHEDULER, WORKER, Rpc, request

__all__ = [
    "NANNY", "ROLES", "RPCS", "SCHEDULER", "WORKER", "Rpc", "request", "rpc_scheduler",
    "rpc_workers",
]  # fmt: skip
