"""Imports point one way (DESIGN.md §2). This test walks every module under src/shoal.

The rules, as data below:

* The pure layers (protocol, graph, the worker and scheduler state machines, the
  scheduler's policy, and the wire adapters ``{worker,scheduler,client}.wire``) import
  only ``shoal.errors``, ``shoal._types``, their own layer
  (graph may also use protocol), the standard library minus anything that does IO,
  threads or clocks, and a short list of third-party packages per layer.
* A ``*.server`` module never imports another ``*.server`` (``shoal.server``, the base
  class the server shells share, is not one of them).
* ``shoal.worker.*`` never imports ``shoal.scheduler.*``, and the other way round.
* ``shoal.comm`` imports only protocol, errors, _types, config and _version from shoal.

Imports under ``if TYPE_CHECKING:`` count too: an arrow is an arrow. Modules that do not
exist yet are simply not walked; the checker itself is tested on synthetic sources.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

ALWAYS_ALLOWED = ("shoal.errors", "shoal._types")
#: standard-library modules that do IO, run threads or read clocks: never in a pure layer
IMPURE_STDLIB = frozenset(
    {"asyncio", "socket", "threading", "time", "os", "logging", "subprocess", "selectors"}
)
#: allowed in the pure layer that serializes user objects, and nowhere else that is pure
PICKLE = frozenset({"pickle"})
#: the base of every event, instruction and wire struct (msgspec.Struct): plain data, no IO
STRUCTS = frozenset({"msgspec"})


@dataclass(frozen=True)
class PureLayer:
    name: str
    #: modules (and their submodules) that belong to the layer
    members: tuple[str, ...]
    #: shoal modules, besides errors and _types, that the layer may import
    may_import: tuple[str, ...]
    #: top-level third-party (or otherwise restricted) packages the layer may import
    third_party: frozenset[str] = frozenset()


WORKER_STATE = ("shoal.worker.state", "shoal.worker.events", "shoal.worker.instructions")
SCHEDULER_STATE = (
    "shoal.scheduler.state",
    "shoal.scheduler.events",
    "shoal.scheduler.instructions",
    "shoal.scheduler.policy",
    "shoal.scheduler.adaptive",
    "shoal.scheduler.coordination",
)
WIRE_ADAPTERS = ("shoal.worker.wire", "shoal.scheduler.wire", "shoal.client.wire")
PURE_LAYERS = (
    PureLayer(
        "protocol",
        ("shoal.protocol",),
        ("shoal.protocol",),
        frozenset({"msgpack", "cloudpickle"}) | PICKLE | STRUCTS,
    ),
    PureLayer("graph", ("shoal.graph",), ("shoal.graph", "shoal.protocol"), frozenset({"dask"})),
    # quick tasks (run ahead) are told by their prefix: the same key_split
    PureLayer("worker state", WORKER_STATE, (*WORKER_STATE, "shoal.graph.keys"), STRUCTS),
    # task groups are named by the one key_split (graph.keys), with dask's semantics
    PureLayer("scheduler state", SCHEDULER_STATE, (*SCHEDULER_STATE, "shoal.graph.keys"), STRUCTS),
    # the adapters between the wire schema and each side's events and instructions; the
    # worker/scheduler separation below applies to them too
    PureLayer(
        "wire adapters",
        WIRE_ADAPTERS,
        (
            "shoal.protocol",
            "shoal.worker.events",
            "shoal.worker.instructions",
            "shoal.scheduler.events",
            "shoal.scheduler.instructions",
        ),
    ),
)
#: the base class every server shell shares; not a server of its own
SHARED_SERVER_BASE = "shoal.server"
COMM_MAY_IMPORT = (
    "shoal.comm", "shoal.protocol", "shoal.config", "shoal._version", *ALWAYS_ALLOWED,
)  # fmt: skip


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    """``name`` is one of ``prefixes`` or a submodule of one.

    A state module split into helpers (``shoal.scheduler.state_records`` beside
    ``shoal.scheduler.state``) counts as part of it, so the helpers are held to the
    same rules.
    """
    return any(
        name == p or name.startswith(p + ".") or (p.endswith(".state") and name.startswith(p + "_"))
        for p in prefixes
    )


# -- finding modules and their imports ----------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def iter_modules(src: Path) -> Iterator[Module]:
    """Every module of the ``shoal`` package under ``src``."""
    for path in sorted((src / "shoal").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        yield Module(name, path, is_package)


def imports_of(module: Module, source: str, known: frozenset[str]) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) for each import in ``source``, resolved against ``known``."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, str(module.path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(package, node.level, node.module)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in known else base), node.lineno
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            argument = node.args[0]
            assert isinstance(argument, ast.Constant)
            yield str(argument.value), node.lineno


def _absolute(package: str, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        return "<relative import beyond the top level>"
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{name}" if name else base


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    named = (isinstance(func, ast.Name) and func.id in {"__import__", "import_module"}) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )
    return (
        named
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
        and not call.args[0].value.startswith(".")
    )


# -- the rules ----------------------------------------------------------------------------------


def arrow_violations(importer: str, imported: str) -> list[str]:
    """Why ``importer`` may not import ``imported`` (empty if it may)."""
    reasons: list[str] = []
    top = imported.partition(".")[0]
    internal = top == "shoal"
    for layer in PURE_LAYERS:
        if not within(importer, layer.members):
            continue
        if internal and not within(imported, ALWAYS_ALLOWED + layer.may_import):
            reasons.append(f"the pure {layer.name} layer may not import shoal module {imported}")
        elif not internal and top in sys.stdlib_module_names:
            if top in IMPURE_STDLIB or (top in PICKLE and top not in layer.third_party):
                reasons.append(f"the pure {layer.name} layer may not import {imported}")
        elif not internal and top not in layer.third_party:
            reasons.append(f"the pure {layer.name} layer may not import third-party {imported}")
    if internal:
        reasons.extend(_internal_arrow_violations(importer, imported))
    return reasons


def _internal_arrow_violations(importer: str, imported: str) -> Iterator[str]:
    if (
        importer.rpartition(".")[2] == "server"
        and imported.rpartition(".")[2] == "server"
        and imported not in (importer, SHARED_SERVER_BASE)
    ):
        yield f"a server ({importer}) may not import another server ({imported})"
    for one, other in (("shoal.worker", "shoal.scheduler"), ("shoal.scheduler", "shoal.worker")):
        if within(importer, (one,)) and within(imported, (other,)):
            yield f"{one}.* may not import {other}.* ({imported})"
    if within(importer, ("shoal.comm",)) and not within(imported, COMM_MAY_IMPORT):
        yield f"shoal.comm may not import {imported}"


def check_module(module: Module, source: str, known: frozenset[str]) -> list[str]:
    """Every wrong-way arrow in ``source``, as ``path:line: reason``."""
    problems: list[str] = []
    for imported, line in imports_of(module, source, known):
        for reason in arrow_violations(module.name, imported):
            problem = f"{module.path}:{line}: {module.name}: {reason}"
            if problem not in problems:  # "from m import a, b" is one arrow
                problems.append(problem)
    return problems


def check_tree(src: Path) -> list[str]:
    modules = list(iter_modules(src))
    known = frozenset(m.name for m in modules)
    problems: list[str] = []
    for module in modules:
        problems.extend(check_module(module, module.path.read_text("utf-8"), known))
    return problems


# -- the real tree ------------------------------------------------------------------------------


def test_imports_point_one_way() -> None:
    problems = check_tree(SRC)
    assert not problems, "wrong-way imports:\n" + "\n".join(problems)


def test_the_walk_sees_the_package() -> None:
    names = {m.name for m in iter_modules(SRC)}
    assert {"shoal.errors", "shoal._types", "shoal.protocol", "shoal.protocol.frames"} <= names


# -- the checker itself, on synthetic sources -------------------------------------------------

KNOWN = frozenset(
    {
        "shoal",
        "shoal.errors",
        "shoal._types",
        "shoal.config",
        "shoal.sizes",
        "shoal.protocol",
        "shoal.protocol.frames",
        "shoal.protocol.messages",
        "shoal.graph",
        "shoal.graph.spec",
        "shoal.comm",
        "shoal.comm.tcp",
        "shoal.worker",
        "shoal.worker.state",
        "shoal.worker.events",
        "shoal.worker.server",
        "shoal.scheduler",
        "shoal.scheduler.state",
        "shoal.scheduler.policy",
        "shoal.scheduler.server",
        "shoal.http.server",
        "shoal.client",
        "shoal.client.core",
        "shoal.client.wire",
        "shoal.worker.wire",
        "shoal.scheduler.wire",
        "shoal.scheduler.events",
        "shoal.scheduler.instructions",
        "shoal.protocol.ops",
    }
)


def problems_in(name: str, source: str) -> list[str]:
    is_package = any(known.startswith(name + ".") for known in KNOWN)
    return check_module(Module(name, Path(f"<{name}>"), is_package), source, KNOWN)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("shoal.protocol.frames", "import struct\nfrom collections import deque"),
        ("shoal.protocol.frames", "from shoal.errors import ProtocolError"),
        ("shoal.protocol.frames", "from shoal import errors\nfrom shoal import _types"),
        ("shoal.protocol.messages", "import msgpack\nfrom .frames import Buffer"),
        ("shoal.protocol.serialize", "import pickle\nimport cloudpickle"),
        ("shoal.protocol", "from .frames import FrameDecoder"),
        ("shoal.graph.spec", "import dask\nfrom dask.core import istask"),
        ("shoal.graph.spec", "from shoal.protocol import Serialized\nfrom . import order"),
        ("shoal.worker.state", "from shoal.worker.events import Event\nimport heapq"),
        ("shoal.worker.state", "from . import events\nfrom shoal.worker import events"),
        ("shoal.worker.state", "import random\nfrom typing import TYPE_CHECKING"),
        ("shoal.scheduler.policy", "from shoal.scheduler.state import SchedulerState"),
        ("shoal.scheduler.policy", "from shoal.scheduler.state_records import Rec, fill"),
        ("shoal.scheduler.state_records", "from shoal.scheduler.policy import fill"),
        ("shoal.worker.server", "import asyncio\nfrom shoal.worker.state import WorkerState"),
        ("shoal.worker.server", "from shoal.comm.tcp import connect\nimport psutil"),
        ("shoal.comm.tcp", "import asyncio, ssl, socket\nfrom shoal.config import CommConfig"),
        ("shoal.comm.tcp", "from shoal.protocol.frames import FrameDecoder\nfrom . import core"),
        (
            "shoal.cluster",
            "from shoal.scheduler.server import S\nfrom shoal.worker.server import W",
        ),
        ("shoal.worker.memory", "import os\nimport zict"),
        ("shoal.worker.server", "from shoal.server import Server"),
        ("shoal.worker.wire", "from shoal.protocol import ops\nfrom shoal.worker import events"),
        ("shoal.scheduler.wire", "from shoal.scheduler import instructions as ins"),
        (
            "shoal.client.wire",
            "from collections.abc import Mapping\nfrom shoal.protocol import ops",
        ),
    ],
)
def test_checker_allows(module: str, source: str) -> None:
    assert problems_in(module, source) == []


@pytest.mark.parametrize(
    ("module", "source", "reason"),
    [
        ("shoal.protocol.frames", "import asyncio", "may not import asyncio"),
        ("shoal.protocol.frames", "import os.path", "may not import os.path"),
        ("shoal.protocol.frames", "from time import monotonic", "may not import time"),
        ("shoal.protocol", "import logging", "may not import logging"),
        ("shoal.graph.spec", "import threading", "may not import threading"),
        ("shoal.graph.spec", "import socket", "may not import socket"),
        ("shoal.worker.state", "import subprocess", "may not import subprocess"),
        ("shoal.scheduler.state", "import selectors", "may not import selectors"),
        ("shoal.scheduler.state_records", "import time", "may not import time"),
        ("shoal.scheduler.policy", "from shoal.scheduler.stateful import x", "shoal.scheduler.st"),
        ("shoal.worker.state_x", "from shoal.scheduler.state_x import S", "may not import shoal"),
        ("shoal.graph.spec", "import pickle", "may not import pickle"),
        ("shoal.worker.events", "import pickle", "may not import pickle"),
        ("shoal.protocol.frames", "import numpy", "third-party numpy"),
        ("shoal.protocol.frames", "import dask", "third-party dask"),
        ("shoal.graph.spec", "import msgpack", "third-party msgpack"),
        ("shoal.scheduler.policy", "import dask.order", "third-party dask.order"),
        ("shoal.protocol.frames", "from shoal.comm import tcp", "shoal module shoal.comm.tcp"),
        ("shoal.protocol.frames", "from shoal.graph.spec import T", "shoal module shoal.graph"),
        ("shoal.protocol.frames", "from shoal import config", "shoal module shoal.config"),
        ("shoal.protocol.frames", "import shoal.sizes", "shoal module shoal.sizes"),
        ("shoal.protocol.frames", "from shoal import Client", "shoal module shoal"),
        ("shoal.protocol.frames", "from .. import config", "shoal module shoal.config"),
        ("shoal.protocol", "from ..comm import tcp", "shoal module shoal.comm.tcp"),
        ("shoal.worker.state", "from shoal.protocol import dumps", "shoal.protocol"),
        ("shoal.worker.state", "from ..scheduler import state", "may not import shoal.scheduler"),
        ("shoal.worker.events", "from shoal.worker.server import W", "shoal.worker.server"),
        ("shoal.scheduler.state", "from shoal.worker.state import S", "shoal.worker.state"),
        ("shoal.scheduler.policy", "from shoal.comm import rpc", "shoal module shoal.comm"),
        (
            "shoal.worker.state",
            "if TYPE_CHECKING:\n    from shoal.worker import server",
            "shoal.worker.server",
        ),
        (
            "shoal.protocol.frames",
            "import importlib\nimportlib.import_module('asyncio')",
            "asyncio",
        ),
        ("shoal.graph.spec", "__import__('os')", "may not import os"),
        ("shoal.worker.server", "from shoal.scheduler.server import S", "another server"),
        ("shoal.scheduler.server", "from shoal.http.server import H", "another server"),
        ("shoal.scheduler.server", "from shoal.worker import server", "another server"),
        ("shoal.server", "from shoal.worker.server import W", "another server"),
        ("shoal.worker.server", "from shoal.scheduler.state import S", "shoal.worker.* may not"),
        ("shoal.worker.memory", "import shoal.scheduler", "shoal.worker.* may not"),
        ("shoal.scheduler.server", "from shoal.worker.state import S", "shoal.scheduler.* may"),
        ("shoal.comm.tcp", "from shoal.worker.state import S", "shoal.comm may not"),
        ("shoal.comm.tcp", "from shoal.client import Client", "shoal.comm may not"),
        ("shoal.comm", "from shoal import sizes", "shoal.comm may not import shoal.sizes"),
        ("shoal.worker.wire", "import time", "pure wire adapters layer may not import time"),
        ("shoal.scheduler.wire", "from shoal.scheduler.state import S", "shoal.scheduler.state"),
        ("shoal.worker.wire", "from shoal.scheduler import events", "shoal.worker.* may not"),
        ("shoal.client.wire", "from shoal.client.core import C", "shoal module shoal.client.core"),
        ("shoal.client.wire", "import asyncio", "may not import asyncio"),
    ],
)
def test_checker_refuses(module: str, source: str, reason: str) -> None:
    problems = problems_in(module, source)
    assert problems, f"{module} importing {source!r} should be refused"
    assert any(reason in p for p in problems), problems


def test_checker_reports_path_and_line() -> None:
    [problem] = problems_in("shoal.protocol.frames", "import struct\n\nimport asyncio\n")
    assert problem.startswith("<shoal.protocol.frames>:3: shoal.protocol.frames: ")


def test_walk_finds_a_wrong_way_arrow_in_a_tree(tmp_path: Path) -> None:
    package = tmp_path / "shoal"
    (package / "protocol").mkdir(parents=True)
    (package / "worker").mkdir()
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "protocol" / "__init__.py").write_text("from .frames import X\n")
    (package / "protocol" / "frames.py").write_text("import struct\nfrom shoal.errors import E\n")
    (package / "worker" / "__init__.py").write_text("")
    (package / "worker" / "state.py").write_text("from . import events\nimport heapq\n")
    (package / "worker" / "events.py").write_text("from shoal._types import Key\n")
    assert check_tree(tmp_path) == []

    (package / "worker" / "events.py").write_text("from ..protocol import frames\n")
    [problem] = check_tree(tmp_path)
    assert "events.py:1: shoal.worker.events: " in problem
    assert "may not import shoal module shoal.protocol.frames" in problem
