"""Ports, ranges, interfaces and the addresses servers give out (nothing leaves loopback:
the routing probe is a UDP "connect", which sends no packet)."""

from __future__ import annotations

import asyncio
import ipaddress

import psutil
import pytest

from shoal.comm import Security
from shoal.comm.hostaddr import (
    contact_address,
    host_facing,
    interface_address,
    listen_addresses,
    parse_ports,
    routable_ip,
)
from shoal.scheduler.server import Scheduler
from shoal.worker.server import Worker


@pytest.mark.parametrize(
    ("port", "expected"),
    [(None, [0]), (0, [0]), ("8786", [8786]), (9000, [9000]), ("9000:9002", [9000, 9001, 9002])],
)
def test_parse_ports(port: int | str | None, expected: list[int]) -> None:
    assert parse_ports(port) == expected


@pytest.mark.parametrize("bad", ["x", "9:8", "0:10", "70000", "1:70000", "a:b"])
def test_parse_ports_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_ports(bad)


def test_listen_addresses_try_each_port_of_a_range() -> None:
    assert listen_addresses("tls", "10.0.0.1", "9000:9001") == [
        "tls://10.0.0.1:9000",
        "tls://10.0.0.1:9001",
    ]
    assert listen_addresses("tcp", "::1", 5) == ["tcp://[::1]:5"]
    assert listen_addresses("tcp", "h", 1, listen_address="tcp://0.0.0.0:7") == ["tcp://0.0.0.0:7"]
    assert listen_addresses("inproc") == ["inproc://"]


def test_interface_by_name() -> None:
    assert interface_address("lo") == "127.0.0.1"
    assert listen_addresses("tcp", "ignored", 0, interface="lo") == ["tcp://127.0.0.1:0"]
    with pytest.raises(ValueError, match=r"no network interface 'nope0'.*lo"):
        interface_address("nope0")


def test_a_wildcard_gives_out_a_routable_address() -> None:
    ip = routable_ip()
    has_other = any(
        s.family.name == "AF_INET" and not ipaddress.ip_address(s.address).is_loopback
        for snics in psutil.net_if_addrs().values()
        for s in snics
    )
    assert not ipaddress.ip_address(ip).is_loopback or not has_other
    assert contact_address("tcp://0.0.0.0:8786") == f"tcp://{ip}:8786"
    assert contact_address("tls://127.0.0.1:5") == "tls://127.0.0.1:5"
    assert contact_address("inproc://1/2") == "inproc://1/2"


def test_a_worker_faces_its_scheduler() -> None:
    assert host_facing("tcp://127.0.0.1:8786") == "127.0.0.1"
    assert host_facing("tls://localhost:8786") in ("127.0.0.1", "::1")
    assert host_facing("inproc://1/2") == "127.0.0.1"


def test_servers_bound_to_a_wildcard_never_give_out_the_wildcard() -> None:
    async def main() -> None:
        async with Scheduler(host="0.0.0.0", port=0, dashboard_address=None) as scheduler:
            host = scheduler.address.split("://")[1].rpartition(":")[0]
            assert host == routable_ip()
            assert scheduler.listeners[0].address.startswith("tcp://0.0.0.0:")
            # let its periodic tasks begin: one cancelled before its first step leaves a
            # never-awaited coroutine behind (a warning, an error under pytest)
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_contact_address_port_range_and_interface_end_to_end() -> None:
    """A worker listening on a range, reached at its contact address, over TLS."""
    security = Security.temporary()

    async def main() -> None:
        async with Scheduler(
            interface="lo", port="0", security=security, dashboard_address=None
        ) as scheduler:
            assert scheduler.address.startswith("tls://127.0.0.1:")
            taken = int(scheduler.address.rpartition(":")[2])
            worker = Worker(
                scheduler.address,
                security=security,
                port=f"{taken}:{taken + 20}",  # the first port is the scheduler's: skipped
                http_port=None,
            )
            await worker.start()
            try:
                port = int(worker.address.rpartition(":")[2])
                assert taken < port <= taken + 20
                assert list(scheduler.state.workers) == [worker.address]
            finally:
                await worker.close()
            listen = f"tls://127.0.0.1:{port}"
            other = Worker(
                scheduler.address,
                security=security,
                listen_address=listen,
                contact_address=f"tls://localhost:{port}",
                http_port=None,
            )
            await other.start()
            try:
                assert other.address == f"tls://localhost:{port}"
                assert other.listeners[0].address == listen
                assert f"tls://localhost:{port}" in scheduler.state.workers
            finally:
                await other.close()

    asyncio.run(asyncio.wait_for(main(), 60))
