"""POST /v1/completions: OpenAI's legacy Completions API over the engine.

Choices the OpenAI API leaves open, as decided here: a choice's text is
`tokenizer.decode(new_tokens, skip_special_tokens=True)` (so a greedy choice is `biogpt
generate`'s "generated" text; its first word has no leading space), and `echo` joins the decoded
prompt and that text with the space the detokenizer puts there; `n` > 1 runs n independent
requests, choice i sampled with `seed + i` (as vLLM does); `best_of` is accepted only as 1 or n
(every candidate is returned); `suffix` is refused; unknown fields are refused (400 naming them).
A choice's finish_reason is the engine's: "stop", "length", or "abort" when the server ended
it unfinished (a stop without drain), as vLLM says.

Read top-down: the request checked and turned into choices (`complete`), submitted all or none,
then either streamed (streaming.py) or collected into one answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from .choices import Choice, cancel_unfinished, choice_text, observe, usage
from .context import Context
from .engine import SamplingParams
from .errors import ApiError, engine_error, model_failed
from .models import ServedModel
from .schemas import CompletionRequest
from .streaming import stream
from .text import TextTracker, TokenStrings

logger = logging.getLogger(__name__)


async def complete(ctx: Context, body: CompletionRequest, request: Request) -> Response:
    deadline = ctx.deadline()  # the whole request, a stream's last event included
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
        Choice(i * body.n + j, ids, replace(params, seed=None if params.seed is None else params.seed + j),
               TextTracker(served.tokenizer, stops), body.echo)
        for i, ids in enumerate(prompts) for j in range(body.n)
    ]
    meta = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()), "model": served.name}
    if body.echo and body.logprobs is not None:  # the prompt's logprobs: one forward pass per prompt
        async with ctx.time_limit(deadline):
            scored = [await ctx.run_model(served, lambda ids=ids: served.engine.score_prompt(ids, body.logprobs)) for ids in prompts]
        for c in choices:
            c.prompt_scores = scored[c.index // body.n]
    if max_tokens > 0:
        _submit_all(served, choices)
    else:  # echo with max_tokens 0: the prompt is the whole answer
        for c in choices:
            c.finish_reason = "length"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        # the background task cancels what is left even if the stream never started (client gone at once)
        return StreamingResponse(stream(ctx, served, choices, meta, body, include_usage=include_usage, deadline=deadline),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                                 background=BackgroundTask(cancel_unfinished, choices))
    try:
        async with ctx.time_limit(deadline):
            await _collect(choices, request)
    finally:
        cancel_unfinished(choices)
    failed = [c for c in choices if c.finish_reason == "error"]
    if failed:
        raise model_failed(failed[0].error)
    observe(ctx.metrics, served, choices, prompts)
    strings = TokenStrings(served.tokenizer)
    out = []
    for c in choices:
        text, logprobs = choice_text(c, served, strings, body.logprobs)
        out.append({"index": c.index, "text": text, "logprobs": logprobs, "finish_reason": c.answer_reason})
    return JSONResponse({**meta, "choices": out, "usage": usage(prompts, choices)})


# ---------------------------------------------------------------------------- the request
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


# ---------------------------------------------------------------------------- running the choices
def _submit_all(served: ServedModel, choices: list[Choice]) -> None:
    """Submit every choice, or none: a refusal cancels those already queued."""
    assert served.engine is not None
    try:
        for c in choices:
            c.handle = served.engine.submit(c.prompt_ids, c.params)
    except BaseException as exc:
        for c in choices:
            if c.handle is not None:
                c.handle.cancel()
        raise engine_error(exc) if isinstance(exc, Exception) else exc from None


async def _consume(c: Choice) -> None:
    assert c.handle is not None
    async for event in c.handle:
        c.add(event)
        if c.done:
            return


async def _collect(choices: list[Choice], request: Request) -> None:
    """Run every choice to its end; a client that leaves (or the caller's time limit) cancels them."""
    running = [asyncio.ensure_future(_consume(c)) for c in choices if c.handle is not None]
    if not running:
        return
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        gathered = asyncio.gather(*running)
        done, _ = await asyncio.wait({gathered, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if gathered not in done:
            gathered.cancel()
            logger.info("client disconnected: %d choices cancelled", len(running))
            raise ApiError(499, "The client disconnected.", code="client_disconnected")
        gathered.result()
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
