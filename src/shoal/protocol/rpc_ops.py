"""The rpc schema: one frozen, slotted struct per rpc a server answers, with typed fields.

An rpc request is a msgpack map ``{"op": NAME, field: value, ...}`` read by
``Server._serve``, which calls ``handlers[NAME](comm=comm, **fields)``. This module names
each server's rpcs and their fields; ``tests/protocol/test_rpc_ops.py`` fails when a
scheduler, worker or nanny registers a handler that has no struct here, or whose
parameters (less ``comm``) differ from the struct's fields. ``docs/protocol.md`` lists
them, generated from here (``scripts/protocol_doc.py``). Callers build a struct and send
it, ``await pool.call(address, SchedulerWhoHas(keys=keys))``: the rpc and field names are
spelled here alone (``tests/protocol/test_rpc_ops.py`` fails on a name spelled elsewhere
in ``src/shoal``), a field the struct lacks is a ``TypeError`` where the call is made, and
the struct's type parameter is the type of the reply.

Rules of this file:

* Pure: no IO, no imports from the rest of shoal but ``_types``/``errors``/``protocol``.
* One struct per (role, rpc name); a name recurs on several roles (``run``, ``story``)
  with its own fields.
* Every field on the wire is declared: no handler takes ``**kwargs``. A payload the user
  defines (plugin kwargs, a broadcast's ``kwargs``) travels as one declared field.
* Rpcs of one shape share a base from ``rpc_base`` (``Claiming``, ``ByName``, ...).
* A struct's type parameter declares its reply (``Rpc[int]``), for the caller's type
  checker; ``Rpc[Any]`` where the reply is a free-form record. Replies are not checked.
"""

from __future__ import annotations

from shoal.protocol import rpc_scheduler, rpc_scheduler_workers, rpc_workers
from shoal.protocol.rpc_base import NANNY, ROLES, RPCS, SCHEDULER, WORKER, Rpc, build

__all__ = [
    "NANNY", "ROLES", "RPCS", "SCHEDULER", "WORKER", "Rpc", "build", "rpc_scheduler",
    "rpc_scheduler_workers", "rpc_workers",
]  # fmt: skip
