"""Security: the token default, and that it never shows."""

from __future__ import annotations

import pytest

from shoal.comm import Security


def test_local_makes_a_fresh_random_token() -> None:
    a, b = Security.local(), Security.local()
    assert a.require_auth and b.require_auth
    assert a.token and b.token and a.token != b.token
    assert len(a.token) == 64


def test_no_token_means_no_auth() -> None:
    assert not Security().require_auth
    assert not Security(token=None).require_auth


def test_the_token_never_appears_in_repr() -> None:
    security = Security.local()
    assert security.token is not None
    assert security.token not in repr(security)
    assert security.token not in str(security)
    assert "NO AUTH" in repr(Security())


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Security(token="")


def test_tls_material_without_a_ca_is_refused() -> None:
    with pytest.raises(ValueError, match="tls_ca_file"):
        Security(tls_cert="cert.pem", tls_key="key.pem")


def test_require_encryption_needs_tls_material() -> None:
    with pytest.raises(ValueError, match="require_encryption needs TLS"):
        Security(token="t", require_encryption=True)


def test_each_role_picks_its_certificate_and_falls_back_to_the_generic_one() -> None:
    security = Security(
        tls_ca_file="ca.pem",
        tls_cert="any.pem",
        tls_key="any.key",
        tls_worker_cert="worker.pem",
        tls_worker_key="worker.key",
    )
    assert security.cert_and_key("worker") == ("worker.pem", "worker.key")
    assert security.cert_and_key("nanny") == ("worker.pem", "worker.key")
    assert security.cert_and_key("scheduler") == ("any.pem", "any.key")
    assert security.cert_and_key("client") == ("any.pem", "any.key")
    child = security.for_role("worker")
    assert (child.tls_cert, child.tls_key, child.tls_ca_file) == (
        "worker.pem",
        "worker.key",
        "ca.pem",
    )
    assert child.tls_worker_cert is None


def test_temporary_makes_a_token_and_a_certificate_per_role_in_memory() -> None:
    security = Security.temporary()
    assert security.require_auth and security.require_encryption and security.uses_tls
    assert security.tls_ca_file is not None and "BEGIN CERTIFICATE" in security.tls_ca_file
    for role in ("scheduler", "worker", "client"):
        cert, key = security.cert_and_key(role)
        assert cert is not None and "BEGIN CERTIFICATE" in cert
        assert key is not None and "PRIVATE KEY" in key
        assert key not in repr(security)
    assert Security.temporary().tls_ca_file != security.tls_ca_file


def test_plain_tcp_is_refused_when_encryption_is_required() -> None:
    import asyncio

    from shoal.comm import connect, listen

    security = Security.temporary()

    async def handler(comm: object) -> None:
        pass

    async def main() -> None:
        with pytest.raises(ValueError, match=r"requires encryption: use tls://127.0.0.1:1"):
            await connect("tcp://127.0.0.1:1", security=security, role="client")
        with pytest.raises(ValueError, match="requires encryption"):
            await listen("tcp://127.0.0.1:0", handler, security=security, role="scheduler")

    asyncio.run(main())
