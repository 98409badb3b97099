"""The serving engine: one scheduler thread owns the model, and requests from many clients share
its decode steps.

Why: a server that calls `generate` per request (what a user writes today) runs one request per
forward pass, or batches them statically so that every request waits for the longest. Here the
rows of one static decode step (generation.static.StaticDecoder, captured as a CUDA graph on a
GPU, eager on a CPU) are shared by whatever requests are running: a row whose request ends takes
the next waiting request at once (prefilled into that row's slot of the static cache, as
model/continuous.py does for a batch job), and every row carries its own sampling options, its
own random generator and its own stream of events.

What a request gets:
- greedy (temperature 0, no penalties): the tokens `model.generate(ids, max_new_tokens=N,
  do_sample=False)` gives it alone (each row attends only to its own keys);
- sampled with a seed: the same tokens whatever else runs (a torch.Generator per request, and
  the per-row processing below reads nothing of the other rows).
Both up to float rounding: a row's logits depend, in the last bits (~1e-6 relative), on how many
rows its prefill and its steps ran with (the kernels block their sums by batch size), so two
candidates closer than that may swap; exact ties aside, tokens are equal.

Rows: busy rows are kept first (a row freed in the middle takes the last busy row, keys and all:
`_compact`), and a step runs only the row bucket holding them (`StaticDecoder.rows_for`): on a
CPU a step's cost grows with its rows, so one client on a server sized for 32 pays for one row,
not 32. A captured step on a GPU runs all its rows (its shapes are fixed) and costs about the same
with few rows as with many.
- its scores pass through `row_processors` (order written there), then argmax or a draw; the
  logprobs reported are the log-softmax of those processed scores: the distribution the token
  was taken from (temperature, top-k and top-p included).

Threads: `submit`, `cancel` and `run_exclusive` are called on an asyncio loop's thread; the
scheduler thread does all model work and hands events back with `loop.call_soon_threadsafe`.
Work that needs the model alone (task endpoints, embeddings, prompt scoring, beam search) runs on
the scheduler thread between two decode steps (`run_exclusive`); the decoder is the engine's
own, so that work cannot overwrite the rows in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from biogpt.model.continuous import build_decoder, eos_ids, prefill_into
from biogpt.model.generation.processors import (
    LogitsProcessor,
    apply_processors,
    min_new_tokens,
    no_repeat_ngram,
    repetition_penalty,
    temperature_warper,
    top_k_warper,
    top_p_warper,
)
from biogpt.model.generation.static import GRAPH_LENGTH_STEP, StaticDecoder, decoders_of

logger = logging.getLogger("biogpt.serve")

T = TypeVar("T")

# Padded prompt tokens of one prefill pass, by default. On a GPU the bound is activation memory.
# On a CPU a prompt pass is compute-bound from a few hundred tokens on: batching more prompts
# into it saves nothing per prompt and their padding is paid in full (BENCHMARKS.md, Serving),
# so abstracts go alone and only short prompts share a pass.
PREFILL_TOKENS_GPU = 4096
PREFILL_TOKENS_CPU = 512
# Below this a temperature is greedy (as vLLM): dividing by it would overflow the scores.
MIN_TEMPERATURE = 1e-5


# ---------------------------------------------------------------------------- the public types
@dataclass(frozen=True)
class SamplingParams:
    """One request's decoding options (OpenAI's names where it has them)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 (< MIN_TEMPERATURE) → greedy (argmax, exactly `biogpt generate`'s tokens)
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None  # per-request generator: reproducible whatever else runs
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None  # None: none; N: the chosen token's logprob + top-N alternatives
    num_beams: int = 1  # > 1: run alone through model.generate (not batched)

    @property
    def sampling(self) -> bool:
        """False: greedy (top_p, top_k and seed have no effect then)."""
        return self.temperature >= MIN_TEMPERATURE


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, or the end of a request. The final event of a "stop" carries the
    token that stopped it (an end token or one of stop_token_ids): whether to show it is the
    caller's choice (OpenAI leaves it out of the text)."""

    token_id: int | None  # None only on a final event without a token (abort/error)
    logprob: float | None
    top_logprobs: dict[int, float] | None  # finite values only: tokens top-k/top-p removed are left out
    finish_reason: str | None  # None while running; "stop" | "length" | "abort" | "error"
    error: str | None = None


class QueueFull(Exception):
    """The engine's queue holds max_queue requests already: try again later (HTTP 429)."""


class EngineStopped(Exception):
    """The engine is draining or stopped and accepts no new work (HTTP 503)."""


# ---------------------------------------------------------------------------- per-row processing
def logit_bias_processor(bias: Sequence[tuple[int, float]]) -> LogitsProcessor:
    """OpenAI's logit_bias: added to the model's scores of those tokens."""
    ids = [int(t) for t, _ in bias]
    values = [float(b) for _, b in bias]

    def apply(ids_seen: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        add = torch.zeros_like(scores)
        add[:, ids] = torch.tensor(values, dtype=scores.dtype, device=scores.device)
        return scores + add

    return apply


def openai_penalties(frequency: float, presence: float, prompt_length: int) -> LogitsProcessor:
    """OpenAI's frequency and presence penalties, over the generated tokens only (not the prompt):
    score -= count × frequency + (count > 0) × presence."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = ids[:, prompt_length:]
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - counts * frequency - (counts > 0).to(scores.dtype) * presence

    return apply


def row_processors(params: SamplingParams, *, prompt_length: int, stop_ids: Sequence[int]) -> list[LogitsProcessor]:
    """One row's logits processors, each (ids (1, L), scores (1, V)) -> scores, in this order:
    1. logit_bias (added to the model's scores, as OpenAI describes it);
    2. repetition_penalty (transformers', over prompt and output);
    3. frequency and presence penalties (OpenAI's, over the output);
    4. no_repeat_ngram_size (transformers', over prompt and output);
    5. min_tokens: the end tokens and stop ids banned until that many tokens were generated;
    6. when sampling (temperature >= MIN_TEMPERATURE): temperature, top-k, top-p (transformers' warpers and order).
    Steps 2, 4, 5 and 6 are generation.processors' own, so a request with only those options gets
    what `generate` computes with them. Empty for a plain greedy request."""
    procs: list[LogitsProcessor] = []
    if params.logit_bias:
        procs.append(logit_bias_processor(params.logit_bias))
    if params.repetition_penalty != 1.0:
        procs.append(repetition_penalty(float(params.repetition_penalty), None))
    if params.frequency_penalty or params.presence_penalty:
        procs.append(openai_penalties(float(params.frequency_penalty), float(params.presence_penalty), prompt_length))
    if params.no_repeat_ngram_size:
        procs.append(no_repeat_ngram(int(params.no_repeat_ngram_size)))
    if params.min_tokens and stop_ids:
        procs.append(min_new_tokens(prompt_length, int(params.min_tokens), list(stop_ids)))
    if params.sampling:
        if params.temperature != 1.0:
            procs.append(temperature_warper(float(params.temperature)))
        if params.top_k:
            procs.append(top_k_warper(int(params.top_k)))
        if params.top_p < 1.0:
            procs.append(top_p_warper(float(params.top_p)))
    return procs


def token_logprobs(scores: torch.Tensor, token: int, top: int) -> tuple[float, dict[int, float]]:
    """The chosen token's log-probability under `scores` (1, V) and the `top` most likely tokens'
    (those with a finite log-probability)."""
    logp = F.log_softmax(scores[0].float(), -1)
    alternatives: dict[int, float] = {}
    if top:
        values, ids = torch.topk(logp, min(top, logp.shape[-1]))
        alternatives = {i: v for i, v in zip(ids.tolist(), values.tolist()) if math.isfinite(v)}
    return float(logp[token]), alternatives


def check_params(params: SamplingParams, *, vocab_size: int) -> None:
    """ValueError naming the first option out of its range."""

    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"{name} {why}, got {getattr(params, name)!r}")

    if params.max_tokens < 1:
        raise bad("max_tokens", "must be at least 1 (score a prompt with Engine.score_prompt)")
    if not (params.temperature >= 0 and math.isfinite(params.temperature)):
        raise bad("temperature", "must be a finite number >= 0")
    if not 0 < params.top_p <= 1:
        raise bad("top_p", "must be in (0, 1]")
    if params.top_k < 0:
        raise bad("top_k", "must be >= 0 (0: off)")
    if params.min_tokens < 0:
        raise bad("min_tokens", "must be >= 0")
    if not params.repetition_penalty > 0:
        raise bad("repetition_penalty", "must be > 0")
    if params.no_repeat_ngram_size < 0:
        raise bad("no_repeat_ngram_size", "must be >= 0")
    if params.logprobs is not None and not 0 <= params.logprobs <= vocab_size:
        raise bad("logprobs", f"must be between 0 and the vocabulary size ({vocab_size})")
    if params.num_beams < 1:
        raise bad("num_beams", "must be at least 1")
    for name, ids in (("stop_token_ids", params.stop_token_ids), ("logit_bias", [t for t, _ in params.logit_bias])):
        if any(not 0 <= int(t) < vocab_size for t in ids):
            raise bad(name, f"names token ids outside the vocabulary (0..{vocab_size - 1})")
    if any(not math.isfinite(b) for _, b in params.logit_bias):
        raise bad("logit_bias", "must hold finite numbers")
    if params.num_beams > 1:
        # beam search is deterministic here; what it cannot honour is refused, not ignored
        unsupported = {
            "temperature": params.temperature not in (0.0, 1.0),
            "top_p": params.top_p != 1.0,
            "top_k": params.top_k != 0,
            "seed": params.seed is not None,
            "frequency_penalty": params.frequency_penalty != 0.0,
            "presence_penalty": params.presence_penalty != 0.0,
            "logit_bias": bool(params.logit_bias),
            "logprobs": params.logprobs is not None,
        }
        for name, given in unsupported.items():
            if given:
                raise bad(name, "is not supported with num_beams > 1")


# ---------------------------------------------------------------------------- requests
class _Request:
    """A request as the engine sees it: where its events go and what decoding it has reached."""

    def __init__(self, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop) -> None:
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.prompt, self.params, self.loop = prompt, params, loop
        self.events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self.submitted = time.perf_counter()
        self.first_token_seconds: float | None = None
        self.total_seconds: float | None = None
        self.cancelled = False
        self.finished = False  # a final event was sent (set on the thread that sent it)
        self.tokens: list[int] = []

    def send(self, event: TokenEvent) -> None:
        """Hand `event` to the request's loop; a loop that is gone cancels the request."""
        now = time.perf_counter() - self.submitted
        if event.token_id is not None and self.first_token_seconds is None:
            self.first_token_seconds = now
        if event.finish_reason is not None:
            self.total_seconds = now
            self.finished = True
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop was closed: nobody listens any more
            self.cancelled = True

    def end(self, reason: str, error: str | None = None) -> None:
        if not self.finished:
            self.send(TokenEvent(None, None, None, reason, error))


class RequestHandle:
    """What `Engine.submit` returns: iterate it (async) for the request's events, in order, the
    last one with a finish_reason; `cancel()` frees its row within one step."""

    def __init__(self, engine: "Engine", request: _Request) -> None:
        self._engine, self._request = engine, request
        self.request_id = request.id
        self.prompt_tokens = len(request.prompt)

    @property
    def first_token_seconds(self) -> float | None:
        return self._request.first_token_seconds

    @property
    def total_seconds(self) -> float | None:
        return self._request.total_seconds

    def cancel(self) -> None:
        self._engine._cancel(self._request)

    async def _events(self) -> AsyncIterator[TokenEvent]:
        done = False
        try:
            while True:
                event = await self._request.events.get()
                yield event
                if event.finish_reason is not None:
                    done = True
                    return
        finally:
            if not done:  # the consumer stopped listening (client gone, timeout)
                self.cancel()

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._events()


class _Job:
    """A function to run alone with the model (`run_exclusive`), and where its result goes; a
    beam-search request's job names the request (whose events say how it ended)."""

    def __init__(
        self,
        fn: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future | None,
        request: _Request | None = None,
    ) -> None:
        self.fn, self.loop, self.future, self.request = fn, loop, future, request

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        future = self.future
        if future is None:
            return

        def set_it() -> None:
            if future.done():  # the awaiting coroutine was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(set_it)
        except RuntimeError:  # the loop was closed
            pass


@dataclass
class _Row:
    """A request in a decoder row: its processors, end tokens, generator and tokens so far."""

    request: _Request
    procs: list[LogitsProcessor]
    stops: frozenset[int]  # tokens that end it ("stop")
    generator: torch.Generator | None  # sampling only
    ids: torch.Tensor  # (1, prompt + max_tokens): prompt and output, for the processors
    length: int  # filled length of `ids` (kept up only when the row has processors)
    column: int  # the cache column this row writes at its next step


def _prefill_batches(requests: list[_Request], *, capacity: int, budget: int) -> list[list[_Request]]:
    """Split requests (sorted by prompt length) into left-padded prefill batches: at most `budget`
    padded tokens each, and no request pushed past the cache by its batch's padding (its output
    is written after the batch's longest prompt)."""
    batches: list[list[_Request]] = []
    for r in sorted(requests, key=lambda r: len(r.prompt)):
        batch = batches[-1] if batches else None
        if batch:
            width = max(len(r.prompt), *(len(q.prompt) for q in batch))
            longest_output = max(r.params.max_tokens, *(q.params.max_tokens for q in batch))
            if width * (len(batch) + 1) <= budget and width + longest_output <= capacity:
                batch.append(r)
                continue
        batches.append([r])
    return batches


# ---------------------------------------------------------------------------- the engine
class Engine:
    """The scheduler of one causal LM (see the module docstring). `max_rows` requests decode
    together; `max_queue` more may wait (requests and `run_exclusive` jobs), beyond that
    `submit` raises QueueFull. End tokens: `eos_token_id`, else the model's config's.
    `cuda_graph`: None captures the step on a GPU and runs it eagerly on a CPU (as generate)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        max_rows: int = 8,
        max_queue: int = 256,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        cuda_graph: bool | None = None,
        max_prefill_tokens: int | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        config = model.config
        self.model, self.max_rows, self.max_queue = model, max_rows, max_queue
        self.max_positions: int = config.max_position_embeddings
        self.vocab_size: int = config.vocab_size
        self.eos = eos_ids(eos_token_id if eos_token_id is not None else config.eos_token_id)
        self.pad = pad_token_id if pad_token_id is not None else (config.pad_token_id if config.pad_token_id is not None else 0)
        self.cuda_graph = cuda_graph
        cpu = model.device.type == "cpu"
        self.max_prefill_tokens = max_prefill_tokens or (PREFILL_TOKENS_CPU if cpu else PREFILL_TOKENS_GPU)
        self.capacity = -(-self.max_positions // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Request | _Job] = collections.deque()
        self._rows: list[_Row | None] = [None] * max_rows
        self._accepting = True
        self._abort = False  # shutdown without drain (or a drain past its timeout)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._dec: StaticDecoder | None = None
        self._scores: torch.Tensor | None = None  # (rows, V) float32: each row's next scores

    # ------------------------------------------------------------------ the caller's side
    def start(self) -> None:
        """Start the scheduler thread; returns once the decoder is built (captured on a GPU)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="biogpt-serve-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        """Queue a completion; call it on the asyncio loop that will read the events. ValueError
        for an empty prompt, a token id outside the vocabulary, options out of range, or a
        prompt + max_tokens beyond the model's positions; QueueFull; EngineStopped."""
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("the prompt is empty")
        if any(not 0 <= t < self.vocab_size for t in prompt):
            raise ValueError(f"the prompt has token ids outside the vocabulary (0..{self.vocab_size - 1})")
        check_params(params, vocab_size=self.vocab_size)
        if len(prompt) + params.max_tokens > self.max_positions:
            raise ValueError(
                f"the prompt ({len(prompt)} tokens) plus max_tokens ({params.max_tokens}) exceeds the model's "
                f"{self.max_positions} positions"
            )
        loop = asyncio.get_running_loop()
        request = _Request(prompt, params, loop)
        # beam search runs alone through generate, as a job between two steps
        self._enqueue(self._beam_job(request, loop) if params.num_beams > 1 else request)
        return RequestHandle(self, request)

    async def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on the scheduler thread between two decode steps, alone with the model; its
        result or its exception comes back here. It waits in the queue (QueueFull, EngineStopped
        as submit). `fn` runs in the thread's default grad mode: wrap inference in
        torch.inference_mode() as anywhere."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._enqueue(job)
        return await job.future

    def score_prompt(self, prompt_ids: list[int], top: int | None) -> list[tuple[float | None, dict[int, float] | None]]:
        """Per prompt token, its log-probability given the tokens before it (None for the first)
        and, with `top`, the `top` most likely tokens at that place: one forward pass of the
        model. Call it inside run_exclusive."""
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("the prompt is empty")
        if len(prompt) > self.max_positions:
            raise ValueError(f"the prompt ({len(prompt)} tokens) exceeds the model's {self.max_positions} positions")
        if any(not 0 <= t < self.vocab_size for t in prompt):
            raise ValueError(f"the prompt has token ids outside the vocabulary (0..{self.vocab_size - 1})")
        with torch.inference_mode():
            ids = torch.tensor([prompt], device=self.model.device)
            logp = F.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)  # (P, V)
            chosen = logp[:-1].gather(1, ids[0, 1:, None])[:, 0].tolist()
            alternatives: list[dict[int, float] | None] = [None] * (len(prompt) - 1)
            if top:
                values, which = torch.topk(logp[:-1], min(top, logp.shape[-1]))
                alternatives = [dict(zip(w, v)) for w, v in zip(which.tolist(), values.tolist())]
            elif top == 0:
                alternatives = [{} for _ in chosen]
        return [(None, None)] + [(c, a) for c, a in zip(chosen, alternatives)]

    @property
    def accepting(self) -> bool:
        """False once shutdown began (health checks answer 503 then)."""
        return self._accepting

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "queue_depth": len(self._waiting),
                "rows_busy": sum(r is not None for r in self._rows),
                "max_rows": self.max_rows,
            }

    def shutdown(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting (submit raises EngineStopped). drain=True finishes every accepted
        request (queued ones too) first; what is left after `timeout` seconds, or everything
        with drain=False, ends with "abort" (a waiting run_exclusive gets EngineStopped). It
        blocks until then: from a coroutine, `await asyncio.to_thread(engine.shutdown)`, so that
        the draining requests' events keep reaching their clients meanwhile."""
        with self._cond:
            self._accepting = False
            self._abort = self._abort or not drain
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            self._abort_all()
            return
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("drain did not finish in %s s; aborting what is left", timeout)
            with self._cond:
                self._abort = True
                self._cond.notify_all()
            thread.join()

    def _enqueue(self, item: _Request | _Job) -> None:
        with self._cond:
            if not self._accepting:
                raise EngineStopped("the engine is shutting down and accepts no new requests")
            if self._thread is None:
                raise EngineStopped("the engine is not started")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting already (max_queue {self.max_queue})")
            self._waiting.append(item)
            self._cond.notify_all()

    def _cancel(self, request: _Request) -> None:
        with self._cond:
            request.cancelled = True
            queued = [item for item in self._waiting if item is request or (isinstance(item, _Job) and item.request is request)]
            for item in queued:  # never started: answered now
                self._waiting.remove(item)
                request.end("abort")
            self._cond.notify_all()

    # ------------------------------------------------------------------ the scheduler thread
    def _run(self) -> None:
        try:
            self._build()
        except BaseException as exc:  # reported by start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                with self._cond:
                    while not (self._waiting or self._busy() or not self._accepting):
                        self._cond.wait()
                    if self._abort or (not self._accepting and not self._waiting and not self._busy()):
                        break
                    job, admitted = self._take()
                if job is not None:
                    self._run_job(job)
                self._drop_cancelled()
                if admitted:
                    self._admit(admitted)
                if self._busy():
                    self._step()
        except BaseException:  # a bug of the engine itself: nobody may be left waiting
            logger.exception("the serving engine stopped")
            raise
        finally:
            with self._cond:
                self._accepting = False
            self._abort_all()

    def _build(self) -> None:
        model = self.model
        device = model.device
        with torch.inference_mode():
            dec = build_decoder(model, device, self.max_rows, self.capacity, self.cuda_graph)
            # The engine's decoder is its own: a generate() between two steps (run_exclusive)
            # must build another, not reset this one's rows in flight.
            store = decoders_of(model)
            for key in [k for k, d in store.items() if d is dec]:
                del store[key]
            # Empty rows write at column 0 and stay there (_step freezes them) until filled.
            dec.write_pos.zero_()
            dec.positions.zero_()
            dec.key_mask.fill_(True)
            dec.tokens.fill_(self.pad)
            self._scores = torch.zeros(dec.rows, self.vocab_size, dtype=torch.float32, device=device)
        self._dec = dec
        logger.info("serving engine ready: %d rows x %d positions on %s", self.max_rows, self.capacity, device)

    def _busy(self) -> bool:
        return any(r is not None for r in self._rows)

    def _take(self) -> tuple[_Job | None, list[_Request]]:
        """From the head of the queue, in order: at most one exclusive job (so decoding goes on
        between jobs) and as many requests as rows are free. Called holding the lock."""
        job: _Job | None = None
        admitted: list[_Request] = []
        free = sum(r is None for r in self._rows)
        while self._waiting:
            head = self._waiting[0]
            if isinstance(head, _Job):
                if job is not None:
                    break
                job = self._waiting.popleft()
            elif len(admitted) < free:
                admitted.append(self._waiting.popleft())
            else:
                break
        return job, admitted

    def _run_job(self, job: _Job) -> None:
        if job.future is not None and job.future.cancelled():  # nobody awaits it any more
            return
        try:
            result = job.fn()
        except Exception as exc:
            job.settle(error=exc)
        else:
            job.settle(result)

    def _beam_job(self, request: _Request, loop: asyncio.AbstractEventLoop) -> _Job:
        """Beam search for one request through model.generate, alone; its tokens are sent as
        events when the search ends."""

        def run() -> None:
            if request.cancelled:
                request.end("abort")
                return
            p = request.params
            stops = [] if p.ignore_eos else list(self.eos)
            stops += [t for t in p.stop_token_ids if t not in stops]
            try:
                out = self.model.generate(
                    torch.tensor([request.prompt], device=self.model.device),
                    num_beams=p.num_beams,
                    do_sample=False,
                    max_new_tokens=p.max_tokens,
                    min_new_tokens=p.min_tokens or None,
                    repetition_penalty=p.repetition_penalty,
                    no_repeat_ngram_size=p.no_repeat_ngram_size,
                    eos_token_id=stops,
                    pad_token_id=self.pad,
                    cuda_graph=self.cuda_graph,
                )
            except Exception as exc:
                logger.exception("request %s failed", request.id)
                request.end("error", f"{type(exc).__name__}: {exc}")
                return
            tokens = out[0, len(request.prompt) :].tolist()
            for i, token in enumerate(tokens):
                last = token in stops or i == len(tokens) - 1
                reason = ("stop" if token in stops else "length") if last else None
                request.send(TokenEvent(token, None, None, reason))
                if last:
                    return
            request.end("length")

        return _Job(run, loop, None, request)

    def _drop_cancelled(self) -> None:
        for i, row in enumerate(self._rows):
            if row is not None and row.request.cancelled:
                self._rows[i] = None
                row.request.end("abort")

    def _admit(self, requests: list[_Request]) -> None:
        """Prefill `requests` into free rows (their first scores come from it). A batch whose
        prefill fails is retried one request at a time, so that only the culprit fails."""
        free = [i for i, r in enumerate(self._rows) if r is None]
        pending = [r for r in requests if not r.cancelled]
        for r in requests:
            if r.cancelled:
                r.end("abort")
        for batch in _prefill_batches(pending, capacity=self.capacity, budget=self.max_prefill_tokens):
            slots, free = free[: len(batch)], free[len(batch) :]
            try:
                self._prefill(batch, slots)
            except Exception as exc:
                logger.debug("a batched prefill failed (%s); prefilling one by one", exc)
                for request, slot in zip(batch, slots):
                    try:
                        self._prefill([request], [slot])
                    except Exception as alone:  # a failed request's row stays free
                        self._rows[slot] = None
                        self._fail(request, alone)

    def _prefill(self, batch: list[_Request], slots: list[int]) -> None:
        assert self._dec is not None and self._scores is not None
        device = self._dec.tokens.device
        with torch.inference_mode():
            width = prefill_into(self.model, self._dec, slots, [r.prompt for r in batch], self.pad, self._scores)
            for slot, request in zip(slots, batch):
                p = request.params
                stops = frozenset(([] if p.ignore_eos else self.eos) + list(p.stop_token_ids))
                generator = None
                if p.sampling:
                    generator = torch.Generator(device=device)
                    if p.seed is None:
                        generator.seed()
                    else:
                        generator.manual_seed(p.seed)
                ids = torch.full((1, len(request.prompt) + p.max_tokens), self.pad, dtype=torch.long, device=device)
                ids[0, : len(request.prompt)] = torch.tensor(request.prompt, device=device)
                procs = row_processors(p, prompt_length=len(request.prompt), stop_ids=sorted(stops))
                self._rows[slot] = _Row(request, procs, stops, generator, ids, len(request.prompt), width)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        logger.error("request %s failed: %s: %s", request.id, type(exc).__name__, exc, exc_info=exc)
        request.end("error", f"{type(exc).__name__}: {exc}")

    def _choose(self, row: _Row, scores: torch.Tensor, greedy_token: int) -> TokenEvent:
        """The row's next token from its scores (1, V), as an event (finish_reason set if it ends)."""
        p = row.request.params
        if row.procs:
            scores = apply_processors(row.procs, row.ids[:, : row.length], scores)
        if row.generator is not None:
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=row.generator))
        elif row.procs:
            token = int(scores.argmax(-1))
        else:
            token = greedy_token
        logprob, top = (None, None) if p.logprobs is None else token_logprobs(scores, token, p.logprobs)
        if row.procs:  # only the processors read the sequence
            row.ids[0, row.length] = token
            row.length += 1
        row.request.tokens.append(token)
        reason = None
        if token in row.stops:
            reason = "stop"
        elif len(row.request.tokens) >= p.max_tokens:
            reason = "length"
        return TokenEvent(token, logprob, top, reason)

    def _step(self) -> None:
        """Choose every busy row's next token, send it, then run one decode step on them."""
        dec, scores = self._dec, self._scores
        assert dec is not None and scores is not None
        with torch.inference_mode():
            busy_end = 1 + max((i for i, row in enumerate(self._rows) if row is not None), default=-1)
            greedy = scores[:busy_end].argmax(-1).tolist()  # one host synchronisation for every greedy row
            tokens = [self.pad] * dec.rows
            for i, row in enumerate(self._rows[:busy_end]):
                if row is None:
                    continue
                # a row is freed before its final event is sent: whoever reads that event sees
                # the row free (stats, the next request)
                try:
                    event = self._choose(row, scores[i : i + 1], greedy[i])
                except Exception as exc:
                    self._rows[i] = None
                    self._fail(row.request, exc)
                    continue
                if event.finish_reason is not None or row.request.cancelled:
                    self._rows[i] = None
                row.request.send(event)
                if self._rows[i] is None:
                    row.request.end("abort")  # cancelled meanwhile (no-op after a final event)
                else:
                    tokens[i] = event.token_id  # type: ignore[assignment]
            self._compact(tokens)
            live = [i for i, row in enumerate(self._rows) if row is not None]
            if not live:
                return
            n = dec.rows_for(len(live))  # live == range(len(live)) after _compact
            # rows without a request repeat their column and position instead of advancing: what
            # they compute is never read, and they never run past the cache
            idle = [int(r is None) for r in self._rows[:n]] + [1] * (n - min(n, self.max_rows))  # the bucket's spare rows too
            frozen = torch.tensor(idle, device=dec.tokens.device)
            span = max(self._rows[i].column for i in live) + 1  # type: ignore[union-attr]
            dec.tokens.copy_(torch.tensor(tokens, device=dec.tokens.device))
            try:
                logits = dec.run_step(span, rows=n)
            except Exception as exc:  # not one request's fault: every row in it fails
                failed = [self._rows[i] for i in live]
                for i in live:
                    self._rows[i] = None
                for row in failed:
                    self._fail(row.request, exc)  # type: ignore[union-attr]
                return
            scores[:n].copy_(logits[:n])
            dec.write_pos[:n] -= frozen
            dec.positions[:n] -= frozen
            for i in live:
                self._rows[i].column += 1  # type: ignore[union-attr]

    def _compact(self, tokens: list[int]) -> None:
        """Move the last busy rows into the free rows before them, so that the busy rows are the
        first ones and a step can run only those. A move copies the row's keys and values written
        so far (its columns before `column`), its key mask, positions and next token; its scores
        were consumed by this step's choice."""
        dec = self._dec
        assert dec is not None
        free = [i for i, row in enumerate(self._rows) if row is None]
        while free:
            last = max((i for i, row in enumerate(self._rows) if row is not None), default=-1)
            hole = free[0]
            if last < hole:
                return
            free.pop(0)
            row = self._rows[last]
            assert row is not None
            kv = dec.cache.kv
            kv[:, :, hole, :, : row.column] = kv[:, :, last, :, : row.column]
            dec.key_mask[hole] = dec.key_mask[last]
            dec.write_pos[hole] = dec.write_pos[last]
            dec.positions[hole] = dec.positions[last]
            tokens[hole] = tokens[last]
            self._rows[hole], self._rows[last] = row, None
            free.append(last)
            free.sort()

    def _abort_all(self) -> None:
        """End everything still queued or running (the engine stops)."""
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for item in waiting:
            if isinstance(item, _Job) and item.request is not None:
                item.request.end("abort")
            elif isinstance(item, _Job):
                item.settle(error=EngineStopped("the engine stopped before this ran"))
            else:
                item.end("abort")
        for i, row in enumerate(self._rows):
            if row is not None:
                self._rows[i] = None
                row.request.end("abort")
