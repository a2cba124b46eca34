"""Where a server listens and the address it gives out: ports, ranges, NICs, wildcards.

Rules of this file:

* A port is an int, a string of one, or an inclusive range ``"9000:9010"``; a server tries
  each port of a range in turn (``listen_addresses``) and takes the first free one.
* ``--interface NAME`` binds to that NIC's first IPv4 address (else its first IPv6 one),
  read with ``psutil.net_if_addrs``; an unknown name lists the ones that exist.
* A server bound to a wildcard (``0.0.0.0``, ``::``, empty) gives out a routable address of
  this host, never a loopback one (``contact_address``). The routable IP is found the way
  dask does: a UDP socket "connected" to a non-loopback address tells which local address
  the routing table picks. Connecting a UDP socket sends nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import psutil

from shoal.comm.addressing import parse_address, parse_host_port, unparse_host_port

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
#: where the routing-table probe "connects" (no packet is ever sent to it)
_PROBE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}  # documentation nets


def parse_ports(port: int | str | None) -> list[int]:
    """``8786`` -> ``[8786]``; ``"9000:9002"`` -> ``[9000, 9001, 9002]``; None -> ``[0]``."""
    if port is None or port == "":
        return [0]
    text = str(port).strip()
    low_text, sep, high_text = text.partition(":")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise ValueError(f"port {text!r} is not a number or a range like 9000:9010") from None
    if not (0 <= low <= high <= 65535):
        raise ValueError(f"port range {text!r} is empty or out of 0..65535")
    if low == 0 and high != 0:
        raise ValueError(f"port range {text!r} includes 0 (any port); give a real range")
    return list(range(low, high + 1))


def interface_address(name: str) -> str:
    """The IP address of the network interface ``name`` (IPv4 preferred)."""
    interfaces = psutil.net_if_addrs()
    if name not in interfaces:
        known = ", ".join(sorted(interfaces))
        raise ValueError(f"no network interface {name!r} on this host (there are: {known})")
    by_family: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for snic in interfaces[name]:
        if snic.family in by_family:
            by_family[snic.family].append(snic.address.split("%")[0])
    for family in (socket.AF_INET, socket.AF_INET6):
        if by_family[family]:
            return by_family[family][0]
    raise ValueError(f"network interface {name!r} has no IP address")


def routable_ip(ipv6: bool = False) -> str:
    """An address of this host that other hosts can reach (loopback only if nothing else)."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((_PROBE[family], 9))  # UDP: sets the route, sends nothing
            ip = str(sock.getsockname()[0])
        except OSError:
            ip = ""
    if ip and not ipaddress.ip_address(ip).is_loopback:
        return ip
    return _first_non_loopback(family) or ("::1" if ipv6 else "127.0.0.1")


def _first_non_loopback(family: int) -> str | None:
    for snics in psutil.net_if_addrs().values():
        for snic in snics:
            if snic.family != family:
                continue
            ip = ipaddress.ip_address(snic.address.split("%")[0])
            if not (ip.is_loopback or (ip.is_link_local and family == socket.AF_INET6)):
                return str(ip)
    return None


def contact_address(listener_address: str) -> str:
    """The address to give out for a listener: a wildcard host becomes a routable IP."""
    scheme, loc = parse_address(listener_address)
    if scheme == "inproc":
        return listener_address
    host, port = parse_host_port(loc)
    if host not in _WILDCARDS:
        return listener_address
    return f"{scheme}://{unparse_host_port(routable_ip(ipv6=host == '::'), port)}"


def listen_addresses(
    protocol: str,
    host: str = "127.0.0.1",
    port: int | str | None = 0,
    interface: str | None = None,
    listen_address: str | None = None,
) -> list[str]:
    """The addresses to try, in order, for a server (``listen_address`` wins over the rest)."""
    if listen_address:
        return [listen_address]
    if protocol == "inproc":
        return ["inproc://"]
    if interface:
        host = interface_address(interface)
    return [f"{protocol}://{unparse_host_port(host, p)}" for p in parse_ports(port)]


def default_protocol(uses_tls: bool) -> str:
    """``tls`` when TLS material is configured, else ``tcp``."""
    return "tls" if uses_tls else "tcp"


@dataclass(frozen=True)
class Bind:
    """Where a server listens, and what it gives out as its address (the CLI's --host,
    --port/--worker-port, --interface, --listen-address, --contact-address)."""

    #: tcp, tls or inproc; None: tls when the Security has TLS material, else tcp
    protocol: str | None = None
    host: str = "127.0.0.1"
    port: int | str | None = 0
    interface: str | None = None
    listen_address: str | None = None
    contact_address: str | None = None

    def addresses(self, uses_tls: bool) -> list[str]:
        """The addresses to try in order (each port of a range)."""
        protocol = self.protocol or default_protocol(uses_tls)
        return listen_addresses(protocol, self.host, self.port, self.interface, self.listen_address)


def host_facing(address: str) -> str:
    """The local IP that routes to ``address``'s host (a loopback host: ``127.0.0.1``).

    What a worker listens on by default: the interface facing its scheduler. Found with a
    UDP socket "connected" to the scheduler, which sends nothing.
    """
    scheme, loc = parse_address(address)
    if scheme == "inproc":
        return "127.0.0.1"
    host, port = parse_host_port(loc, default_port=9)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return "127.0.0.1"
    for family, kind, proto, _, sockaddr in infos:
        if ipaddress.ip_address(str(sockaddr[0]).split("%")[0]).is_loopback:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"
        with socket.socket(family, kind, proto) as sock:
            try:
                sock.connect(sockaddr)  # UDP: picks the route, sends nothing
            except OSError:
                continue
            return str(sock.getsockname()[0])
    return "127.0.0.1"
