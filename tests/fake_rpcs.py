"""Rpc structs for the test servers of ``tests/comm`` and ``tests/test_server.py``: their
handlers (``echo``, ``add``, ...) are no shoal server's, so these are not registered in
``shoal.protocol.rpc_ops``; they are built the way every real call is."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Any, ClassVar

from shoal.protocol.rpc_base import Rpc

ROLE = "test"


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo(Rpc[Any]):
    """Answered with ``x``."""

    rpc: ClassVar[str] = "echo"
    role: ClassVar[str] = ROLE
    x: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Rpc[int]):
    rpc: ClassVar[str] = "add"
    role: ClassVar[str] = ROLE
    a: int
    b: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoWrongField(Rpc[Any]):
    """``echo`` with a field its handler does not take."""

    rpc: ClassVar[str] = "echo"
    role: ClassVar[str] = ROLE
    wrong_kwarg: int = 1


def bare(name: str) -> Rpc[Any]:
    """A request with no fields for the test handler ``name``."""
    cls = make_dataclass(
        f"Bare_{name}",
        [],
        bases=(Rpc,),
        namespace={"rpc": name, "role": ROLE},
        frozen=True,
        slots=True,
        kw_only=True,
    )
    rpc: Rpc[Any] = cls()
    return rpc
