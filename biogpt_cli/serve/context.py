"""What every endpoint shares: the served models and limits, a call alone with a model
(`run_model`), and the request's time limit (`time_limit`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import FastAPI

from .errors import ApiError, engine_error, timed_out
from .metrics import Metrics
from .models import ServedModel

T = TypeVar("T")


@dataclass
class Context:
    """What the routes share. `app` is read for `app.state.draining` (set by the server on SIGTERM)."""

    models: dict[str, ServedModel]
    default: str
    metrics: Metrics
    max_tokens_cap: int
    request_timeout: float
    app: FastAPI
    paths: set[str] = field(default_factory=set)
    head_locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # one call at a time per head model

    def pick(self, name: str | None) -> ServedModel:
        served = self.models.get(name or self.default)
        if served is None:
            raise ApiError(404, f"The model {name!r} does not exist; this server serves {', '.join(self.models)}.",
                           param="model", code="model_not_found")
        return served

    def accepting(self) -> None:
        if self.app.state.draining:
            raise ApiError(503, "The server is draining and accepts no new requests.", code="server_draining")

    def deadline(self) -> float:
        """When a request that starts now must be done (the event loop's clock)."""
        return asyncio.get_running_loop().time() + self.request_timeout

    @contextlib.asynccontextmanager
    async def time_limit(self, deadline: float | None = None) -> AsyncIterator[None]:
        """The request's whole time, however many model calls it makes: past `deadline` (default:
        `request_timeout` from now) what runs is cancelled (a call still queued on the engine is
        dropped unrun) and the request answers 408."""
        try:
            async with asyncio.timeout_at(self.deadline() if deadline is None else deadline):
                yield
        except TimeoutError:
            raise timed_out(self.request_timeout) from None

    async def run_model(self, served: ServedModel, fn: Callable[[], T]) -> T:
        """`fn` alone with the model: on the engine's thread between decode steps, or (a head
        model, no engine) in a worker thread, one call at a time. Errors become ApiErrors; the
        caller bounds the time (`time_limit`)."""
        try:
            if served.engine is not None:
                return await served.engine.run_exclusive(fn)
            return await self._run_head(served.name, fn)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - the request fails alone, in OpenAI's shape
            raise engine_error(exc) from None

    async def _run_head(self, name: str, fn: Callable[[], T]) -> T:
        # a worker thread cannot be stopped: a request that times out answers at once, but the
        # lock is held until its thread returns, so that two calls never share the model
        lock = self.head_locks.setdefault(name, asyncio.Lock())
        await lock.acquire()
        call = asyncio.ensure_future(asyncio.to_thread(fn))

        def release(done: asyncio.Future) -> None:
            lock.release()
            if not done.cancelled():
                done.exception()  # retrieved: a timed-out call's error is no one's to log

        call.add_done_callback(release)
        return await asyncio.shield(call)
