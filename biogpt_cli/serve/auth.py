"""`--api-key`: a Bearer token checked on every endpoint but /health.

A pure ASGI middleware, so that it runs before routing and body parsing: an unauthenticated
client learns nothing (not even whether a path exists, or whether its body is valid). The
comparison is `hmac.compare_digest` on bytes, in constant time for a given key length.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable

from .schemas import error_body

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


def key_matches(given: bytes | None, expected: bytes) -> bool:
    # compared even when missing, so a missing and a wrong key take the same path
    return hmac.compare_digest(given if given is not None else b"", expected) and given is not None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        if not api_key:
            raise ValueError("an empty API key would accept every request")
        self.app = app
        self.expected = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or key_matches(bearer_token(scope["headers"]), self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            error_body("Missing or incorrect API key: send `Authorization: Bearer KEY` with the server's --api-key.",
                       type="invalid_request_error", code="invalid_api_key")
        ).encode("utf-8")
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="biogpt"')]})
        await send({"type": "http.response.body", "body": body})
