"""A port bound before its HTTP service exists: requests wait in the backlog until the
service is started on that socket, then get their answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from aiohttp import web

from shoal.http.listen import listening_socket
from shoal.http.service import HttpService
from tests.conftest import run


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def test_a_request_sent_before_the_service_starts_is_answered_once_it_does() -> None:
    async def main() -> bytes:
        sock = listening_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # in the backlog
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        app = web.Application()
        app.router.add_get("/health", hello)
        service = HttpService("127.0.0.1", port)
        await service.start(app, sock)
        try:
            assert service.port == port
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            await service.stop()

    answer = run(main())
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")


def test_the_socket_is_bound_to_the_host_and_a_taken_port_is_refused() -> None:
    sock = listening_socket("127.0.0.1", 0)
    with sock:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0 and not sock.getblocking()
        try:
            listening_socket("127.0.0.1", port).close()
        except OSError:
            pass
        else:
            raise AssertionError(f"port {port} was bound twice")


#: a scheduler and a worker in one fresh process: is aiohttp loaded when the worker registers?
REGISTRATION_PROBE = textwrap.dedent(
    """
    import asyncio, sys, urllib.request
    from shoal.comm import Security
    from shoal.scheduler.server import Scheduler
    from shoal.worker.server import Worker

    seen = []
    register = Worker._register

    async def probing(self, address):
        seen.append(("aiohttp" in sys.modules, self.service_ports.get("http")))
        await register(self, address)

    Worker._register = probing

    async def main():
        security = Security(token="t")
        async with Scheduler(security=security, dashboard_address=None) as scheduler:
            async with Worker(scheduler.address, security=security) as worker:
                late = "aiohttp" in sys.modules  # served (imported) once first asked
                url = f"http://127.0.0.1:{worker.service_ports['http']}/health"
                get = lambda: urllib.request.urlopen(url, timeout=30).read()
                body = await asyncio.to_thread(get)
                port = worker.services["http"].port
                print(seen, late, body == b"ok", port == seen[0][1])

    asyncio.run(main())
    """
)


def test_a_worker_registers_with_its_http_port_and_imports_aiohttp_once_asked() -> None:
    out = subprocess.run(
        [sys.executable, "-c", REGISTRATION_PROBE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen, late, answered, same_port = out.stdout.rsplit(" ", 3)
    assert seen.startswith("[(False, ") and same_port.strip() == "True"
    assert (late, answered) == ("False", "True")  # aiohttp only once /health was asked


def test_a_worker_whose_http_service_fails_refuses_requests_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Served at the first request: a failure then is logged, the socket closed (the
    request is refused, not left waiting in the backlog) and the worker keeps running."""
    import urllib.error
    import urllib.request

    from shoal.comm import Security
    from shoal.http import apps
    from shoal.scheduler.server import Scheduler
    from shoal.worker.server import Worker

    async def broken(worker: object, sock: object) -> object:
        raise RuntimeError("no service today")

    monkeypatch.setattr(apps, "start_worker_http", broken)

    async def main() -> None:
        security = Security.local()
        async with (
            Scheduler(port=0, dashboard_address=None, security=security) as scheduler,
            Worker(scheduler.address, security=security) as worker,
        ):
            url = f"http://127.0.0.1:{worker.service_ports['http']}/health"

            def get() -> bytes:
                return bytes(urllib.request.urlopen(url, timeout=10).read())

            with pytest.raises((urllib.error.URLError, ConnectionError)):
                await asyncio.to_thread(get)
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                await asyncio.to_thread(get)  # refused at once: nothing listens
            assert worker.status == "running"
            assert "http" not in worker.services

    run(main())
