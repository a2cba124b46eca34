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


def test_tls_is_not_silently_ignored() -> None:
    import asyncio

    from shoal.comm import connect

    async def main() -> None:
        with pytest.raises(NotImplementedError, match="TLS"):
            await connect("tcp://127.0.0.1:1", security=Security(tls_cert="x"), role="c")

    asyncio.run(main())
