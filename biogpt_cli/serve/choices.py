"""A completion's choices: one prompt's n-th sample as its tokens arrive, and what the answer
says of it — its text (the echoed prompt joined), its logprobs object, its finish_reason, the
usage. Shared by the plain answer (completions.py) and the stream (streaming.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .engine import RequestHandle, SamplingParams, TokenEvent
from .metrics import Metrics
from .models import ServedModel
from .text import TextTracker, TokenStrings

Scores = Sequence[tuple[float | None, dict[int, float] | None]]  # per token: its logprob, the top alternatives


@dataclass
class Choice:
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
    # the engine's end ("stop", "length", "abort", "error"), or "stop" at a stop string
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

    @property
    def answer_reason(self) -> str:
        """The finish_reason the client reads: the engine's own, as vLLM reports it ("abort":
        the engine stopped without finishing it); a choice whose events ended without a reason
        was cut short as well."""
        return self.finish_reason or "abort"

    def completion_logprobs(self, start: int, end: int, strings: TokenStrings, top: int, *, shift: int = 0) -> dict[str, Any]:
        """The logprobs object of tokens start..end, their text offsets moved by `shift`."""
        scores = list(zip(self.token_logprobs[start:end], self.top_logprobs[start:end]))
        return logprobs_object(self.tokens[start:end], [o + shift for o in self.tracker.offsets[start:end]], scores, strings, top)

    def prompt_logprobs(self, offsets: Sequence[int], strings: TokenStrings, top: int) -> dict[str, Any]:
        """The logprobs object of the echoed prompt (None scores when it was not scored)."""
        scores = self.prompt_scores or [(None, None)] * len(self.prompt_ids)
        return logprobs_object(self.prompt_ids, offsets, scores, strings, top)


def cancel_unfinished(choices: list[Choice]) -> None:
    for c in choices:
        if c.handle is not None and not c.done:
            c.handle.cancel()


def usage(prompts: list[list[int]], choices: list[Choice]) -> dict[str, int]:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(len(c.tokens) for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def observe(metrics: Metrics, served: ServedModel, choices: list[Choice], prompts: list[list[int]]) -> None:
    first = [c.handle.first_token_seconds for c in choices if c.handle is not None and c.handle.first_token_seconds is not None]
    metrics.observe_generation(served.name, prompt_tokens=sum(len(p) for p in prompts),
                               completion_tokens=sum(len(c.tokens) for c in choices),
                               first_token_seconds=min(first) if first else None)


# ---------------------------------------------------------------------------- text and logprobs
def prompt_part(c: Choice, served: ServedModel) -> tuple[str, list[int]]:
    """The echoed prompt's text and each prompt token's offset in it."""
    tracker = TextTracker(served.tokenizer)
    for t in c.prompt_ids:
        tracker.add(t)
    return tracker.final_text(), tracker.offsets


def logprobs_object(ids: Sequence[int], offsets: Sequence[int], scores: Scores, strings: TokenStrings, top: int) -> dict[str, Any]:
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


def choice_text(c: Choice, served: ServedModel, strings: TokenStrings, top: int | None) -> tuple[str, dict[str, Any] | None]:
    """The final text of a choice (echoed prompt + completion) and its logprobs object."""
    text = c.tracker.final_text()
    kept = kept_tokens(c, len(text))
    if not c.echo:
        return text, None if top is None else c.completion_logprobs(0, kept, strings, top)
    prompt_text, prompt_offsets = prompt_part(c, served)
    sep = separator(served, c.prompt_ids, c.tokens[:kept], prompt_text, text)
    if top is None:
        return prompt_text + sep + text, None
    prompt, completion = c.prompt_logprobs(prompt_offsets, strings, top), c.completion_logprobs(
        0, kept, strings, top, shift=len(prompt_text) + len(sep))
    return prompt_text + sep + text, {k: prompt[k] + completion[k] for k in prompt}


def kept_tokens(c: Choice, text_length: int) -> int:
    """Tokens that belong to the returned text: all of them, or after a stop string, those
    that start before the cut (the token holding the stop string's start is the last)."""
    if not c.tracker.stopped:
        return len(c.tokens)
    return max(1, sum(1 for o in c.tracker.offsets if o < text_length)) if c.tokens else 0


def separator(served: ServedModel, prompt_ids: list[int], tokens: list[int], prompt_text: str, text: str) -> str:
    """What joins an echoed prompt and its completion: the space the detokenizer puts there
    (a completion's text starts with its first word, as `biogpt generate` prints it)."""
    if not prompt_text or not text:
        return ""
    joined = served.tokenizer.decode(prompt_ids + tokens, skip_special_tokens=True)
    return " " if joined.startswith(prompt_text + " ") else ""
