"""The app's own ASGI middlewares: the body-size limit (413 before anything parses a body) and
the request metrics (count, status and latency by endpoint)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .errors import ApiError
from .metrics import Metrics


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes, before anything parses it: the declared
    Content-Length is checked first, a chunked body is counted as it arrives. The body is then
    replayed to the app, and later `receive` calls (disconnect detection) reach the client."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(send)
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(send)
                return
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        error = ApiError(413, f"The request body is larger than the server's limit of {self.limit} bytes.", code="body_too_large")
        payload = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class MetricsMiddleware:
    """Requests by endpoint (the route's path, or "other": a client cannot make up labels) and
    status, and their latency to the end of the response (a stream's last byte)."""

    def __init__(self, app: Any, *, metrics: Metrics, endpoints: Callable[[], set[str]]) -> None:
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints() else "other"
        start, status = time.perf_counter(), 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
