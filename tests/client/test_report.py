"""performance_report writes one self-contained HTML file: rendered from plain data, and
opened in a real headless Chromium after a real workload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shoal import LocalCluster, get_task_stream, performance_report
from shoal.client import Client
from shoal.client.report import ReportData, render
from tests.http.cdp import Browser


def spin(x: int) -> int:
    """Busy for 50 ms, so the sampler sees it."""
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
    return x


def test_render_escapes_user_text_and_has_every_section() -> None:
    stream = [
        {
            "key": "<script>alert(1)</script>",
            "worker": "tcp://w:1",
            "status": "OK",
            "startstops": [{"action": "compute", "start": 1.0, "stop": 1.5}],
        },
        {
            "key": "transfer-x",
            "worker": "tcp://w:1",
            "status": "OK",
            "nbytes": 100,
            "startstops": [
                {"action": "transfer", "start": 1.1, "stop": 1.2, "source": "tcp://v:2"}
            ],
        },
    ]
    page = render(ReportData(1.0, 2.0, stream, {}, 1, 2))  # type: ignore[arg-type]
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    for section in ('id="summary"', 'id="task-stream"', 'id="transfers"', "Profile"):
        assert section in page
    assert "1 (100 bytes)" in page and "http" not in page.split("<body>")[1].replace(
        "http://www.w3.org/2000/svg", ""
    )  # self-contained: no external resources


def test_performance_report_opens_in_a_browser(tmp_path: Path, chromium: str) -> None:
    target = tmp_path / "report.html"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # the default client, which the report uses
    ):
        with performance_report(filename=str(target)), get_task_stream() as ts:
            assert client.gather(client.map(spin, range(12))) == list(range(12))
        assert len([r for r in ts.data if str(r["key"]).startswith("spin")]) == 12
    browser = Browser(chromium, tmp_path / "profile")

    async def look() -> tuple[int, str, int]:
        async with browser:
            await browser.call("Page.navigate", url=target.as_uri())
            await browser.wait_for("document.getElementById('summary') !== null")
            rects = await browser.evaluate("document.querySelectorAll('rect.task').length")
            tasks = await browser.evaluate(
                """document.querySelector('[data-field="Tasks"] td').textContent"""
            )
            samples = await browser.evaluate(
                "[...document.querySelectorAll('table.profile')]"
                ".reduce((n, t) => n + Number(t.dataset.samples), 0)"
            )
            return int(rects), str(tasks), int(samples)

    rects, tasks, samples = asyncio.run(look())
    assert rects == 12 and tasks == "12"
    assert samples > 0  # the workers were sampled while the tasks ran
