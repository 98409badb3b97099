"""A streamed completion (`stream: true`): server-sent events as OpenAI sends them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from .choices import Choice, cancel_unfinished, kept_tokens, observe, prompt_part, separator, usage
from .context import Context
from .engine import TokenEvent
from .errors import ApiError, model_failed, timed_out
from .models import ServedModel
from .schemas import CompletionRequest
from .text import TokenStrings


def sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8")


def _error_events(error: ApiError) -> list[bytes]:
    # the status line went out with the first event: a failure mid-stream is an error event
    return [sse(error.body()), sse("[DONE]")]


async def stream(ctx: Context, served: ServedModel, choices: list[Choice], meta: dict[str, Any], body: CompletionRequest,
                 *, include_usage: bool, deadline: float) -> AsyncIterator[bytes]:
    """Server-sent events: a chunk per choice as its safe text grows, a final chunk with its
    finish_reason, the usage chunk (stream_options.include_usage), then `data: [DONE]`. The
    generator being closed (client gone) or the `deadline` cancels every choice still running."""
    strings = TokenStrings(served.tokenizer)
    prompts = [c.prompt_ids for c in choices if c.index % body.n == 0]
    queue: asyncio.Queue[tuple[Choice, TokenEvent | None]] = asyncio.Queue()
    usage_none = {"usage": None} if include_usage else {}

    async def pump(c: Choice) -> None:
        try:
            assert c.handle is not None
            async for event in c.handle:
                await queue.put((c, event))
                if event.finish_reason is not None:
                    return
        finally:
            await queue.put((c, None))

    def chunk(c: Choice, text: str, logprobs: dict[str, Any] | None, finish: str | None) -> bytes:
        return sse({**meta, "choices": [{"index": c.index, "text": text, "logprobs": logprobs, "finish_reason": finish}], **usage_none})

    def prompt_chunk(c: Choice) -> bytes:
        text, offsets = prompt_part(c, served)
        c.prompt_text = text
        return chunk(c, text, None if body.logprobs is None else c.prompt_logprobs(offsets, strings, body.logprobs), None)

    def new_text(c: Choice, *, final: bool = False) -> str:
        text = c.tracker.take(final=final)
        if c.echo and c.separator is None and text:  # the space between the echoed prompt and the completion
            c.separator = separator(served, c.prompt_ids, c.tokens, c.prompt_text, c.tracker.sent)
            text = c.separator + text
        return text

    def new_logprobs(c: Choice, upto: int) -> dict[str, Any] | None:
        if body.logprobs is None:
            return None
        start, c.sent_tokens = c.sent_tokens, upto
        shift = len(c.prompt_text) + len(c.separator or "") if c.echo else 0
        return c.completion_logprobs(start, upto, strings, body.logprobs, shift=shift)

    def last_chunk(c: Choice, upto: int) -> bytes:
        open_choices.discard(c.index)
        return chunk(c, new_text(c, final=True), new_logprobs(c, upto), c.answer_reason)

    tasks = [asyncio.ensure_future(pump(c)) for c in choices if c.handle is not None]
    open_choices = {c.index for c in choices if c.handle is not None}
    loop = asyncio.get_running_loop()
    try:
        for c in choices:
            if c.echo:
                yield prompt_chunk(c)
            if c.handle is None:  # max_tokens 0 with echo: the prompt is the whole answer
                yield chunk(c, "", None, c.answer_reason)
        while open_choices:
            try:
                c, event = await asyncio.wait_for(queue.get(), timeout=max(deadline - loop.time(), 0.001))
            except TimeoutError:
                for part in _error_events(timed_out(ctx.request_timeout)):
                    yield part
                return
            if c.index not in open_choices:
                continue
            if event is None:  # the pump stopped without a final event
                yield last_chunk(c, len(c.tokens))
                continue
            c.add(event)
            if c.finish_reason == "error":
                for part in _error_events(model_failed(c.error)):
                    yield part
                return
            if c.done:
                yield last_chunk(c, kept_tokens(c, len(c.tracker.final_text())))
                continue
            text = new_text(c)
            if text or body.logprobs is not None:
                yield chunk(c, text, new_logprobs(c, len(c.tokens)), None)
        observe(ctx.metrics, served, choices, prompts)
        if include_usage:
            yield sse({**meta, "choices": [], "usage": usage(prompts, choices)})
        yield sse("[DONE]")
    finally:
        cancel_unfinished(choices)
        for task in tasks:
            task.cancel()
