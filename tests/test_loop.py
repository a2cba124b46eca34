"""shoal.loop: which event loop shoal makes (uvloop when installed and allowed), run()."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator

import dask.config
import pytest

from shoal import loop as shoal_loop


class FakeLoop(asyncio.SelectorEventLoop):
    """Stands for uvloop's loop: a working loop of another class."""


@pytest.fixture
def fake_uvloop(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = types.ModuleType("uvloop")
    module.new_event_loop = FakeLoop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", module)
    yield module


def test_uvloop_is_used_when_importable_and_allowed(fake_uvloop: types.ModuleType) -> None:
    assert shoal_loop.loop_factory() is FakeLoop

    async def loop_class() -> type:
        return type(asyncio.get_running_loop())

    expected = FakeLoop if hasattr(asyncio, "Runner") else asyncio.SelectorEventLoop
    assert shoal_loop.run(loop_class()) is expected


def test_the_setting_turns_uvloop_off(fake_uvloop: types.ModuleType) -> None:
    with dask.config.set({"shoal.event-loop.uvloop": False}):
        assert shoal_loop.loop_factory() is asyncio.new_event_loop


def test_without_uvloop_asyncio_loop_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert shoal_loop.loop_factory() is asyncio.new_event_loop

    async def answer() -> int:
        return 42

    assert shoal_loop.run(answer()) == 42
