"""The ``tls://`` transport: the TCP transport inside asyncio's TLS, with mutual certificates.

Rules of this file:

* Both ends present a certificate signed by the cluster's CA (``CERT_REQUIRED`` both ways),
  TLS 1.2 at least. Hostnames are checked only with ``Security.tls_check_hostname``: the CA
  is per cluster and peers are dialled by IP address.
* A peer whose TLS handshake fails never reaches the shoal handshake: asyncio drops it
  before ``connection_made``, so nothing it sent is read by us at all.
* A certificate's role is a subject ``organizationalUnitName`` ``shoal-<role>``. The
  handshake refuses a peer that claims a role its certificate does not allow
  (``security.check_peer_role``); a certificate with no ``shoal-`` unit allows every role (as in
  dask, where certificates carry no role).
* PEM texts (``Security.temporary``) are written to a private temporary folder only for
  the moment ``load_cert_chain`` reads them (the ssl module loads chains from files only).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import tempfile

from shoal.comm.accept import Acceptor
from shoal.comm.addressing import parse_host_port
from shoal.comm.security import Security
from shoal.comm.tcp import TCPComm, TCPListener
from shoal.errors import CommBrokenError


def _is_pem(text: str) -> bool:
    return "-----BEGIN" in text


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    if not _is_pem(cert) and (key is None or not _is_pem(key)):
        ctx.load_cert_chain(cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="shoal-tls-") as folder:  # mode 0700

        def materialize(text: str, name: str) -> str:
            if not _is_pem(text):
                return text
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return path

        ctx.load_cert_chain(materialize(cert, "cert.pem"), key and materialize(key, "key.pem"))


def _describe(value: str) -> str:
    return "the PEM text given" if _is_pem(value) else repr(value)


@functools.lru_cache(maxsize=64)
def ssl_context(security: Security, role: str, server_side: bool) -> ssl.SSLContext:
    """The TLS context of a process of handshake ``role`` (cached: contexts are reusable)."""
    purpose = ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = security.tls_check_hostname and not server_side
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca = security.tls_ca_file
    if not ca:
        raise ValueError("TLS needs tls_ca_file: the CA that signed the cluster's certificates")
    try:
        if _is_pem(ca):
            ctx.load_verify_locations(cadata=ca)
        else:
            ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS CA from {_describe(ca)}: {exc}") from None
    cert, key = security.cert_and_key(role)
    if cert:
        try:
            _load_chain(ctx, cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the TLS certificate of the {role} from {_describe(cert)}: {exc}"
            ) from None
    elif server_side:
        raise ValueError(f"a tls:// {role} needs a certificate: give tls_cert and tls_key")
    return ctx


@functools.lru_cache(maxsize=16)
def http_ssl_context(security: Security, role: str) -> ssl.SSLContext | None:
    """HTTPS for the dashboard and /metrics of a TLS cluster (None without TLS): the role's
    certificate, no client certificate asked for (browsers have none; the token guards
    the pages)."""
    if not security.uses_tls:
        return None
    cert, key = security.cert_and_key(role)
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        _load_chain(ctx, cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot load the TLS certificate of the {role} from {_describe(cert)}: {exc}"
        ) from None
    return ctx


async def tls_listen(loc: str, acceptor: Acceptor) -> TCPListener:
    """Listen for TLS on ``host:port``; only peers with a certificate of our CA get in."""
    host, port = parse_host_port(loc, default_port=0)
    ctx = ssl_context(acceptor.security, acceptor.role, server_side=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: TCPComm(acceptor.accept, scheme="tls"),
        host or None,
        port,
        ssl=ctx,
        ssl_handshake_timeout=acceptor.config.handshake_timeout,
    )
    return TCPListener(server, acceptor, scheme="tls")


async def tls_connect(loc: str, security: Security, role: str) -> TCPComm:
    """Open a TLS connection to ``host:port`` (TLS done, shoal handshake not yet)."""
    host, port = parse_host_port(loc)
    ctx = ssl_context(security, role, server_side=False)
    loop = asyncio.get_running_loop()
    try:
        _, comm = await loop.create_connection(
            lambda: TCPComm(scheme="tls"), host, port, ssl=ctx, server_hostname=host
        )
    except OSError as exc:  # ssl.SSLError included: a certificate the peer or we refused
        raise CommBrokenError(f"cannot connect to tls://{loc}: {exc}") from exc
    return comm
