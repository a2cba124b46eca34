"""The base of the rpc schema (``shoal.protocol.rpc_ops``): the ``Rpc`` struct and its
registry.

Rules of this file:

* Pure: no IO, no imports from the rest of shoal but ``_types``/``errors``.
* One struct per (role, rpc name), registered by ``_register``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from shoal.errors import ProtocolError

SCHEDULER = "scheduler"
WORKER = "worker"
NANNY = "nanny"
ROLES = (SCHEDULER, WORKER, NANNY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rpc:
    """A request to a server; subclasses set ``rpc`` (its name) and ``role``."""

    rpc: ClassVar[str]
    role: ClassVar[str]
    #: the handler takes keyword fields beyond those declared
    open: ClassVar[bool] = False
    #: field names in declaration order, set by ``_register``
    fields: ClassVar[tuple[str, ...]] = ()


_RpcT = TypeVar("_RpcT", bound=type[Rpc])
#: every rpc struct, by role then rpc name
RPCS: dict[str, dict[str, type[Rpc]]] = {role: {} for role in ROLES}


def _register(cls: _RpcT) -> _RpcT:
    if cls.rpc in RPCS[cls.role]:
        raise ProtocolError(f"rpc {cls.rpc!r} defined twice for the {cls.role}")
    cls.fields = tuple(f.name for f in dataclasses.fields(cls))
    RPCS[cls.role][cls.rpc] = cls
    return cls


def request(rpc: Rpc) -> tuple[str, dict[str, Any]]:
    """``(name, fields)`` of a request: ``pool.call(address, name, **fields)``."""
    return rpc.rpc, {name: getattr(rpc, name) for name in rpc.fields}


# -- scheduler -----------------------------------------------------------------------------
