"""Addresses: ``scheme://location`` strings and their parts.

Rules of this file:

* A bare ``host:port`` means ``tcp://host:port``.
* IPv6 hosts are written in brackets (``tcp://[::1]:8786``) and returned without them.
* Parsing only: nothing here resolves names or opens sockets.
"""

from __future__ import annotations

DEFAULT_SCHEME = "tcp"


def parse_address(addr: str) -> tuple[str, str]:
    """``"tcp://h:p"`` -> ``("tcp", "h:p")``; a bare ``"h:p"`` is tcp."""
    if not isinstance(addr, str):
        raise TypeError(f"an address is a string, not {type(addr).__name__}: {addr!r}")
    scheme, sep, loc = addr.rpartition("://")
    if not sep:
        return DEFAULT_SCHEME, addr
    if not scheme:
        raise ValueError(f"address {addr!r} has an empty scheme")
    return scheme, loc


def unparse_address(scheme: str, loc: str) -> str:
    """``("tcp", "h:p")`` -> ``"tcp://h:p"``."""
    return f"{scheme}://{loc}"


def parse_host_port(hostport: str, default_port: int | None = None) -> tuple[str, int]:
    """``"h:p"`` -> ``("h", p)``; ``"[::1]:p"`` -> ``("::1", p)``; no port: the default."""
    host, port_text = _split_host_port(hostport)
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{hostport!r} has no port and there is no default")
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{hostport!r} has an invalid port {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{hostport!r} has a port out of range")
    return host, port


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed IPv6 address {hostport!r}")
        return host, rest[1:] if rest else None
    if hostport.count(":") > 1:
        # an IPv6 literal without brackets cannot carry a port
        return hostport, None
    host, sep, port = hostport.partition(":")
    return host, port if sep else None


def unparse_host_port(host: str, port: int | None = None) -> str:
    """``("::1", 80)`` -> ``"[::1]:80"``; ``("h", None)`` -> ``"h"``."""
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def get_address_host(addr: str) -> str:
    """The host of an address: ``"tcp://10.0.0.1:8786"`` -> ``"10.0.0.1"``.

    For ``inproc://PID/N`` it is the process id: the "machine" an in-process peer lives on.
    """
    scheme, loc = parse_address(addr)
    if scheme == "inproc":
        return loc.partition("/")[0]
    return _split_host_port(loc)[0]
