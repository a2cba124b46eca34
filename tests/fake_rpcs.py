"""Rpc structs for the test servers of ``tests/comm`` and ``tests/test_server.py``: their
handlers (``echo``, ``add``, ...) are no shoal server's, so these are not registered in
``shoal.protocol.rpc_ops``; they are built the way every real call is."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import msgspec

from shoal.protocol.rpc_base import Rpc

ROLE = "test"


class Echo(Rpc[Any], frozen=True, kw_only=True):
    """Answered with ``x``."""

    rpc: ClassVar[str] = "echo"
    role: ClassVar[str] = ROLE
    x: Any = None


class Add(Rpc[int], frozen=True, kw_only=True):
    rpc: ClassVar[str] = "add"
    role: ClassVar[str] = ROLE
    a: int
    b: int


class EchoWrongField(Rpc[Any], frozen=True, kw_only=True):
    """``echo`` with a field its handler does not take."""

    rpc: ClassVar[str] = "echo"
    role: ClassVar[str] = ROLE
    wrong_kwarg: int = 1


def bare(name: str) -> Rpc[Any]:
    """A request with no fields for the test handler ``name``."""
    cls = msgspec.defstruct(
        f"Bare_{name}",
        [],
        bases=(Rpc,),
        namespace={"rpc": name, "role": ROLE},
        frozen=True,
        kw_only=True,
    )
    rpc = cast(Rpc[Any], cls())
    return rpc
