"""Certificate files for CLI tests, made with trustme: one CA, one certificate per role
(the role is the subject's OU, ``shoal-<role>``), written as a user would keep them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

ROLES = ("scheduler", "worker", "client")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certs: dict[str, Path]
    keys: dict[str, Path]

    def cli(self, role: str) -> list[str]:
        """The command-line options a process of ``role`` is started with."""
        return [
            "--tls-ca-file", str(self.ca),
            "--tls-cert", str(self.certs[role]),
            "--tls-key", str(self.keys[role]),
        ]  # fmt: skip


def write_tls_files(folder: Path, *hosts: str) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    certs, keys = {}, {}
    for role in ROLES:
        leaf = ca.issue_cert(*(hosts or ("127.0.0.1",)), organization_unit_name=f"shoal-{role}")
        certs[role], keys[role] = folder / f"{role}.pem", folder / f"{role}.key"
        leaf.cert_chain_pems[0].write_to_path(str(certs[role]))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(certs[role]), append=True)
        leaf.private_key_pem.write_to_path(str(keys[role]))
        os.chmod(keys[role], 0o600)
    return TlsFiles(ca_path, certs, keys)
