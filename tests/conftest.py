"""Helpers and fixtures that test modules in several packages share: one copy of each.

Rules of this file:

* Only what two or more test modules need lives here; a package's own helpers stay in
  that package (``tests/<package>/helpers.py`` or its ``conftest.py``).
* Every wait has a deadline and fails naming what it waited for; nothing sleeps blind.
* Plain helpers are imported (``from tests.conftest import wait_until``); fixtures are
  found by pytest on its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import pytest

from shoal.protocol.frames import Buffer

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60) -> T:
    """``asyncio.run(coro)``, failing with ``TimeoutError`` after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def received(frames: Iterable[Buffer]) -> list[memoryview]:
    """Frames as a receiver holds them: memoryviews, not copies (``loads(received(dumps(m)))``)."""
    return [memoryview(frame) for frame in frames]


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30,
    what: str = "the condition",
    *,
    interval: float = 0.05,
) -> None:
    """Poll ``condition`` every ``interval`` seconds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_for_condition(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition"
) -> None:
    """In a running loop: yield until ``predicate`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["tcp://127.0.0.1:0", "inproc://"], ids=["tcp", "inproc"])
def address(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``address`` runs over TCP and in-process; a module may
    override it (tests/comm/test_conformance.py adds TLS)."""
    return str(request.param)


@pytest.fixture
def chromium() -> str:
    """Path of the chromium binary; skips where it is missing, but fails in CI, which
    installs it (``.ci/run``)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run must install it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path
