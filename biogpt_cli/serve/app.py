"""The HTTP layer of `biogpt serve`: an OpenAI-compatible FastAPI app over the engines.

Why a thin layer: the engine (engine.py) owns the model and knows no HTTP; the task endpoints
call the same library functions as the CLI commands (so a record is the CLI's record); this
module only validates (schemas.py), tokenizes, detokenizes as tokens arrive (stop strings,
stream-safe suffixes), streams server-sent events, and turns every failure into OpenAI's error
object `{"error": {"message", "type", "param", "code"}}`, whatever raised it (validation 400,
401, 404, 405, 413, 429 with Retry-After, 500, 503).

Choices the OpenAI API leaves open, as decided here: a choice's text is
`tokenizer.decode(new_tokens, skip_special_tokens=True)` (so a greedy choice is `biogpt
generate`'s "generated" text; its first word has no leading space), and `echo` joins the decoded
prompt and that text with the space the detokenizer puts there; `n` > 1 runs n independent
requests, choice i sampled with `seed + i` (as vLLM does); `best_of` is accepted only as 1 or n
(every candidate is returned); `suffix` is refused; unknown fields are refused (400 naming them).

Read top-down: errors, the middlewares (body size, metrics), the running text of a choice,
`create_app` with its routes, then the completion, embedding and task helpers. Nothing here
reads or writes a file named by a request; models are fixed when the app is built.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import ApiKeyMiddleware
from .engine import EngineStopped, QueueFull, RequestHandle, SamplingParams, TokenEvent
from .metrics import Metrics
from .models import ServedModel
from .schemas import (ClassifyRequest, CompletionRequest, Document, EmbeddingRequest, QaRequest, RelationsRequest,
                      TagRequest, error_body)

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_SECONDS = 1  # 429: the queue drains at decode speed; a second is a fair first wait


# ---------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
             429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.TYPES.get(self.status, "invalid_request_error"), param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def engine_error(exc: BaseException) -> ApiError:
    """The engine's refusals as HTTP errors (ValueError: the request is wrong)."""
    if isinstance(exc, QueueFull):
        return ApiError(429, "The server's queue is full; retry later.", code="queue_full",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, EngineStopped):
        return ApiError(503, "The server is shutting down and accepts no new requests.", code="server_draining")
    if isinstance(exc, ValueError):
        return ApiError(400, str(exc), param=_param_named(str(exc)))
    logger.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return ApiError(500, f"The model failed on this request ({type(exc).__name__}: {exc}).", code="internal_error")


def _param_named(message: str) -> str | None:
    """The option an engine ValueError names first (its messages start with the option)."""
    first = message.split(" ", 1)[0]
    return first if first in SamplingParams.__dataclass_fields__ else ("prompt" if "prompt" in message else None)


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if not errors:
        return ApiError(400, "Invalid request body.")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # a union's alternatives appear in loc as type names: keep the field path only
    path = [p for p in loc if not any(c in p for c in "[]") and p not in ("str", "int", "function-after")]
    param = path[0] if path else None
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The body is not valid JSON: {first.get('msg')}.")
    where = ".".join(path) or "body"
    return ApiError(400, f"{where}: {first.get('msg')}" + (f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""),
                    param=param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"No such endpoint: {request.method} {request.url.path}.",
                    405: f"Method {request.method} is not allowed on {request.url.path}."}
        error = ApiError(exc.status_code, messages.get(exc.status_code, str(exc.detail)), headers=dict(exc.headers or {}))
        return error.response()

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return engine_error(exc).response()


# ---------------------------------------------------------------------------- middlewares
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


# ---------------------------------------------------------------------------- the text of a choice
# BioGPT's detokenizer (Moses + BPE) is not prefix-stable in general, and decoding the whole
# sequence on every token costs O(n²) on the event loop. So the running text grows by the
# difference a token makes to the decode of a short window before it (O(1) per token); the final
# text of a choice is one full `tokenizer.decode(ids, skip_special_tokens=True)` (exactly what
# `model.generate` + decode gives). Streamed text is only ever appended to: text already sent never
# changes, and a suffix that could be the start of a stop string is held back until it is not.
WINDOW = 8  # tokens of left context when decoding one more token (Moses joins over a few tokens)


class TokenStrings:
    """The string of one token for logprobs (`tokens`, `top_logprobs` keys), cached: the
    token decoded alone, special tokens kept (`</s>`), as vLLM reports them."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.cache[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return text


class TextTracker:
    """The text of one choice as its tokens arrive (see the module docstring)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""  # running text (cut at a stop string once one is found)
        self.offsets: list[int] = []  # where each token's text starts in `text`
        self.stopped = False  # a stop string was found: `text` ends before it
        self.sent = ""  # what `take` has handed out (always a prefix of what it will hand out)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def add(self, token_id: int) -> None:
        if self.stopped:
            return
        self.ids.append(token_id)
        start = max(0, len(self.ids) - 1 - WINDOW)
        before, after = self._decode(self.ids[start:-1]), self._decode(self.ids[start:])
        common = len(before) if after.startswith(before) else _common_prefix(before, after)
        piece = after[common:]
        checked_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=0))
        self.offsets.append(len(self.text))
        self.text += piece
        if self.stops:
            cut = _first_stop(self.text, self.stops, checked_from)
            if cut is not None:
                self.text, self.stopped = self.text[:cut], True

    def final_text(self) -> str:
        """The choice's text: the full decode of its tokens, cut at the first stop string."""
        full = self._decode(self.ids)
        if self.stops:
            cut = _first_stop(full, self.stops, 0)
            if cut is not None:
                return full[:cut]
            if self.stopped:  # the running text found a stop the full decode joins differently
                return self.text
        return full

    def take(self, *, final: bool = False) -> str:
        """New text that is safe to send: never changes what was sent, and holds back a tail
        that may still become a stop string (unless `final` or stopped)."""
        text = self.final_text() if final else self.text
        if not text.startswith(self.sent):
            return ""  # the detokenizer rejoined sent text: nothing can be taken back
        end = len(text)
        if not final and not self.stopped and self.stops:
            end -= _stop_prefix_tail(text, self.stops)
        new = text[len(self.sent) : end] if end > len(self.sent) else ""
        self.sent += new
        return new


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _first_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    longest = min(max(len(s) for s in stops) - 1, len(text))
    for k in range(longest, 0, -1):
        tail = text[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0


# ---------------------------------------------------------------------------- the app
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
    ctx = _Context(models=models, default=default, metrics=metrics, max_tokens_cap=max_tokens_cap,
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
        return await relations_endpoint(ctx, body)

    @app.post("/v1/qa")
    async def qa(body: QaRequest) -> dict[str, Any]:
        return await qa_endpoint(ctx, body)

    @app.post("/v1/tag")
    async def tag(body: TagRequest) -> dict[str, Any]:
        return await tag_endpoint(ctx, body)

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        return await classify_endpoint(ctx, body)

    ctx.paths = {route.path for route in app.routes if hasattr(route, "path")}
    return app


def _model_card(m: ServedModel) -> dict[str, Any]:
    card: dict[str, Any] = {"id": m.name, "object": "model", "created": m.created, "owned_by": "biogpt",
                            "kind": m.kind, "max_model_len": m.max_positions}
    if m.task:
        card["task"] = m.task
    return card


@dataclass
class _Context:
    """What the routes share."""

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

    async def run_model(self, served: ServedModel, fn: Callable[[], T]) -> T:
        """`fn` alone with the model: on the engine's thread between decode steps, or (a head
        model, no engine) in a worker thread, one call at a time. Errors become ApiErrors."""
        try:
            async with asyncio.timeout(self.request_timeout):
                if served.engine is not None:
                    return await served.engine.run_exclusive(fn)
                lock = self.head_locks.setdefault(served.name, asyncio.Lock())
                async with lock:
                    return await asyncio.to_thread(fn)
        except TimeoutError:
            raise ApiError(408, f"The request took longer than the server's {self.request_timeout:g} s limit.",
                           code="request_timeout") from None
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - the request fails alone, in OpenAI's shape
            raise engine_error(exc) from None


# ---------------------------------------------------------------------------- completions
def _encode_prompts(served: ServedModel, prompt: Any) -> list[list[int]]:
    """The prompt(s) as token-id lists: a string is encoded as `biogpt generate` does
    (`tokenizer(text)`, with its leading `</s>`), token ids are taken as they are."""
    if isinstance(prompt, str):
        prompts: list[Any] = [prompt]
    elif not prompt:
        raise ApiError(400, "prompt is empty.", param="prompt")
    elif isinstance(prompt[0], int):
        prompts = [prompt]
    else:
        prompts = list(prompt)
    out = []
    for p in prompts:
        if isinstance(p, str):
            ids = list(served.tokenizer(p)["input_ids"])
        else:
            ids = [int(t) for t in p]
            if not ids:
                raise ApiError(400, "prompt holds an empty list of token ids.", param="prompt")
            if any(not 0 <= t < served.vocab_size for t in ids):
                raise ApiError(400, f"prompt has token ids outside the vocabulary (0..{served.vocab_size - 1}).", param="prompt")
        out.append(ids)
    return out


def _refuse_unsupported(body: CompletionRequest) -> None:
    """A field we cannot honour with a non-default value is a 400 naming it."""
    if body.suffix:
        raise ApiError(400, "suffix is not supported: BioGPT only continues a prompt.", param="suffix")
    if body.best_of is not None and body.best_of not in (1, body.n):
        raise ApiError(400, "best_of is supported only equal to n (or 1): every candidate is returned.", param="best_of")
    if body.stream_options is not None and not body.stream:
        raise ApiError(400, "stream_options is only allowed with stream: true.", param="stream_options")


def _sampling_params(body: CompletionRequest, served: ServedModel, max_tokens: int) -> SamplingParams:
    bias: list[tuple[int, float]] = []
    for key, value in (body.logit_bias or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise ApiError(400, f"logit_bias keys are token ids; got {key!r}.", param="logit_bias") from None
        if not 0 <= token < served.vocab_size or not math.isfinite(value):
            raise ApiError(400, f"logit_bias: token {key} is outside the vocabulary or its bias is not finite.", param="logit_bias")
        bias.append((token, max(-100.0, min(100.0, float(value)))))
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=max(0, body.top_k),
        seed=body.seed,
        min_tokens=body.min_tokens,
        ignore_eos=body.ignore_eos,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        repetition_penalty=body.repetition_penalty,
        no_repeat_ngram_size=body.no_repeat_ngram_size,
        logit_bias=tuple(bias),
        logprobs=body.logprobs,
        num_beams=body.num_beams,
    )


@dataclass
class _Choice:
    """One choice of a completion: a prompt's n-th sample, its running text and logprobs."""

    index: int
    prompt_ids: list[int]
    params: SamplingParams
    tracker: TextTracker
    echo: bool
    handle: RequestHandle | None = None
    tokens: list[int] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[int, float] | None] = field(default_factory=list)
    prompt_scores: list[tuple[float | None, dict[int, float] | None]] | None = None
    finish_reason: str | None = None
    error: str | None = None
    sent_tokens: int = 0  # tokens whose logprobs a stream chunk has carried
    prompt_text: str = ""  # echo: the prompt's text as streamed
    separator: str | None = None  # echo: what joins prompt and completion, once known

    def add(self, event: TokenEvent) -> None:
        if event.token_id is not None and not self.tracker.stopped:
            self.tokens.append(event.token_id)
            self.token_logprobs.append(event.logprob)
            self.top_logprobs.append(event.top_logprobs)
            self.tracker.add(event.token_id)
            if self.tracker.stopped:  # a stop string: free the row now, OpenAI's "stop"
                self.finish_reason = "stop"
                if self.handle is not None:
                    self.handle.cancel()
                return
        if event.finish_reason is not None and self.finish_reason is None:
            self.finish_reason = event.finish_reason
            self.error = event.error

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


async def complete(ctx: _Context, body: CompletionRequest, request: Request) -> Response:
    served = ctx.pick(body.model)
    if served.engine is None:
        raise ApiError(400, f"{served.name} is a {served.kind} model; /v1/completions needs a causal language model.",
                       param="model", code="model_not_generative")
    ctx.accepting()
    _refuse_unsupported(body)
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    if max_tokens > ctx.max_tokens_cap:
        raise ApiError(400, f"max_tokens {max_tokens} is more than this server's cap of {ctx.max_tokens_cap}.", param="max_tokens")
    prompts = await asyncio.to_thread(_encode_prompts, served, body.prompt)  # Moses + BPE of a long text: off the loop
    for ids in prompts:
        if len(ids) + max_tokens > served.max_positions:
            raise ApiError(400, f"This model's maximum context length is {served.max_positions} tokens; you requested "
                                f"{len(ids) + max_tokens} ({len(ids)} in the prompt, {max_tokens} in the completion).",
                           param="prompt" if len(ids) >= served.max_positions else "max_tokens", code="context_length_exceeded")
    if max_tokens == 0 and not body.echo:
        raise ApiError(400, "max_tokens 0 generates nothing; with echo: true it scores the prompt.", param="max_tokens")
    params = _sampling_params(body, served, max_tokens)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    choices = [
        _Choice(i * body.n + j, ids, replace(params, seed=None if params.seed is None else params.seed + j),
                TextTracker(served.tokenizer, stops), body.echo)
        for i, ids in enumerate(prompts) for j in range(body.n)
    ]
    meta = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()), "model": served.name}
    if body.echo and body.logprobs is not None:  # the prompt's logprobs: one forward pass per prompt
        scored: dict[int, Any] = {}
        for i, ids in enumerate(prompts):
            scored[i] = await ctx.run_model(served, lambda ids=ids: served.engine.score_prompt(ids, body.logprobs))
        for c in choices:
            c.prompt_scores = scored[c.index // body.n]
    if max_tokens > 0:
        _submit_all(served, choices)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        # the background task cancels what is left even if the stream never started (client gone at once)
        return StreamingResponse(_stream(ctx, served, choices, meta, body, include_usage=include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                                 background=BackgroundTask(_cancel_unfinished, choices))
    try:
        await _collect(ctx, choices, request)
    finally:
        _cancel_unfinished(choices)
    failed = [c for c in choices if c.finish_reason == "error"]
    if failed:
        raise ApiError(500, f"The model failed on this request: {failed[0].error or 'engine error'}.", code="internal_error")
    _observe(ctx, served, choices, prompts)
    strings = TokenStrings(served.tokenizer)
    out = []
    for c in choices:
        text, logprobs = _choice_text(c, served, strings, body.logprobs)
        out.append({"index": c.index, "text": text, "logprobs": logprobs, "finish_reason": _finish(c)})
    return JSONResponse({**meta, "choices": out, "usage": _usage(prompts, choices)})


def _submit_all(served: ServedModel, choices: list[_Choice]) -> None:
    """Submit every choice, or none: a refusal cancels those already queued."""
    try:
        for c in choices:
            c.handle = served.engine.submit(c.prompt_ids, c.params)
    except BaseException as exc:
        for c in choices:
            if c.handle is not None:
                c.handle.cancel()
        raise engine_error(exc) if isinstance(exc, Exception) else exc from None


def _cancel_unfinished(choices: list[_Choice]) -> None:
    for c in choices:
        if c.handle is not None and not c.done:
            c.handle.cancel()


async def _consume(c: _Choice) -> None:
    assert c.handle is not None
    async for event in c.handle:
        c.add(event)
        if c.done:
            return


async def _collect(ctx: _Context, choices: list[_Choice], request: Request) -> None:
    """Run every choice to its end; a client that leaves or the timeout cancels them."""
    running = [asyncio.ensure_future(_consume(c)) for c in choices if c.handle is not None]
    if not running:
        return
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        async with asyncio.timeout(ctx.request_timeout):
            gathered = asyncio.gather(*running)
            done, _ = await asyncio.wait({gathered, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if gathered not in done:
                gathered.cancel()
                logger.info("client disconnected: %d choices cancelled", len(running))
                raise ApiError(499, "The client disconnected.", code="client_disconnected")
            gathered.result()
    except TimeoutError:
        raise ApiError(408, f"The request took longer than the server's {ctx.request_timeout:g} s limit.",
                       code="request_timeout") from None
    finally:
        watcher.cancel()
        for task in running:
            task.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body was read already: the next message can
    only be the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _finish(c: _Choice) -> str:
    return "length" if c.finish_reason in (None, "length", "abort") and not c.tracker.stopped else "stop"


def _usage(prompts: list[list[int]], choices: list[_Choice]) -> dict[str, int]:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(len(c.tokens) for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _observe(ctx: _Context, served: ServedModel, choices: list[_Choice], prompts: list[list[int]]) -> None:
    first = [c.handle.first_token_seconds for c in choices if c.handle is not None and c.handle.first_token_seconds is not None]
    ctx.metrics.observe_generation(served.name, prompt_tokens=sum(len(p) for p in prompts),
                                   completion_tokens=sum(len(c.tokens) for c in choices),
                                   first_token_seconds=min(first) if first else None)


def _prompt_part(c: _Choice, served: ServedModel) -> tuple[str, list[int]]:
    """The echoed prompt's text and each prompt token's offset in it."""
    tracker = TextTracker(served.tokenizer)
    for t in c.prompt_ids:
        tracker.add(t)
    return tracker.final_text(), tracker.offsets


def _logprobs_object(ids: Sequence[int], offsets: Sequence[int], scores: Sequence[tuple[float | None, dict[int, float] | None]],
                     strings: TokenStrings, top: int) -> dict[str, Any]:
    """OpenAI's legacy completions logprobs: tokens, token_logprobs, top_logprobs, text_offset."""
    return {
        "tokens": [strings(t) for t in ids],
        "token_logprobs": [lp for lp, _ in scores],
        "top_logprobs": [None if alts is None else _top_strings(alts, strings, top) for _, alts in scores],
        "text_offset": list(offsets),
    }


def _top_strings(alternatives: dict[int, float], strings: TokenStrings, top: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for token, lp in sorted(alternatives.items(), key=lambda kv: -kv[1])[: max(top, 0) or None]:
        key = strings(token)
        if key not in out:  # two tokens may read alike (a word and its BPE prefix): keep the likelier
            out[key] = lp
    return out


def _merge_logprobs(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a or b
    return {k: a[k] + b[k] for k in a}


def _choice_text(c: _Choice, served: ServedModel, strings: TokenStrings, top: int | None) -> tuple[str, dict[str, Any] | None]:
    """The final text of a choice (echoed prompt + completion) and its logprobs object."""
    text = c.tracker.final_text()
    kept = _kept_tokens(c, len(text))
    logprobs = None
    if top is not None:
        logprobs = _logprobs_object(c.tokens[:kept], c.tracker.offsets[:kept],
                                    list(zip(c.token_logprobs[:kept], c.top_logprobs[:kept])), strings, top)
    if not c.echo:
        return text, logprobs
    prompt_text, prompt_offsets = _prompt_part(c, served)
    sep = _separator(served, c.prompt_ids, c.tokens[:kept], prompt_text, text)
    if top is not None:
        shift = len(prompt_text) + len(sep)
        assert logprobs is not None
        logprobs["text_offset"] = [o + shift for o in logprobs["text_offset"]]
        prompt_logprobs = _logprobs_object(c.prompt_ids, prompt_offsets, c.prompt_scores or [(None, None)] * len(c.prompt_ids),
                                           strings, top)
        logprobs = _merge_logprobs(prompt_logprobs, logprobs)
    return prompt_text + sep + text, logprobs


def _kept_tokens(c: _Choice, text_length: int) -> int:
    """Tokens that belong to the returned text: all of them, or after a stop string, those
    that start before the cut (the token holding the stop string's start is the last)."""
    if not c.tracker.stopped:
        return len(c.tokens)
    return max(1, sum(1 for o in c.tracker.offsets if o < text_length)) if c.tokens else 0


def _separator(served: ServedModel, prompt_ids: list[int], tokens: list[int], prompt_text: str, text: str) -> str:
    """What joins an echoed prompt and its completion: the space the detokenizer puts there
    (a completion's text starts with its first word, as `biogpt generate` prints it)."""
    if not prompt_text or not text:
        return ""
    joined = served.tokenizer.decode(prompt_ids + tokens, skip_special_tokens=True)
    return " " if joined.startswith(prompt_text + " ") else ""


# ---------------------------------------------------------------------------- streaming
def _sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8")


async def _stream(ctx: _Context, served: ServedModel, choices: list[_Choice], meta: dict[str, Any], body: CompletionRequest,
                  *, include_usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events: a chunk per choice as its safe text grows, a final chunk with its
    finish_reason, the usage chunk (stream_options.include_usage), then `data: [DONE]`. The
    generator being closed (client gone) or the timeout cancels every choice still running."""
    strings = TokenStrings(served.tokenizer)
    prompts = [c.prompt_ids for c in choices if c.index % body.n == 0]
    queue: asyncio.Queue[tuple[_Choice, TokenEvent | None]] = asyncio.Queue()
    usage_none = {"usage": None} if include_usage else {}

    async def pump(c: _Choice) -> None:
        try:
            assert c.handle is not None
            async for event in c.handle:
                await queue.put((c, event))
                if event.finish_reason is not None:
                    return
        finally:
            await queue.put((c, None))

    def chunk(c: _Choice, text: str, logprobs: dict[str, Any] | None, finish: str | None) -> bytes:
        return _sse({**meta, "choices": [{"index": c.index, "text": text, "logprobs": logprobs, "finish_reason": finish}], **usage_none})

    def prompt_chunk(c: _Choice) -> bytes:
        text, offsets = _prompt_part(c, served)
        c.prompt_text = text
        logprobs = None
        if body.logprobs is not None:
            logprobs = _logprobs_object(c.prompt_ids, offsets, c.prompt_scores or [(None, None)] * len(c.prompt_ids), strings, body.logprobs)
        return chunk(c, text, logprobs, None)

    def new_text(c: _Choice, *, final: bool = False) -> str:
        text = c.tracker.take(final=final)
        if c.echo and c.separator is None and text:  # the space between the echoed prompt and the completion
            c.separator = _separator(served, c.prompt_ids, c.tokens, c.prompt_text, c.tracker.sent)
            text = c.separator + text
        return text

    def new_logprobs(c: _Choice, upto: int) -> dict[str, Any] | None:
        if body.logprobs is None:
            return None
        start, c.sent_tokens = c.sent_tokens, upto
        shift = len(c.prompt_text) + len(c.separator or "") if c.echo else 0
        return _logprobs_object(c.tokens[start:upto], [o + shift for o in c.tracker.offsets[start:upto]],
                                list(zip(c.token_logprobs[start:upto], c.top_logprobs[start:upto])), strings, body.logprobs)

    tasks = [asyncio.ensure_future(pump(c)) for c in choices if c.handle is not None]
    deadline = asyncio.get_running_loop().time() + ctx.request_timeout
    open_choices = {c.index for c in choices if c.handle is not None}
    try:
        for c in choices:
            if c.echo:
                yield prompt_chunk(c)
            if c.handle is None:  # max_tokens 0 with echo: the prompt is the whole answer
                c.finish_reason = "length"
                yield chunk(c, "", None, "length")
        while open_choices:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                c, event = await asyncio.wait_for(queue.get(), timeout=max(remaining, 0.001))
            except TimeoutError:
                error = ApiError(408, f"The request took longer than the server's {ctx.request_timeout:g} s limit.", code="request_timeout")
                yield _sse(error.body())
                yield _sse("[DONE]")
                return
            if event is None or c.index not in open_choices:
                if event is None and c.index in open_choices:  # the pump stopped without a final event
                    open_choices.discard(c.index)
                    yield chunk(c, new_text(c, final=True), new_logprobs(c, len(c.tokens)), _finish(c))
                continue
            c.add(event)
            if c.finish_reason == "error":
                error = ApiError(500, f"The model failed on this request: {c.error or 'engine error'}.", code="internal_error")
                yield _sse(error.body())
                yield _sse("[DONE]")
                return
            if c.done:
                open_choices.discard(c.index)
                text = new_text(c, final=True)
                kept = _kept_tokens(c, len(c.tracker.final_text()))
                yield chunk(c, text, new_logprobs(c, kept), _finish(c))
                continue
            text = new_text(c)
            if text or body.logprobs is not None:
                yield chunk(c, text, new_logprobs(c, len(c.tokens)), None)
        _observe(ctx, served, choices, prompts)
        if include_usage:
            yield _sse({**meta, "choices": [], "usage": _usage(prompts, choices)})
        yield _sse("[DONE]")
    finally:
        _cancel_unfinished(choices)
        for task in tasks:
            task.cancel()


# ---------------------------------------------------------------------------- embeddings
EMBED_BATCH = 32  # inputs per turn alone with the model: decode steps of running requests go on between turns


async def embed(ctx: _Context, body: EmbeddingRequest) -> dict[str, Any]:
    """OpenAI's embeddings: the mean of the last hidden states over each input's tokens
    (embeddings.embed_ids, the same vectors as `biogpt embed`). base64 is the little-endian
    float32 bytes the openai client decodes."""
    from .embeddings import embed_ids

    served = ctx.pick(body.model)
    ctx.accepting()
    hidden = int(served.model.config.hidden_size)
    if body.dimensions is not None and body.dimensions != hidden:
        raise ApiError(400, f"dimensions: this model's embeddings have {hidden} dimensions, and are not shortened.", param="dimensions")
    inputs = body.input
    items: list[Any] = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else list(inputs)
    if not items:
        raise ApiError(400, "input is empty.", param="input")
    batch = await asyncio.to_thread(_encode_inputs, served, items)
    vectors = []
    for start in range(0, len(batch), EMBED_BATCH):
        part = batch[start : start + EMBED_BATCH]
        vectors.extend(await ctx.run_model(served, lambda part=part: embed_ids(served.model, part)))
    data = []
    for i, vector in enumerate(vectors):
        values = vector.to(dtype=torch.float32).numpy()
        embedding: Any = (base64.b64encode(values.astype("<f4").tobytes()).decode("ascii") if body.encoding_format == "base64"
                          else [float(v) for v in values])
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(ids) for ids in batch)
    ctx.metrics.prompt_tokens.labels(served.name).inc(tokens)
    return {"object": "list", "data": data, "model": served.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _encode_inputs(served: ServedModel, items: list[Any]) -> list[list[int]]:
    batch: list[list[int]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise ApiError(400, f"input {i} is an empty string.", param="input")
            ids = list(served.tokenizer(item)["input_ids"])
        else:
            ids = [int(t) for t in item]
            if not ids or any(not 0 <= t < served.vocab_size for t in ids):
                raise ApiError(400, f"input {i}: token ids must be a non-empty list within the vocabulary (0..{served.vocab_size - 1}).",
                               param="input")
        if len(ids) > served.max_positions:
            raise ApiError(400, f"input {i} has {len(ids)} tokens, more than the model's {served.max_positions} positions.",
                           param="input", code="context_length_exceeded")
        batch.append(ids)
    return batch


# ---------------------------------------------------------------------------- task endpoints
# The CLI commands' own functions, so that a record here is the record the command writes:
# extract-relations → commands.extract_relations.relations_record, qa → commands.qa.answer_question,
# tag → heads.tag_text, classify → heads.classify_with_head or the generative task's parse.
def _records(value: Any) -> list[Any]:
    """One document or a list as the CLI's Records (title + abstract joined as biogpt.io does)."""
    from ..io import Record, document_text

    items = value if isinstance(value, list) else [value]
    if not items:
        raise ApiError(400, "input is an empty list.", param="input")
    records = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            record = Record(f"input:{i + 1}", item)
        else:
            assert isinstance(item, Document)
            text = item.text if item.text is not None else document_text(item.title or "", item.abstract or "")
            fields = {k: v for k, v in (("title", item.title), ("abstract", item.abstract)) if v is not None}
            record = Record(item.id or f"input:{i + 1}", text, fields)
        if not record.text.strip():
            raise ApiError(400, f"input {i} has no text.", param="input")
        records.append(record)
    return records


def _need_kind(served: ServedModel, kind: str, endpoint: str, how: str) -> None:
    if served.kind != kind:
        raise ApiError(400, f"{endpoint} needs a {kind} model ({how}); {served.name} is a {served.kind} model.",
                       param="model", code="wrong_model_kind")


def _stored_recipe(served: ServedModel) -> dict[str, Any]:
    from biogpt.tasks.runner import RECIPE_KEY

    stored = (getattr(served.model.config, "extra", {}) or {}).get(RECIPE_KEY)
    return stored if isinstance(stored, dict) else {}


def _task(name: str, accepted: tuple[str, ...], endpoint: str) -> Any:
    from biogpt.tasks import TaskDataError, get_task

    try:
        task = get_task(name)
    except TaskDataError:
        task = None
    if task is None or task.name not in accepted:
        raise ApiError(400, f"task {name!r} is not a task of {endpoint}; expected one of {', '.join(accepted)}.", param="task")
    return task


def _recipe(served: ServedModel, task: Any) -> Any:
    """The prompt recipe as `_taskrun.load_task_model` reads it (the hub checkpoint's setting)."""
    from biogpt.tasks.runner import read_recipe

    from .._taskrun import HUB_CHECKPOINTS

    recipe = read_recipe(served.model, served.tokenizer, task)
    if recipe.setting is None and served.name in HUB_CHECKPOINTS.get(task.name, ())[:1]:
        recipe.setting = HUB_CHECKPOINTS[task.name][1]
    return recipe


def _relation_task(served: ServedModel, name: str | None) -> Any:
    """The request's task, else the model's recorded one (commands.extract_relations.resolve_task)."""
    from ..commands.extract_relations import RE_TASKS

    stored = _stored_recipe(served)
    name = name or served.task or (str(stored["task"]) if stored.get("task") else None)
    if not name:
        raise ApiError(400, f"task is required ({', '.join(RE_TASKS)}): {served.name} records no task.", param="task")
    task = _task(name, RE_TASKS, "/v1/extract-relations")
    if task.name == "custom":
        from biogpt.tasks import TaskDataError
        from biogpt.tasks.custom import CustomRelationTask

        template = stored.get("template")
        if not template:
            raise ApiError(400, f"task custom needs a model trained with `biogpt train re --template ...`; {served.name} has no template.",
                           param="task")
        try:
            task = CustomRelationTask(template)
        except TaskDataError as exc:
            raise ApiError(400, f"{served.name}: {exc}", param="task") from None
    return task


async def _provenance(ctx: _Context, served: ServedModel, **options: Any) -> dict[str, Any]:
    from .._common import provenance

    # the first call hashes the weight files (fixed at start): off the event loop
    return await ctx.run_model(served, lambda: provenance(served.model, served.name, **options))


async def relations_endpoint(ctx: _Context, body: RelationsRequest) -> dict[str, Any]:
    from biogpt.tasks.runner import encode_source, generate_outputs

    from .._taskrun import decoding_options
    from ..commands.extract_relations import relations_record

    served = ctx.pick(body.model)
    _need_kind(served, "causal-lm", "/v1/extract-relations", "a causal LM fine-tuned for relation extraction")
    ctx.accepting()
    task = _relation_task(served, body.task)
    if body.entities is not None:
        if task.name != "bc5cdr":
            raise ApiError(400, "entities applies to task bc5cdr.", param="entities")
        if not all(isinstance(body.entities.get(k), dict) for k in ("chemical2id", "disease2id")):
            raise ApiError(400, 'entities: expected {"chemical2id": {name: MeSH}, "disease2id": {...}}.', param="entities")
    records = _records(body.input)
    model, tokenizer = served.model, served.tokenizer
    recipe = _recipe(served, task)
    decoding = decoding_options(body.num_beams, body.max_new_tokens)
    room = served.max_positions - decoding.get("max_new_tokens", task.decoding.max_new_tokens)

    def run(record: Any) -> dict[str, Any]:
        with torch.inference_mode():
            source = task.source_for_document(text=record.text, title=record.fields.get("title"), abstract=record.fields.get("abstract"))
            ids = encode_source(tokenizer, source, recipe, limit=max(room, 8))
            generated = generate_outputs(model, tokenizer, [ids], task=task, decoding=decoding, constrained=body.constrained)[0]
            return relations_record(task, record, generated, model=model, tokenizer=tokenizer, entities=body.entities)

    meta = await _provenance(ctx, served, task=task.name, constrained=body.constrained,
                             decoding={"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens, **decoding},
                             prompt=recipe.to_dict())
    data = [{**await ctx.run_model(served, lambda r=r: run(r)), "provenance": meta} for r in records]
    return {"object": "list", "model": served.name, "task": task.name, "data": data}


async def qa_endpoint(ctx: _Context, body: QaRequest) -> dict[str, Any]:
    from ..commands.qa import answer_question
    from ..io import Record

    served = ctx.pick(body.model)
    _need_kind(served, "causal-lm", "/v1/qa", "a causal LM fine-tuned for PubMedQA")
    ctx.accepting()
    task = _task(body.task or "pubmedqa", ("pubmedqa",), "/v1/qa")
    recipe = _recipe(served, task)
    questions = body.input if isinstance(body.input, list) else [body.input]
    if not questions:
        raise ApiError(400, "input is an empty list.", param="input")
    records = []
    for i, q in enumerate(questions):
        if not q.question.strip():
            raise ApiError(400, f"input {i}: empty question.", param="input")
        records.append(Record(q.id or f"input:{i + 1}", q.question, {"context": q.context, "long_answer": q.long_answer}))

    def run(record: Any) -> dict[str, Any]:
        return answer_question(task, served.model, served.tokenizer, recipe, record, context_key="context",
                               long_answer_key="long_answer", setting=body.setting, generate=body.generate)

    meta = await _provenance(ctx, served, task="pubmedqa", setting=body.setting or recipe.setting or "reasoning-required",
                             prompt=recipe.to_dict())
    data = [{**await ctx.run_model(served, lambda r=r: run(r)), "provenance": meta} for r in records]
    return {"object": "list", "model": served.name, "task": task.name, "data": data}


async def tag_endpoint(ctx: _Context, body: TagRequest) -> dict[str, Any]:
    from ..heads import tag_text

    served = ctx.pick(body.model)
    _need_kind(served, "token-classification", "/v1/tag", "trained with `biogpt train ner`")
    ctx.accepting()
    records = _records(body.input)
    meta = await _provenance(ctx, served)
    data = []
    for r in records:
        entities = await ctx.run_model(served, lambda r=r: tag_text(served.model, served.tokenizer, r.text))
        data.append({"id": r.id, "entities": entities, "provenance": meta})
    return {"object": "list", "model": served.name, "data": data}


async def classify_endpoint(ctx: _Context, body: ClassifyRequest) -> dict[str, Any]:
    from ..commands.classify import CLASSIFY_TASKS

    served = ctx.pick(body.model)
    ctx.accepting()
    records = _records(body.input)
    if served.kind == "sequence-classification":
        from ..heads import classify_with_head

        if body.task is not None or body.num_beams is not None or body.max_new_tokens is not None:
            param = "task" if body.task is not None else ("num_beams" if body.num_beams is not None else "max_new_tokens")
            raise ApiError(400, f"{param} applies to a generative classifier; {served.name} is a classification head.", param=param)
        meta = await _provenance(ctx, served, threshold=body.threshold)
        data = []
        for r in records:
            result = await ctx.run_model(served, lambda r=r: classify_with_head(served.model, served.tokenizer, r.text, threshold=body.threshold))
            data.append({"id": r.id, **result, "provenance": meta})
        return {"object": "list", "model": served.name, "data": data}
    name = body.task or served.task or _stored_recipe(served).get("task")
    if served.kind != "causal-lm" or name is None or str(name) not in CLASSIFY_TASKS and body.task is None:
        raise ApiError(400, f"/v1/classify needs a sequence-classification model (trained with `biogpt train classify`) or a causal "
                            f"LM fine-tuned for {', '.join(CLASSIFY_TASKS)} (pass task); {served.name} is a {served.kind} model"
                            + ("" if served.kind != "causal-lm" else " that records no classification task") + ".",
                       param="model", code="wrong_model_kind")
    return await _classify_generative(ctx, served, _task(str(name), CLASSIFY_TASKS, "/v1/classify"), records, body)


async def _classify_generative(ctx: _Context, served: ServedModel, task: Any, records: list[Any], body: ClassifyRequest) -> dict[str, Any]:
    """commands/classify.py's generative path: generate the task's sentence and parse it."""
    from biogpt.tasks.runner import encode_source, generate_outputs

    from .._taskrun import decoding_options

    recipe = _recipe(served, task)
    decoding = decoding_options(body.num_beams, body.max_new_tokens)
    room = served.max_positions - decoding.get("max_new_tokens", task.decoding.max_new_tokens)

    def run(record: Any) -> dict[str, Any]:
        with torch.inference_mode():
            ids = encode_source(served.tokenizer, task.source_for_document(text=record.text), recipe, limit=max(room, 8))
            generated = generate_outputs(served.model, served.tokenizer, [ids], task=task, decoding=decoding)[0]
        parsed = task.parse(generated.output)
        return {"id": record.id, "labels": [] if parsed.failed else parsed.value, "output": generated.output, "failed": parsed.failed}

    meta = await _provenance(ctx, served, task=task.name, prompt=recipe.to_dict(), decoding=decoding)
    data = [{**await ctx.run_model(served, lambda r=r: run(r)), "provenance": meta} for r in records]
    return {"object": "list", "model": served.name, "task": task.name, "data": data}
