"""--preload: import by name or file, setup in order (sync or async), teardown reversed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shoal.preload import PreloadError, import_preload, run_setups, run_teardowns

HOOKS = """
CALLS = []
{kind}def shoal_setup(server):
    CALLS.append(("setup", "{name}", server))
def shoal_teardown(server):
    CALLS.append(("teardown", "{name}", server))
"""


def write(tmp_path: Path, name: str, kind: str = "") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(HOOKS.format(kind=kind, name=name))
    return path


def test_hooks_run_in_order_and_teardowns_in_reverse(tmp_path: Path) -> None:
    first = import_preload(str(write(tmp_path, "first")))
    second = import_preload(str(write(tmp_path, "second", kind="async ")))
    server: Any = object()
    asyncio.run(run_setups([first, second], server))
    asyncio.run(run_teardowns([first, second], server))
    calls = first.CALLS + second.CALLS
    assert sorted(calls, key=lambda c: (c[0] != "setup", c)) == [
        ("setup", "first", server),
        ("setup", "second", server),
        ("teardown", "first", server),
        ("teardown", "second", server),
    ]


def test_a_module_by_name(tmp_path: Path) -> None:
    module = import_preload("json")
    asyncio.run(run_setups([module], object()))  # no hooks: nothing to call, no error


def test_a_missing_module_is_named() -> None:
    with pytest.raises(PreloadError, match="cannot import preload 'no_such_module_x'"):
        import_preload("no_such_module_x")


def test_a_failing_setup_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def shoal_setup(server):\n    raise RuntimeError('nope')\n")
    module = import_preload(str(path))
    with pytest.raises(PreloadError, match=r"shoal_setup of preload .*broken.*nope"):
        asyncio.run(run_setups([module], object()))
