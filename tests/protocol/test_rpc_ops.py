"""The rpc schema matches what the servers register: every handler has a struct whose
fields are the handler's parameters (less ``comm``), and every struct has a handler."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from shoal.nanny import Nanny
from shoal.protocol import rpc_ops
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker


def _handlers(role: str) -> dict[str, Callable[..., Any]]:
    """The rpc handlers a server of ``role`` registers (constructed, never started)."""

    async def build() -> dict[str, Callable[..., Any]]:
        if role == rpc_ops.SCHEDULER:
            return dict(Scheduler().handlers)
        if role == rpc_ops.WORKER:
            return dict(Worker("tcp://127.0.0.1:1").handlers)
        return dict(Nanny("tcp://127.0.0.1:1").handlers)

    return asyncio.run(build())


def _parameters(handler: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """The handler's keyword parameters less ``comm``, and whether it takes ``**more``."""
    params = list(inspect.signature(handler).parameters.values())
    named = tuple(p.name for p in params if p.name != "comm" and p.kind is not p.VAR_KEYWORD)
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def schema_problems(role: str, handlers: dict[str, Callable[..., Any]]) -> list[str]:
    schema = rpc_ops.RPCS[role]
    problems = [f"{role} rpc {name!r} has no struct" for name in handlers if name not in schema]
    problems += [
        f"{role} struct {name!r} has no handler" for name in schema if name not in handlers
    ]
    for name in handlers.keys() & schema.keys():
        named, takes_more = _parameters(handlers[name])
        cls = schema[name]
        if named != cls.fields:
            problems.append(f"{role} rpc {name!r}: parameters {named} != fields {cls.fields}")
        if takes_more != cls.open:
            problems.append(f"{role} rpc {name!r}: **kwargs {takes_more} != open {cls.open}")
    return problems


@pytest.mark.parametrize("role", rpc_ops.ROLES)
def test_every_rpc_handler_has_its_schema(role: str) -> None:
    assert schema_problems(role, _handlers(role)) == []


def test_a_handler_without_a_struct_or_with_other_parameters_is_found() -> None:
    handlers = _handlers(rpc_ops.WORKER)

    def get_data(comm: object, keys: object, who: object = None) -> None: ...  # shm dropped

    def brand_new(comm: object, x: int) -> None: ...

    handlers["get_data"] = get_data
    handlers["brand_new"] = brand_new
    del handlers["keys"]
    problems = schema_problems(rpc_ops.WORKER, handlers)
    assert "worker rpc 'brand_new' has no struct" in problems
    assert "worker struct 'keys' has no handler" in problems
    assert any("'get_data': parameters ('keys', 'who')" in p for p in problems)


def test_request_is_the_name_and_the_fields() -> None:
    rpc = rpc_ops.rpc_scheduler.SchedulerWhoHas(keys=("a",))
    assert rpc_ops.request(rpc) == ("who_has", {"keys": ("a",)})
    get = rpc_ops.rpc_workers.WorkerGetData(keys=["k"], who="client-1")
    assert rpc_ops.request(get) == ("get_data", {"keys": ["k"], "who": "client-1", "shm": None})
