"""The dashboard in a real headless Chromium while a workload runs.

Skips only where chromium is not installed; CI installs it (``.ci/run``), so there a
missing browser fails the test instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from shoal.client import Client
from shoal.cluster import LocalCluster
from tests.conftest import wait_until
from tests.http.cdp import Browser

#: gates the blocked tasks wait on (the workers run in this process)
GATES: dict[str, threading.Event] = {}


def inc(x: int) -> int:
    return x + 1


def held(name: str, i: int) -> int:
    GATES.setdefault(name, threading.Event()).wait(60)
    return i


def row(prefix: str, field: str) -> str:
    """JavaScript: a progress row's count, or null while the row is not there."""
    return f"(document.querySelector('[data-prefix=\"{prefix}\"]')?.dataset.{field} ?? null)"


async def watch(
    browser: Browser, link: str, workers: set[str], shot: Path, open_gate: Callable[[], None]
) -> None:
    await browser.call("Page.navigate", url=link)
    await browser.wait_for("document.querySelectorAll('tr.worker').length === 2")
    shown = await browser.evaluate(
        "[...document.querySelectorAll('tr.worker')].map(r => r.dataset.worker)"
    )
    assert set(shown) == workers
    await browser.wait_for(f"{row('inc', 'memory')} === '40'")
    await browser.wait_for(f"{row('held', 'processing')} === '2'")
    assert await browser.evaluate("document.getElementById('status').textContent") == "live"
    threads = await browser.evaluate("document.getElementById('n-threads').textContent")
    assert threads == "2"
    await browser.screenshot(shot)
    open_gate()  # the page must follow: the held tasks finish
    await browser.wait_for(f"{row('held', 'memory')} === '2'")
    assert await browser.evaluate(row("held", "processing")) == "0"


def test_dashboard_shows_workers_and_progress_live(tmp_path: Path, chromium: str) -> None:
    GATES["held"] = threading.Event()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        done = client.map(inc, range(40))  # held: forgotten tasks leave the progress bars
        assert client.gather(done) == list(range(1, 41))
        blocked = client.map(held, ["held", "held"], [0, 1])
        state = cluster.scheduler.state
        wait_until(lambda: state.n_tasks_by_state().get("processing", 0) == 2)
        link = cluster.dashboard_login_link
        assert link is not None
        workers = set(state.workers)
        shot = tmp_path / "dash.png"
        browser = Browser(chromium, tmp_path / "profile")

        async def run() -> None:
            async with browser:
                await watch(browser, link, workers, shot, GATES["held"].set)

        try:
            asyncio.run(run())
        finally:
            GATES["held"].set()
        assert client.gather(blocked) == [0, 1]
    assert shot.read_bytes().startswith(b"\x89PNG")
