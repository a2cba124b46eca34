"""Finding the scheduler and its token; failing to connect, in time, naming the address."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import discovery
from shoal.client import Client
from shoal.client.connect import resolve
from shoal.comm import Security
from shoal.errors import CommBrokenError, ShoalTimeoutError
from tests.client.client_fakes import FakeTransport


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    host, port = server.getsockname()
    yield f"tcp://{host}:{port}"
    server.close()


def test_a_silent_peer_times_out_naming_the_address(silent_server: str) -> None:
    start = time.monotonic()
    with pytest.raises(ShoalTimeoutError, match=re.escape(silent_server)):
        Client(silent_server, timeout=0.5, security=Security.local(), set_as_default=False)
    assert time.monotonic() - start < 5


def test_a_closed_port_fails_at_once_naming_the_address() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()  # nothing listens there now
    with pytest.raises(CommBrokenError, match=re.escape(address)):
        Client(address, timeout=5, security=Security.local(), set_as_default=False)


def test_an_address_without_a_known_token_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(discovery, "default_token_path", lambda: tmp_path / "no-token")
    with pytest.raises(FileNotFoundError, match=re.escape("no token known for tcp://127.0.0.1:1")):
        Client("tcp://127.0.0.1:1", set_as_default=False)


def test_resolve_an_address_with_a_registered_token() -> None:
    security = Security.local()
    discovery.register_local("tcp://here:1", security)
    try:
        target = asyncio.run(resolve("tcp://here:1", None, None, {}))
    finally:
        discovery.unregister_local("tcp://here:1")
    assert (target.address, target.security, target.cluster) == ("tcp://here:1", security, None)


def test_resolve_a_scheduler_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sekrit\n")
    token_file.chmod(0o600)
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": "tcp://s:2", "token_file": str(token_file)}))
    target = asyncio.run(resolve(None, str(scheduler_file), None, {}))
    assert target.address == "tcp://s:2" and target.security.token == "sekrit"


def test_resolve_a_cluster_object_uses_its_security() -> None:
    class Cluster:
        scheduler_address = "tcp://c:3"
        security = Security.local()

    target = asyncio.run(resolve(Cluster(), None, None, {}))
    assert target.security is Cluster.security and isinstance(target.cluster, Cluster)
    assert not target.owns_cluster


def test_cluster_arguments_with_an_address_are_refused() -> None:
    with pytest.raises(TypeError, match="n_workers"):
        asyncio.run(resolve("tcp://x:1", None, Security.local(), {"n_workers": 2}))
    with pytest.raises(TypeError, match="needs an address, a cluster or nothing"):
        asyncio.run(resolve(42, None, None, {}))


def test_a_task_raising_timeout_error_is_not_mistaken_for_a_client_timeout() -> None:
    def times_out() -> None:
        raise TimeoutError("the task's own timeout")

    fake = FakeTransport()
    with Client._from_transport(fake) as client:
        future = client.submit(times_out)
        fake.compute()
        with pytest.raises(TimeoutError, match="the task's own timeout") as info:
            future.result()
        assert not isinstance(info.value, ShoalTimeoutError)
        with pytest.raises(TimeoutError, match="the task's own timeout"):
            client.gather([future])
