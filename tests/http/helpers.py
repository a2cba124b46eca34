"""Plain HTTP requests for the tests (no redirects followed, no errors raised on 4xx)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.status == 200, (self.status, self.body[:200])
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def get(base: str, path: str, token: str | None = None, cookie: str | None = None) -> Reply:
    """GET ``base + path`` with a bearer token and/or a cookie header."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = cookie
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def first_event(base: str, path: str, token: str) -> Any:
    """The JSON of the first server-sent event from ``path``."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        line = response.readline()
        assert line.startswith(b"data: "), line[:100]
        return json.loads(line[len(b"data: ") :])
    finally:
        conn.close()


def base_of(link: str) -> str:
    """``http://host:port`` of a dashboard link."""
    where = urlsplit(link)
    return f"{where.scheme}://{where.netloc}"


def post_form(base: str, path: str, fields: dict[str, str]) -> Reply:
    """POST an HTML form (``application/x-www-form-urlencoded``) to ``base + path``."""
    from urllib.parse import urlencode

    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        conn.request("POST", path, body=urlencode(fields), headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()
