"""Who may connect: the cluster token (and, later, TLS material).

Rules of this file:

* A ``Security`` with a token is the default everywhere; ``token=None`` turns
  authentication off, and whoever uses it logs a loud warning (see ``warn_no_auth``).
* The token never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

logger = logging.getLogger("shoal.comm")


@dataclass(frozen=True)
class Security:
    """Connection security settings shared by every party of one cluster."""

    #: the shared cluster token; None means NO authentication
    token: str | None = field(default=None, repr=False)
    #: reserved for TLS (``tls://``); not supported yet
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("an empty cluster token is no token; use token=None to disable auth")

    @classmethod
    def local(cls) -> Security:
        """A fresh random token: what a LocalCluster uses."""
        return cls(token=secrets.token_hex(32))

    @property
    def require_auth(self) -> bool:
        """Whether peers must prove they hold the token."""
        return self.token is not None

    @property
    def uses_tls(self) -> bool:
        return any((self.tls_ca_file, self.tls_cert, self.tls_key))

    def __repr__(self) -> str:
        auth = "token" if self.require_auth else "NO AUTH"
        return f"Security({auth}{', tls' if self.uses_tls else ''})"


def warn_no_auth(what: str) -> None:
    """The loud warning for running without authentication."""
    logger.warning(
        "SECURITY: %s runs WITHOUT AUTHENTICATION: anyone who can reach it can run code "
        "in this cluster. Use a cluster token unless this network is fully trusted.",
        what,
    )
