"""A per-cluster CA and one certificate per role, made in memory (``Security.temporary``).

Rules of this file:

* A certificate's role is an ``organizationalUnitName`` of its subject: ``shoal-scheduler``,
  ``shoal-worker`` or ``shoal-client`` (see ``shoal.comm.tls.ROLE_PREFIX``). Any CA can
  issue such certificates, e.g. ``openssl req -subj "/CN=node1/OU=shoal-worker"``.
* Keys are ECDSA P-256: small and fast to make. The CA key is not kept.
* Nothing here touches the disk or the network.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("scheduler", "worker", "client")
#: a CA signs certificates (and revocation lists), nothing else
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
#: a CA signs certificates (and revocation lists), nothing else
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class ClusterPems:
    """PEM texts: the CA certificate, and each role's certificate and private key."""

    ca: str
    certs: dict[str, str]
    keys: dict[str, str]


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shoal cluster")]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    ca_name: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey,
    valid: tuple[datetime.datetime, datetime.datetime],
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """One certificate for ``subject``, signed by the CA, with ``(extension, critical)``s."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca_key, hashes.SHA256())


def make_cluster_certificates(days: float = 365.0) -> ClusterPems:
    """A fresh CA and a certificate per role, valid from an hour ago for ``days``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("shoal cluster CA")
    ca_cert = _certificate(
        ca_name,
        ca_key.public_key(),
        ca_name,
        ca_key,
        valid,
        [(x509.BasicConstraints(ca=True, path_length=0), True), (_CA_KEY_USAGE, True)],
    )
    leaf_extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        ),
        (
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        ),
    ]
    certs, keys = {}, {}
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(f"shoal {role}", f"shoal-{role}")
        cert = _certificate(subject, key.public_key(), ca_name, ca_key, valid, leaf_extensions)
        certs[role] = cert.public_bytes(serialization.Encoding.PEM).decode()
        keys[role] = _pem_key(key)
    return ClusterPems(ca_cert.public_bytes(serialization.Encoding.PEM).decode(), certs, keys)
