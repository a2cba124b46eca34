"""Who may read the HTTP services: holders of the cluster token.

Rules of this file:

* ``/health`` is open and says nothing but ``ok``. Every other path needs the token, unless
  the cluster runs without authentication (``token=None``).
* Four ways to show the token: an ``Authorization: Bearer <token>`` header (scrapers,
  scripts); a session cookie; a login link ``...?token=<token>`` that sets the cookie
  and redirects to the same address without the token (browsers), like a notebook
  server; or the form of the 401 page, which POSTs the token and is answered the same.
* The cookie holds an HMAC of the token, never the token; its name carries the port,
  because browsers share cookies between ports of one host.
* Every comparison is constant-time. The token never appears in a response or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

#: paths anyone may read
PUBLIC_PATHS = frozenset({"/health"})

_UNAUTHORIZED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shoal: token needed</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>This shoal cluster needs its token</h1>
<p>Open the login link printed when the scheduler started
(<code>http://host:port/status?token=...</code>), or send the header
<code>Authorization: Bearer &lt;token&gt;</code>, or paste the token here
(<code>shoal scheduler</code> keeps it in <code>~/.config/shoal/token</code>):</p>
<form method="post" id="token-form">
<input type="password" name="token" id="token" autocomplete="off" size="50"
 placeholder="cluster token" required>
<button type="submit">Log in</button>
</form>
</body></html>
"""


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"shoal-dashboard-session", hashlib.sha256).hexdigest()


def cookie_name(port: int) -> str:
    return f"shoal-session-{port}"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_middleware(token: str | None, port: Callable[[], int]) -> Middleware:
    """An aiohttp middleware that answers 401 to requests without ``token``.

    ``port()`` is the port the service listens on (known once bound): it names the cookie.
    """
    session = session_value(token) if token is not None else ""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or request.path in PUBLIC_PATHS:
            return await handler(request)
        bearer = _bearer(request)
        if bearer is not None and _same(bearer, token):
            return await handler(request)
        name = cookie_name(port())
        cookie = request.cookies.get(name)
        if cookie is not None and _same(cookie, session):
            return await handler(request)
        given = request.query.get("token")
        if given is None and request.method == "POST":  # the form of the 401 page
            form = await request.post()
            field = form.get("token")
            given = field.strip() if isinstance(field, str) else None
        if given is not None and _same(given, token):
            return _login(request, name, session)
        return web.Response(
            status=401,
            text=_UNAUTHORIZED_PAGE,
            content_type="text/html",
            headers={"WWW-Authenticate": 'Bearer realm="shoal"'},
        )

    return check_token


def _login(request: web.Request, name: str, session: str) -> web.StreamResponse:
    """Set the session cookie and send the browser to the address without the token."""
    query = {k: v for k, v in request.query.items() if k != "token"}
    location = request.rel_url.with_query(query)
    response = web.Response(status=303, headers={"Location": str(location)})
    response.set_cookie(name, session, httponly=True, samesite="Strict", path="/")
    return response


__all__ = ["PUBLIC_PATHS", "cookie_name", "session_value", "token_middleware"]
