"""The routes of the scheduler's and the workers' HTTP services.

Scheduler::

    /health                 "ok" (no token needed)
    /, /status              the dashboard page (static, ships in the package)
    /static/...             its script and style
    /metrics                Prometheus text
    /api/v1/workers         every worker: threads, running tasks, memory, transfers
    /api/v1/tasks           counts by state, and by prefix and state
    /api/v1/task-stream     recent finished tasks and transfers (?n=1000)
    /api/v1/story/{key}     the transitions of one key
    /api/v1/snapshot        what the live page gets, once
    /api/v1/stream          the live page's feed (server-sent events)

Worker: ``/health``, ``/metrics`` and ``/api/v1/info``. Everything but ``/health`` needs
the cluster token (see ``shoal.http.auth``).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shoal.comm.tls import http_ssl_context
from shoal.http import live, views
from shoal.http.auth import token_middleware
from shoal.http.metrics import (
    CONTENT_TYPE_LATEST,
    SchedulerCollector,
    WorkerCollector,
    registry_for,
    render,
)
from shoal.http.service import HttpService, LoopLagMonitor

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from shoal.scheduler.server import Scheduler
    from shoal.worker.server import Worker

logger = logging.getLogger("shoal.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: task-stream entries a request may ask for, at most
MAX_STREAM_REQUEST = 10_000
STATIC = Path(str(resources.files("shoal.http") / "static"))
#: the application key under which a scheduler service keeps its live feed
FEED = web.AppKey("feed", live.LiveFeed)


def _json(data: object) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")), content_type="application/json"
    )


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _metrics_route(registry: CollectorRegistry) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def _new_app(token: str | None, port: Callable[[], int]) -> web.Application:
    app = web.Application(middlewares=[token_middleware(token, port)])
    app.router.add_get("/health", health)
    return app


# -- scheduler ---------------------------------------------------------------------------------
def scheduler_app(
    scheduler: Scheduler, port: Callable[[], int], lag: LoopLagMonitor
) -> web.Application:
    """The scheduler's application; ``port()`` (the bound port) names its session cookie."""
    app = _new_app(scheduler.security.token, port)
    feed = live.LiveFeed(live.SnapshotMaker(scheduler, lambda: lag.last))
    app[FEED] = feed

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/status"})

    async def close_feed(app: web.Application) -> None:
        await feed.close()

    routes: list[tuple[str, Handler]] = [
        ("/", redirect),
        ("/status", page),
        ("/metrics", _metrics_route(registry_for(SchedulerCollector(scheduler, lag)))),
        ("/api/v1/workers", _handler(lambda r: views.workers(scheduler))),
        ("/api/v1/tasks", _handler(lambda r: views.tasks(scheduler))),
        ("/api/v1/task-stream", _handler(lambda r: views.task_stream(scheduler, _n(r)))),
        ("/api/v1/story/{key}", _handler(lambda r: _story(scheduler, r))),
        ("/api/v1/snapshot", _snapshot_route(feed)),
        ("/api/v1/stream", _stream_route(feed)),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)
    app.router.add_static("/static", STATIC)
    app.on_shutdown.append(close_feed)
    return app


def _handler(view: Callable[[web.Request], Any]) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return _json(view(request))

    return handle


def _snapshot_route(feed: live.LiveFeed) -> Handler:
    async def snapshot(request: web.Request) -> web.Response:
        return web.Response(body=feed.latest(), content_type="application/json")

    return snapshot


def _stream_route(feed: live.LiveFeed) -> Handler:
    async def stream(request: web.Request) -> web.StreamResponse:
        return await live.event_stream(request, feed)

    return stream


def _n(request: web.Request) -> int:
    try:
        n = int(request.query.get("n", "1000"))
    except ValueError:
        raise web.HTTPBadRequest(text="n must be an integer") from None
    return max(0, min(n, MAX_STREAM_REQUEST))


def _story(scheduler: Scheduler, request: web.Request) -> dict[str, Any]:
    key = views.parse_key(request.match_info["key"])
    return {"key": views.key_text(key), "story": views.story(scheduler, key)}


async def start_scheduler_http(scheduler: Scheduler, sock: socket.socket) -> HttpService:
    """Serve the scheduler's dashboard and API on ``sock``, the listening socket the
    scheduler bound (``shoal.http.listen.dashboard_socket``) when it started."""
    host, port = sock.getsockname()[:2]
    service = HttpService(host, port, http_ssl_context(scheduler.security, "scheduler"))
    await service.start(scheduler_app(scheduler, lambda: service.port, service.lag), sock)
    return service


# -- worker ------------------------------------------------------------------------------------
def worker_app(worker: Worker, port: Callable[[], int], lag: LoopLagMonitor) -> web.Application:
    """A worker's application: health, metrics and a short summary."""
    app = _new_app(worker.security.token, port)
    app.router.add_get("/metrics", _metrics_route(registry_for(WorkerCollector(worker, lag))))

    def info(request: web.Request) -> dict[str, Any]:
        return {
            "address": worker.address,
            "name": worker.name,
            "nthreads": worker.nthreads,
            "status": worker.status,
            "executing": worker.state.executing_count,
            "in_memory": len(worker.data),
            "memory_limit": worker.memory_limit,
            "scheduler": worker.scheduler_address,
        }

    app.router.add_get("/api/v1/info", _handler(info))
    return app


async def start_worker_http(worker: Worker, sock: socket.socket) -> HttpService:
    """Serve a worker's health and metrics on ``sock``, the listening socket the worker
    bound (``shoal.http.listen``) before it registered with the port."""
    host, port = sock.getsockname()[:2]
    service = HttpService(host, port, http_ssl_context(worker.security, "worker"))
    await service.start(worker_app(worker, lambda: service.port, service.lag), sock)
    return service


__all__ = ["scheduler_app", "start_scheduler_http", "start_worker_http", "worker_app"]
