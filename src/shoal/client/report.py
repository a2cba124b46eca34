"""``performance_report(filename=)``: one self-contained HTML file about a block of work.

On entry the workers start sampling (``Client.profile``); on exit the report gathers
the task stream, each worker's profile and the transfers of the block, and writes a
file with no external resources (inline CSS and SVG), readable offline.

Rules of this file:

* Everything shown is escaped: keys and function names come from user code.
* The page is built from plain data (``ReportData``), so it is tested without a cluster.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

#: profile rows shown per worker
TOP_FUNCTIONS = 25
#: task rectangles drawn at most (the rest are counted in the summary)
MAX_RECTS = 20_000


@dataclass
class ReportData:
    start: float
    stop: float
    #: dask's task-stream records: key, worker, startstops
    stream: list[dict[str, Any]] = field(default_factory=list)
    #: worker address -> profile tree
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_workers: int = 0
    total_threads: int = 0


class performance_report:
    """``with performance_report(filename="report.html"): ...`` (also ``async with``)."""

    def __init__(
        self,
        filename: str = "dask-report.html",
        stacklevel: int = 1,
        mode: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.filename = filename
        self.start = 0.0

    def _client(self) -> Any:
        from shoal.client.default import default_client

        return default_client()

    def __enter__(self) -> performance_report:
        self.start = time.time()
        self._client().profile()  # starts sampling on every worker
        return self

    def __exit__(self, *exc: object) -> None:
        client = self._client()
        stop = time.time()
        data = ReportData(
            self.start,
            stop,
            client.get_task_stream(start=self.start, stop=stop),
            client.profile(start=self.start, stop=stop, merge_workers=False),
        )
        info = client.scheduler_info()
        data.n_workers, data.total_threads = info["n_workers"], info["total_threads"]
        write_report(self.filename, data)

    async def __aenter__(self) -> performance_report:
        self.start = time.time()
        await self._client().profile()
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client = self._client()
        stop = time.time()
        data = ReportData(
            self.start,
            stop,
            await client.get_task_stream(start=self.start, stop=stop),
            await client.profile(start=self.start, stop=stop, merge_workers=False),
        )
        info = await client.scheduler_info()
        data.n_workers, data.total_threads = info["n_workers"], info["total_threads"]
        write_report(self.filename, data)


def write_report(filename: str, data: ReportData) -> None:
    with open(filename, "w", encoding="utf-8") as f:
        f.write(render(data))


def render(data: ReportData) -> str:
    computes = [r for r in data.stream if r["startstops"][0]["action"] == "compute"]
    transfers = [r for r in data.stream if r["startstops"][0]["action"] == "transfer"]
    workers = sorted({r["worker"] for r in data.stream} | set(data.profiles))
    busy = sum(r["startstops"][0]["stop"] - r["startstops"][0]["start"] for r in computes)
    moved = sum(int(r.get("nbytes") or 0) for r in transfers)
    summary = [
        ("Duration", f"{data.stop - data.start:.3f} s"),
        ("Tasks", str(len(computes))),
        ("Compute time", f"{busy:.3f} s"),
        ("Transfers", f"{len(transfers)} ({moved} bytes)"),
        ("Workers", str(data.n_workers)),
        ("Threads", str(data.total_threads)),
    ]
    parts = [
        _HEAD,
        "<h1>shoal performance report</h1>",
        f"<p>From {html.escape(time.ctime(data.start))} to "
        f"{html.escape(time.ctime(data.stop))}</p>",
        '<h2>Summary</h2><table id="summary">',
        *(
            f'<tr data-field="{html.escape(k)}"><th>{html.escape(k)}</th>'
            f"<td>{html.escape(v)}</td></tr>"
            for k, v in summary
        ),
        "</table>",
        "<h2>Task stream</h2>",
        _task_stream_svg(computes, workers, data.start, data.stop),
        '<h2>Transfers</h2><table id="transfers"><tr><th>to</th><th>from</th>'
        "<th>bytes</th><th>seconds</th></tr>",
        *(_transfer_row(r) for r in transfers[:1000]),
        "</table>",
        "<h2>Profile</h2>",
        *(_profile_section(w, data.profiles.get(w) or {}) for w in sorted(data.profiles)),
        "</body></html>",
    ]
    return "\n".join(parts)


_HEAD = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>shoal performance report</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}svg{border:1px solid #ccc}
</style></head><body>"""


def _task_stream_svg(
    computes: list[dict[str, Any]], workers: list[str], start: float, stop: float
) -> str:
    width, lane = 1000, 18
    span = max(stop - start, 1e-9)
    rows = {w: i for i, w in enumerate(workers)}
    height = max(len(workers), 1) * lane
    rects = []
    for record in computes[:MAX_RECTS]:
        ss = record["startstops"][0]
        x = (ss["start"] - start) / span * width
        w = max((ss["stop"] - ss["start"]) / span * width, 0.5)
        y = rows.get(record["worker"], 0) * lane
        key = html.escape(str(record["key"]))
        rects.append(
            f'<rect class="task" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane - 2}" '
            f'fill="#1f77b4"><title>{key}</title></rect>'
        )
    labels = [
        f'<text x="2" y="{i * lane + 12}" font-size="10">{html.escape(w)}</text>'
        for w, i in rows.items()
    ]
    return (
        f'<svg id="task-stream" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(rects)}{"".join(labels)}</svg>'
    )


def _transfer_row(record: dict[str, Any]) -> str:
    ss = record["startstops"][0]
    cells = [record["worker"], ss.get("source", ""), record.get("nbytes", 0)]
    cells.append(f"{ss['stop'] - ss['start']:.4f}")
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _profile_section(worker: str, tree: dict[str, Any]) -> str:
    totals: dict[str, list[Any]] = {}
    _walk(tree, totals)
    top = sorted(totals.items(), key=lambda item: -item[1][0])[:TOP_FUNCTIONS]
    rows = "".join(
        f"<tr><td>{count}</td><td>{html.escape(name)}</td><td>{html.escape(where)}</td></tr>"
        for name, (count, where) in top
    )
    return (
        f'<h3>{html.escape(worker)}</h3><table class="profile" '
        f'data-worker="{html.escape(worker)}" data-samples="{tree.get("count", 0)}">'
        f"<tr><th>samples</th><th>function</th><th>file</th></tr>{rows}</table>"
    )


def _walk(node: dict[str, Any], totals: dict[str, list[Any]]) -> None:
    for child in node.get("children", {}).values():
        description = child["description"]
        name = description["name"]
        entry = totals.setdefault(name, [0, f"{description['filename']}"])
        entry[0] += child["count"]
        _walk(child, totals)


class get_task_stream:
    """``with get_task_stream() as ts: ...``; then ``ts.data`` lists the tasks (dask's
    task-stream records) that ran inside the block."""

    def __init__(self, client: Any = None, plot: bool = False, filename: str = "") -> None:
        if plot:
            raise NotImplementedError("get_task_stream(plot=...) needs bokeh: not offered")
        self.client = client
        self.data: list[dict[str, Any]] = []
        self.start = 0.0

    def _client(self) -> Any:
        if self.client is not None:
            return self.client
        from shoal.client.default import default_client

        return default_client()

    def __enter__(self) -> get_task_stream:
        self.start = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.data.extend(self._client().get_task_stream(start=self.start))

    async def __aenter__(self) -> get_task_stream:
        self.start = time.time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.data.extend(await self._client().get_task_stream(start=self.start))
