"""Who may connect: the cluster token, and TLS material for ``tls://``.

Rules of this file:

* A ``Security`` with a token is the default everywhere; ``token=None`` turns
  authentication off, and whoever uses it logs a loud warning (see ``warn_no_auth``).
* The token and private keys never appear in a repr, a log line or an error message.
* Every ``tls_*`` field holds a file path or the PEM text itself (``Security.temporary()``
  keeps its certificates in memory). A process picks the certificate of its role
  (``tls_scheduler_cert``, ``tls_worker_cert``, ``tls_client_cert``) and falls back to the
  generic ``tls_cert``/``tls_key``.
* ``require_encryption`` refuses every plain ``tcp://`` address (``inproc://`` never leaves
  the process, so it stays allowed); it needs TLS material.
* A TLS certificate's role is a subject ``organizationalUnitName`` ``shoal-<role>``
  (``shoal-scheduler``, ``shoal-worker``, ``shoal-client``); the handshake refuses a peer
  that claims a role its certificate does not allow (``check_peer_role``). A certificate
  with no ``shoal-`` unit allows every role, as in dask, where certificates carry none.
* The token handshake runs inside TLS as well: TLS says "this peer holds a certificate of
  our CA", the token says "this peer belongs to this cluster".
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from shoal.errors import HandshakeError

logger = logging.getLogger("shoal.comm")

#: which certificate a process of each handshake role presents
_CERT_ROLE = {"scheduler": "scheduler", "worker": "worker", "nanny": "worker", "client": "client"}


@dataclass(frozen=True)
class Security:
    """Connection security settings shared by every party of one cluster."""

    #: the shared cluster token; None means NO authentication
    token: str | None = field(default=None, repr=False)
    #: the CA that signed every certificate of the cluster (path or PEM)
    tls_ca_file: str | None = None
    #: the certificate (and its key) of any role without a certificate of its own
    tls_cert: str | None = None
    tls_key: str | None = field(default=None, repr=False)
    tls_scheduler_cert: str | None = None
    tls_scheduler_key: str | None = field(default=None, repr=False)
    tls_worker_cert: str | None = None
    tls_worker_key: str | None = field(default=None, repr=False)
    tls_client_cert: str | None = None
    tls_client_key: str | None = field(default=None, repr=False)
    #: refuse plain ``tcp://`` connections and listeners
    require_encryption: bool = False
    #: check that the server's certificate names the host we dialled (off: the CA is
    #: per cluster, and workers are reached by IP address)
    tls_check_hostname: bool = False

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("an empty cluster token is no token; use token=None to disable auth")
        if self.uses_tls and not self.tls_ca_file:
            raise ValueError("TLS needs tls_ca_file: the CA that signed the cluster's certificates")
        if self.require_encryption and not self.uses_tls:
            raise ValueError(
                "require_encryption needs TLS material: give tls_ca_file, tls_cert and tls_key"
            )

    @classmethod
    def local(cls) -> Security:
        """A fresh random token: what a LocalCluster uses."""
        return cls(token=secrets.token_hex(32))

    @classmethod
    def temporary(cls, *, days: float = 365.0) -> Security:
        """A fresh token, a fresh CA and a certificate per role, all in memory.

        Only the processes given this ``Security`` (or its PEM texts) can join: the CA's
        private key is thrown away once the certificates are signed.
        """
        from shoal.comm.certificates import make_cluster_certificates

        pems = make_cluster_certificates(days=days)
        return cls(
            token=secrets.token_hex(32),
            tls_ca_file=pems.ca,
            tls_scheduler_cert=pems.certs["scheduler"],
            tls_scheduler_key=pems.keys["scheduler"],
            tls_worker_cert=pems.certs["worker"],
            tls_worker_key=pems.keys["worker"],
            tls_client_cert=pems.certs["client"],
            tls_client_key=pems.keys["client"],
            require_encryption=True,
        )

    @property
    def require_auth(self) -> bool:
        """Whether peers must prove they hold the token."""
        return self.token is not None

    @property
    def uses_tls(self) -> bool:
        return any(
            (
                self.tls_ca_file,
                self.tls_cert,
                self.tls_scheduler_cert,
                self.tls_worker_cert,
                self.tls_client_cert,
            )
        )

    def cert_and_key(self, role: str) -> tuple[str | None, str | None]:
        """The certificate and key a process of handshake ``role`` presents."""
        kind = _CERT_ROLE.get(role, "")
        cert = getattr(self, f"tls_{kind}_cert", None) if kind else None
        if cert:
            return cert, getattr(self, f"tls_{kind}_key", None)
        return self.tls_cert, self.tls_key

    def for_role(self, role: str) -> Security:
        """Just what a process of ``role`` needs (e.g. to pass to a child): its own
        certificate as the generic one, no other role's key."""
        cert, key = self.cert_and_key(role)
        return Security(
            token=self.token,
            tls_ca_file=self.tls_ca_file,
            tls_cert=cert,
            tls_key=key,
            require_encryption=self.require_encryption,
            tls_check_hostname=self.tls_check_hostname,
        )

    def __repr__(self) -> str:
        auth = "token" if self.require_auth else "NO AUTH"
        tls = ", tls" if self.uses_tls else ""
        required = ", encryption required" if self.require_encryption else ""
        return f"Security({auth}{tls}{required})"


ROLE_PREFIX = "shoal-"
#: the handshake roles a certificate of each role may claim (a worker runs its nanny and
#: may be a client of its own cluster: ``worker_client``)
ALLOWED_CLAIMS = {
    "scheduler": frozenset({"scheduler"}),
    "worker": frozenset({"worker", "nanny", "client"}),
    "client": frozenset({"client"}),
}


def cert_roles(peercert: Any) -> frozenset[str]:
    """The ``shoal-<role>`` units of a certificate's subject (``SSLSocket.getpeercert()``)."""
    roles: set[str] = set()
    if not isinstance(peercert, dict):
        return frozenset()
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "organizationalUnitName" and str(value).startswith(ROLE_PREFIX):
                roles.add(str(value)[len(ROLE_PREFIX) :])
    return frozenset(roles)


def check_peer_role(peercert: Any, claimed: str, who: str) -> frozenset[str] | None:
    """Refuse a TLS peer claiming a role its certificate does not allow; return the
    certificate's roles (None without TLS or without roles in the certificate)."""
    if peercert is None:
        return None
    roles = cert_roles(peercert)
    if not roles:
        return None
    allowed = frozenset().union(*(ALLOWED_CLAIMS.get(role, ()) for role in roles))
    if claimed not in allowed:
        raise HandshakeError(
            f"{who} claims the role {claimed!r}, but its certificate is for "
            f"{', '.join(sorted(roles))}"
        )
    return roles


def role_refusal(peer_info: dict[str, Any], role: str) -> str | None:
    """Why a peer may not act as ``role`` (e.g. register as a worker), or None if it may.

    Only a TLS certificate with roles restricts this; the token alone allows every role.
    """
    cert_roles = peer_info.get("cert_roles")
    if cert_roles is None:
        return None
    allowed = frozenset().union(*(ALLOWED_CLAIMS.get(r, ()) for r in cert_roles))
    if role in allowed and peer_info.get("role") == role:
        return None
    return (
        f"{peer_info.get('role', '?')} {peer_info.get('name', '')!r} may not act as a {role}: "
        f"its certificate is for {', '.join(cert_roles) or 'no role'}"
    )


#: environment variables that carry a ``Security`` to a child process (``shoal worker``
#: reads them; PEM texts travel as they are, like the token)
TLS_ENVIRON = {
    "tls_ca_file": "SHOAL_TLS_CA_FILE",
    "tls_cert": "SHOAL_TLS_CERT",
    "tls_key": "SHOAL_TLS_KEY",
}


def child_environ(security: Security, role: str) -> dict[str, str]:
    """The variables that give a child process of ``role`` this security (token, its own
    certificate, ``require_encryption``)."""
    mine = security.for_role(role)
    env = {"SHOAL_TOKEN": mine.token} if mine.token is not None else {}
    for field_name, var in TLS_ENVIRON.items():
        value = getattr(mine, field_name)
        if value:
            env[var] = value
    if mine.require_encryption:
        env["SHOAL_REQUIRE_ENCRYPTION"] = "1"
    return env


def warn_no_auth(what: str) -> None:
    """The loud warning for running without authentication."""
    logger.warning(
        "SECURITY: %s runs WITHOUT AUTHENTICATION: anyone who can reach it can run code "
        "in this cluster. Use a cluster token unless this network is fully trusted.",
        what,
    )
