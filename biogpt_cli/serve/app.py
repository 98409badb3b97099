"""The HTTP layer of `biogpt serve`: an OpenAI-compatible FastAPI app over the engines.

Why a thin layer: the engine (engine.py) owns the model and knows no HTTP; the task endpoints
call the same library functions as the CLI commands (so a record is the CLI's record); the
HTTP layer only validates (schemas.py), tokenizes, detokenizes as tokens arrive (text.py),
streams server-sent events (streaming.py), and turns every failure into OpenAI's error object
(errors.py). Nothing in it reads or writes a file named by a request; models are fixed when the
app is built.

This module builds the app: its lifespan, middlewares and route table. Each route delegates to
its endpoint: completions.py, embedding_endpoint.py, task_endpoints.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from . import task_endpoints
from .auth import ApiKeyMiddleware
from .completions import complete
from .context import Context
from .embedding_endpoint import embed
from .errors import ApiError, install_error_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware
from .models import ServedModel
from .schemas import ClassifyRequest, CompletionRequest, EmbeddingRequest, QaRequest, RelationsRequest, TagRequest

logger = logging.getLogger(__name__)


def create_app(
    models: dict[str, ServedModel],
    *,
    default: str,
    api_key: str | None,
    allowed_origins: list[str],
    max_body_bytes: int,
    max_tokens_cap: int,
    request_timeout: float,
) -> FastAPI:
    """The app over already-loaded `models` (`default` answers a request without `model`).
    `request_timeout` bounds each request as a whole (see Context.time_limit).
    `app.state.draining = True` (set by the server on SIGTERM) makes /health answer 503 and
    new work 503; the lifespan starts the engines (a no-op when the server did) and on shutdown
    drains them: every request in flight finishes."""
    if default not in models:
        raise ValueError(f"default model {default!r} is not among the served models ({', '.join(models)})")
    if max_body_bytes < 1 or max_tokens_cap < 1 or not request_timeout > 0:
        raise ValueError("max_body_bytes, max_tokens_cap and request_timeout must be positive")
    metrics = Metrics()
    engines = [(name, m.engine) for name, m in models.items() if m.engine is not None]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for _, engine in engines:
            await asyncio.to_thread(engine.start)
        yield
        app.state.draining = True
        for name, engine in engines:
            logger.info("%s: draining the engine", name)
            await asyncio.to_thread(engine.shutdown, drain=True, timeout=request_timeout)

    app = FastAPI(title="biogpt serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.draining = False
    app.state.models = models
    app.state.metrics = metrics
    install_error_handlers(app)
    ctx = Context(models=models, default=default, metrics=metrics, max_tokens_cap=max_tokens_cap,
                  request_timeout=request_timeout, app=app)

    # outermost last: CORS (answers preflights) → metrics → API key → body size → routes
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=lambda: ctx.paths)
    if allowed_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], allow_credentials=False)  # the openai JS client sends x-stainless-* headers

    @app.get("/health")
    async def health() -> Response:
        if app.state.draining:
            return ApiError(503, "The server is draining.", code="server_draining").response()
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(m) for m in models.values()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict[str, Any]:
        return _model_card(ctx.pick(name))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(engines), media_type=metrics.content_type)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await complete(ctx, body, request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        raise ApiError(404, "BioGPT has no chat format: this server has no /v1/chat/completions. "
                            "Send a prompt to /v1/completions instead.", code="unsupported_endpoint")

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        return await embed(ctx, body)

    @app.post("/v1/extract-relations")
    async def extract_relations(body: RelationsRequest) -> dict[str, Any]:
        return await task_endpoints.extract_relations(ctx, body)

    @app.post("/v1/qa")
    async def qa(body: QaRequest) -> dict[str, Any]:
        return await task_endpoints.answer_questions(ctx, body)

    @app.post("/v1/tag")
    async def tag(body: TagRequest) -> dict[str, Any]:
        return await task_endpoints.tag(ctx, body)

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        return await task_endpoints.classify(ctx, body)

    ctx.paths = {route.path for route in app.routes if hasattr(route, "path")}
    return app


def _model_card(m: ServedModel) -> dict[str, Any]:
    card: dict[str, Any] = {"id": m.name, "object": "model", "created": m.created, "owned_by": "biogpt",
                            "kind": m.kind, "max_model_len": m.max_positions}
    if m.task:
        card["task"] = m.task
    return card
