"""The rpc schema matches what the servers register: every handler has a struct whose
fields are the handler's parameters (less ``comm``), and every struct has a handler."""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.errors import ProtocolError
from shoal.nanny import Nanny
from shoal.protocol import rpc_ops, rpc_workers
from shoal.protocol.rpc_base import Claiming, Rpc
from shoal.protocol.rpc_scheduler import SchedulerWhoHas
from shoal.protocol.rpc_workers import WorkerGetData
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker

SRC = Path(__file__).resolve().parents[2] / "src"
ALL_RPCS = [cls for role in rpc_ops.ROLES for cls in rpc_ops.RPCS[role].values()]


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
        # requests are keyword fields: the order is free (a shared base's fields come first)
        if sorted(named) != sorted(cls.fields):
            problems.append(f"{role} rpc {name!r}: parameters {named} != fields {cls.fields}")
        if takes_more:
            problems.append(f"{role} rpc {name!r} takes **kwargs: declare its fields")
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


def test_a_handler_taking_undeclared_fields_is_found() -> None:
    handlers = _handlers(rpc_ops.SCHEDULER)

    def register_worker(comm: object, address: object, nthreads: object, **info: object) -> None:
        """As it was before its fields were declared."""

    handlers["register-worker"] = register_worker
    problems = schema_problems(rpc_ops.SCHEDULER, handlers)
    assert "scheduler rpc 'register-worker' takes **kwargs: declare its fields" in problems


def test_a_request_is_the_name_and_every_field() -> None:
    assert SchedulerWhoHas(keys=("a",)).to_msg() == {"op": "who_has", "keys": ("a",)}
    get = WorkerGetData(keys=["k"], who="client-1")
    assert get.to_msg() == {"op": "get_data", "keys": ["k"], "who": "client-1", "shm": None}


@pytest.mark.parametrize("cls", ALL_RPCS, ids=lambda c: f"{c.role}-{c.rpc}")
def test_a_field_the_struct_lacks_is_refused_where_the_call_is_made(cls: type[Rpc[Any]]) -> None:
    with pytest.raises(TypeError, match="no_such_field"):
        cls(no_such_field=1)  # type: ignore[call-arg]  # mypy refuses it too


def test_build_names_the_rpc_and_the_fields_it_refuses() -> None:
    assert rpc_ops.build(rpc_ops.WORKER, "keys", {}).to_msg() == {"op": "keys"}
    assert rpc_ops.build(rpc_ops.WORKER, "versions", {"packages": ["numpy"]}) == (
        rpc_workers.WorkerVersions(packages=["numpy"])
    )
    with pytest.raises(ProtocolError, match="no rpc 'keyz'"):
        rpc_ops.build(rpc_ops.WORKER, "keyz", {})
    with pytest.raises(ProtocolError, match=r"'versions' has no fields \['package'\]"):
        rpc_ops.build(rpc_ops.WORKER, "versions", {"package": ["numpy"]})


def test_the_rpcs_that_carry_keys_are_ordered_after_a_claim() -> None:
    claiming = {cls.rpc for cls in ALL_RPCS if issubclass(cls, Claiming)}
    assert claiming == {
        "fire_and_forget", "get_dataset", "publish_dataset", "queue_get", "queue_put",
        "variable_get", "variable_set",
    }  # fmt: skip
    assert all("claim" in rpc_ops.RPCS[rpc_ops.SCHEDULER][name].fields for name in claiming)


def _string_literals(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


#: rpc names that are also ordinary words of shoal, spelled for other reasons: task states
#: ("processing"), record fields ("nbytes", "nthreads", "keys", "who_has"), plugin hooks
#: ("close", "restart"), dashboard pages ("story"), stimulus prefixes ("replicate") and a
#: dump's section ("versions"). A call site cannot spell them either: see the next test.
ORDINARY_WORDS = frozenset(
    {"close", "keys", "nbytes", "nthreads", "processing", "replicate", "restart", "story",
     "versions", "who_has"}
)  # fmt: skip


def _modules_outside_the_schema() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted((SRC / "shoal").rglob("*.py")):
        if "protocol" not in path.relative_to(SRC / "shoal").parts[:1]:
            yield str(path.relative_to(SRC)), ast.parse(path.read_text())


def rpc_names_spelled(modules: Iterable[tuple[str, ast.AST]]) -> list[str]:
    """``path:line: name`` for each rpc name spelled as a string outside the schema."""
    names = {name for role in rpc_ops.RPCS.values() for name in role}
    # a public function named as its rpc (as in dask: ``fire_and_forget``) is listed by name
    names -= ORDINARY_WORDS | set(shoal.__all__)
    found = [
        (path, node.lineno, node.value)
        for path, tree in modules
        for node in _string_literals(tree)
        if node.value in names
    ]
    return [f"{path}:{line}: {name}" for path, line, name in sorted(found)]


def calls_by_name(modules: Iterable[tuple[str, ast.AST]]) -> list[str]:
    """``path:line`` of each ``x.call(...)``/``scheduler_call(...)`` given a string: an rpc
    sent by name rather than as its struct."""
    return [
        f"{path}:{node.lineno}"
        for path, tree in modules
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("call", "scheduler_call", "call_keeping")
        and any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    ]


def test_rpc_names_are_spelled_in_the_schema_only() -> None:
    assert rpc_names_spelled(_modules_outside_the_schema()) == []


def test_no_call_site_sends_an_rpc_by_name() -> None:
    assert calls_by_name(_modules_outside_the_schema()) == []


def test_a_name_spelled_outside_the_schema_is_found() -> None:
    code = ast.parse(
        "async def f(pool, client):\n"
        '    await pool.call(addr, "has_what", workers=None)\n'
        '    await calls.call(client, "queue_put", name="q")\n'
        '    handlers = {"get_data": get_data, "nbytes": nbytes}\n'
        '    __all__ = ["fire_and_forget", "get_task_stream"]\n'
    )
    assert rpc_names_spelled([("m.py", code)]) == [
        "m.py:2: has_what",
        "m.py:3: queue_put",
        "m.py:4: get_data",
    ]
    assert calls_by_name([("m.py", code)]) == ["m.py:2", "m.py:3"]


TYPED_CALLS = """
from typing_extensions import assert_type
from shoal.comm import ConnectionPool
from shoal.protocol.rpc_scheduler import SchedulerWaitForWorkers, SchedulerWhoHas

async def use(pool: ConnectionPool) -> None:
    assert_type(await pool.call("tcp://s:1", SchedulerWaitForWorkers(n=2)), int)
    assert_type(await pool.call("tcp://s:1", SchedulerWhoHas(), reply_timeout=None),
                dict[str | tuple[object, ...], tuple[str, ...]])
    await pool.call("tcp://s:1", SchedulerWhoHas(kyes=["x"]))  # error: no such field
    await pool.call("tcp://s:1", "who_has", keys=["x"])  # error: a name, not a struct
"""


def test_a_call_is_typed_by_its_struct_and_refuses_names_and_unknown_fields(
    tmp_path: Path,
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    program = tmp_path / "typed_calls.py"
    program.write_text(TYPED_CALLS)
    cache = SRC.parent / ".mypy_cache"
    flags = ["--strict", "--cache-dir", str(cache), "--no-error-summary", "--hide-error-context"]
    out, err, _ = mypy_api.run([*flags, str(program)])
    assert not err, err
    errors = [line.split(":")[1] for line in out.splitlines() if ": error:" in line]
    assert errors == ["10", "11", "11"], out  # line 11: a str for the struct, and keys=
