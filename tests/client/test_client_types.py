"""The Client's types: a synchronous client's methods return values, an asynchronous
client's return awaitables (``shoal.client.modes``), checked by running mypy on small
programs; and no public method is annotated ``-> Any``."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest

from shoal.client.actor import Actor, ActorFuture
from shoal.client.as_completed import as_completed
from shoal.client.client import Client
from shoal.client.executor import ClientExecutor
from shoal.client.future import Future

mypy_api = pytest.importorskip("mypy.api")

GOOD = """
from collections.abc import Awaitable
from typing import Any
from typing_extensions import assert_type
from shoal import Client, Future, as_completed
from shoal.client.modes import Async, Mode, Sync

def sync_use() -> None:
    client = Client()
    assert_type(client, Client[Sync])
    assert_type(client.who_has(), dict[str | tuple[object, ...], tuple[str, ...]])
    assert_type(client.nthreads(), dict[str, int])
    assert_type(client.close(), None)
    assert_type(client.submit(len, "x"), Future)
    assert_type(client.map(len, ["x"]), list[Future])
    info: dict[str, Any] = client.scheduler_info()
    names: list[str] = client.list_datasets()
    logs: list[tuple[Any, ...]] = client.get_scheduler_logs()
    assert_type(client.run(len, "x"), dict[str, Any])
    assert_type(client.run(len, "x", wait=False), None)

async def async_use() -> None:
    client = await Client(asynchronous=True)
    assert_type(client, Client[Async])
    assert_type(client.nthreads(), Awaitable[dict[str, int]])
    threads: dict[str, int] = await client.nthreads()
    assert_type(await client.close(), None)
    assert_type(client.submit(len, "x"), Future)
    assert_type(client.run(len, "x"), Awaitable[dict[str, Any]])

def iterate(futures: list[Future], flag: bool) -> None:
    for future in as_completed(futures):
        assert_type(future, Future)
    for pair in as_completed(futures, with_results=True):
        assert_type(pair, tuple[Future, Any])
    assert_type(as_completed(futures, with_results=flag).next(), Future | tuple[Future, Any])

def unknown_mode(flag: bool) -> None:
    client = Client(asynchronous=flag)
    assert_type(client, Client[Mode])
    either: dict[str, int] | Awaitable[dict[str, int]] = client.nthreads()
"""

BAD = """
from shoal import Client, as_completed

def wrong() -> None:
    count: int = Client().nthreads()
    Client(asynchronous=True).nthreads().items()
    Client().who_has(futures=1, nope=2)
    for pair in as_completed([], with_results=True):
        pair.result()
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy (strict) over both programs at once: error lines per program."""
    folder = tmp_path_factory.mktemp("types")
    for name, text in {"good": GOOD, "bad": BAD}.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    cache = Path(__file__).resolve().parents[2] / ".mypy_cache"
    flags = ["--strict", "--cache-dir", str(cache), "--no-error-summary", "--hide-error-context"]
    out, err, _ = mypy_api.run([*flags, str(folder / "good.py"), str(folder / "bad.py")])
    assert not err, err
    found: dict[str, list[str]] = {"good": [], "bad": []}
    for line in out.splitlines():
        match = re.match(r".*[/\\](good|bad)\.py:(\d+): error: (.*)", line)
        if match:
            found[match[1]].append(f"{match[2]}: {match[3]}")
    return found


def test_each_mode_gives_the_precise_types(mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors["good"] == []


def test_misuse_of_the_types_is_caught(mypy_errors: dict[str, list[str]]) -> None:
    errors = mypy_errors["bad"]
    lines = {int(e.split(":")[0]) for e in errors}
    assert lines == {5, 6, 7, 9}, errors
    assert any("incompatible types in assignment" in e.lower() for e in errors), errors
    assert any('"Awaitable[dict[str, int]]" has no attribute "items"' in e for e in errors)
    assert any("nope" in e for e in errors), errors
    assert any('"tuple[Future, Any]" has no attribute "result"' in e for e in errors), errors


#: methods whose result is the user's own object (a task's value, a dataset, metadata):
#: ``Maybe[Any]`` there says "that value, or an awaitable of it", and nothing more precise
USER_VALUES = {
    (Client, "get"),
    (Client, "compute"),
    (Client, "persist"),
    (Client, "gather"),
    (Client, "scatter"),
    (Client, "run_on_scheduler"),
    (Client, "get_metadata"),
    (Client, "get_dataset"),
    (Client, "sync"),
    (Future, "result"),
    (ActorFuture, "result"),
    (as_completed, "next"),
    (as_completed, "__next__"),
}
#: names the modules import for type checkers only
LOCALNS = {"ClientExecutor": ClientExecutor, "Client": Client}
PUBLIC_CLASSES = (Client, Future, as_completed, Actor, ActorFuture)


def _public_methods(cls: type) -> list[tuple[str, Any]]:
    return [
        (name, fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") or name == "__next__"
    ]


def _return_hint(fn: Any) -> Any:
    """``fn``'s return annotation, evaluated in its module (its parameters' are not)."""

    def probe() -> None: ...

    probe.__annotations__ = {"return": fn.__annotations__.get("return", "Any")}
    module = sys.modules[fn.__module__].__dict__
    return typing.get_type_hints(probe, globalns=module, localns=LOCALNS)["return"]


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_no_public_method_returns_any(cls: type) -> None:
    vague = []
    for name, fn in _public_methods(cls):
        returned = _return_hint(fn)
        args = typing.get_args(returned)
        if (cls, name) in USER_VALUES:
            continue
        if returned is Any or (len(args) == 2 and args[0] is Any):  # Any, or Maybe[Any]
            vague.append(name)
    assert vague == [], f"{cls.__name__} methods typed Any: {vague}"


def test_the_check_sees_the_methods() -> None:
    names = {name for name, _ in _public_methods(Client)}
    assert {"submit", "who_has", "register_plugin", "publish_dataset", "close"} <= names
