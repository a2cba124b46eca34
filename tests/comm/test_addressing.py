"""Addresses: parsing and building, IPv6 included."""

from __future__ import annotations

import pytest

from shoal.comm import get_address_host, parse_address, parse_host_port, unparse_address
from shoal.comm.addressing import unparse_host_port


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("tcp://127.0.0.1:8686", ("tcp", "127.0.0.1:8686")),
        ("127.0.0.1:8686", ("tcp", "127.0.0.1:8686")),
        ("inproc://123/4", ("inproc", "123/4")),
        ("tcp://[::1]:80", ("tcp", "[::1]:80")),
    ],
)
def test_parse_address(addr: str, expected: tuple[str, str]) -> None:
    assert parse_address(addr) == expected
    assert unparse_address(*expected) == (addr if "://" in addr else "tcp://" + addr)


def test_parse_address_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="empty scheme"):
        parse_address("://x:1")
    with pytest.raises(TypeError):
        parse_address(8686)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hostport", "default", "expected"),
    [
        ("example.org:8686", None, ("example.org", 8686)),
        ("example.org", 8686, ("example.org", 8686)),
        ("[::1]:80", None, ("::1", 80)),
        ("[::1]", 80, ("::1", 80)),
        ("::1", 80, ("::1", 80)),
        (":0", None, ("", 0)),
    ],
)
def test_parse_host_port(hostport: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_host_port(hostport, default) == expected


@pytest.mark.parametrize("bad", ["host", "host:port", "host:70000", "[::1", "[::1]x"])
def test_parse_host_port_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(bad)


def test_unparse_host_port_brackets_ipv6() -> None:
    assert unparse_host_port("::1", 80) == "[::1]:80"
    assert unparse_host_port("h", 1) == "h:1"
    assert unparse_host_port("h") == "h"


@pytest.mark.parametrize(
    ("addr", "host"),
    [
        ("tcp://10.0.0.1:8686", "10.0.0.1"),
        ("10.0.0.1:8686", "10.0.0.1"),
        ("tcp://[::1]:8686", "::1"),
        ("inproc://4242/7", "4242"),
    ],
)
def test_get_address_host(addr: str, host: str) -> None:
    assert get_address_host(addr) == host
