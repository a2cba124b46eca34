"""The base of the rpc schema (``shoal.protocol.rpc_ops``): the ``Rpc`` struct, the bases
shared by rpcs of one shape, and the registry.

Rules of this file:

* Pure: no IO, no imports from the rest of shoal but ``_types``/``errors``/``protocol``.
* One struct per (role, rpc name), registered by ``_register``.
* ``Rpc[R]``: ``R`` is the reply the handler gives, so ``await pool.call(address, struct)``
  is typed by the struct alone. It is a declaration (replies are not checked on arrival).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from shoal.errors import ProtocolError
from shoal.protocol.serialize import Serialized

SCHEDULER = "scheduler"
WORKER = "worker"
NANNY = "nanny"
ROLES = (SCHEDULER, WORKER, NANNY)

#: what the handler of an rpc returns
R = TypeVar("R", covariant=True)


class Rpc(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """A request to a server; subclasses set ``rpc`` (its name) and ``role``."""

    rpc: ClassVar[str]
    role: ClassVar[str]
    #: field names, set by ``_register`` (an unregistered struct, e.g. a test's, has none)
    fields: ClassVar[tuple[str, ...]] = ()

    def to_msg(self) -> dict[str, Any]:
        """The request on the wire: ``{"op": rpc, field: value, ...}``."""
        return {"op": self.rpc, **{name: getattr(self, name) for name in self.__struct_fields__}}


class Claiming(Rpc[R], frozen=True, kw_only=True):
    """An rpc that hands keys to the client: the scheduler applies it after the stream's
    ``ops.Claim`` marker, set here by the client (``client.primitives.calls.call``)."""

    #: the marker sent on the stream just before (``ops.Claim``): applied after it
    claim: str | None = None


class ByName(Rpc[R], frozen=True, kw_only=True):
    """An rpc on one named thing (an event, a queue, a plugin, ...)."""

    name: str


class AddPlugin(Rpc[R], frozen=True, kw_only=True):
    """Install the pickled ``plugin`` under ``name``."""

    plugin: Serialized
    name: str


class RunFunction(Rpc[R], frozen=True, kw_only=True):
    """Call the pickled ``function(*args, **kwargs)`` there (``Client.run``)."""

    function: Serialized
    args: Serialized
    kwargs: Serialized


_RpcT = TypeVar("_RpcT", bound=type[Rpc[Any]])
#: every rpc struct, by role then rpc name
RPCS: dict[str, dict[str, type[Rpc[Any]]]] = {role: {} for role in ROLES}


def _register(cls: _RpcT) -> _RpcT:
    if cls.rpc in RPCS[cls.role]:
        raise ProtocolError(f"rpc {cls.rpc!r} defined twice for the {cls.role}")
    cls.fields = cls.__struct_fields__
    RPCS[cls.role][cls.rpc] = cls
    return cls


def build(role: str, rpc: str, fields: Mapping[str, Any]) -> Rpc[Any]:
    """The struct of ``role``'s rpc named ``rpc`` (for an rpc named on the wire, as
    ``broadcast`` does); ``ProtocolError`` if there is none or a field is not its own."""
    cls = RPCS[role].get(rpc)
    if cls is None:
        raise ProtocolError(f"the {role} has no rpc {rpc!r}")
    unknown = sorted(set(fields) - set(cls.fields))
    if unknown:
        raise ProtocolError(f"{role} rpc {rpc!r} has no fields {unknown}")
    return cls(**fields)
