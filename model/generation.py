"""The decoding engine: plain functions over a preallocated KV cache.

    prefill(prompt) -> logits of the last position
    decode_step(one token per row) -> logits
    search strategy: greedy / sample (one loop) or beam search, each step passing the
    logits through the logits processors.

Semantics are transformers' `generate` (same keyword names and defaults, same processor order,
same beam-search bookkeeping), so the same weights give the same tokens. Speed comes from the
structure: the cache and the output buffer are allocated once per call, a beam-search prompt
is prefilled once per input (not once per beam), and the greedy/sampling fast path checks for
end-of-sequence on the host only every few steps; hooks (prefix_allowed_tokens_fn, a streamer)
take the path that synchronises each step.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .errors import InvalidOptionError
from .kv_cache import KVCache
from .modeling import build_attention_mask, in_place_residuals

logger = logging.getLogger(__name__)

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids (N, L), scores (N, V)) -> scores
EOS_CHECK_EVERY = 8  # fast path: host-side "all finished?" check period, in steps
DECODE_KERNELS = ("auto", "torch", "triton")


class Streamer(Protocol):
    """transformers' streamer interface: `put` gets the prompt ids first, then each new token."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


@dataclass
class GenerationConfig:
    """transformers' generation options, names and defaults."""

    max_new_tokens: int | None = None
    max_length: int | None = None  # prompt + new tokens; 20 when neither is given (as transformers)
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    bad_words_ids: list[list[int]] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # biogpt-cli's own: decode steps as one captured CUDA graph over a static cache. None = on
    # for CUDA inputs in eval mode; True on a CPU runs the same static-shape step eagerly (tests).
    cuda_graph: bool | None = None
    # biogpt-cli's own: run the captured step through torch.compile (True: the whole step,
    # "layers": the decoder layer, compiled once for all layers; see StaticDecoder). Opt-in: the
    # first call of each (rows, length) bucket compiles (25-30 s on an H100), so it pays for
    # long runs, not for a one-off prompt.
    compile_step: bool | str = False
    # biogpt-cli's own: the kernels of a captured step of at most AUTO_MAX_ROWS rows (see
    # StaticDecoder). "auto": measure the fused Triton layer (model/fused_decode.py) against
    # torch's kernels at the first call of a bucket and keep the fastest that agrees; "torch" /
    # "triton": that one.
    decode_kernels: str = "auto"

    def validate(self) -> None:
        if self.compile_step not in (True, False, "layers"):
            raise InvalidOptionError(f"compile_step must be True, False or 'layers', got {self.compile_step!r}")
        if self.decode_kernels not in DECODE_KERNELS:
            raise InvalidOptionError(f"decode_kernels must be one of {', '.join(DECODE_KERNELS)}, got {self.decode_kernels!r}")
        if self.decode_kernels == "triton" and self.compile_step:
            raise InvalidOptionError("decode_kernels='triton' and compile_step exclude each other (torch.compile fuses the step itself)")
        if self.num_beams < 1:
            raise InvalidOptionError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.num_return_sequences < 1:
            raise InvalidOptionError(f"num_return_sequences must be at least 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise InvalidOptionError(
                f"num_return_sequences ({self.num_return_sequences}) must be at most num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise InvalidOptionError("greedy decoding returns one sequence; use do_sample=True or num_beams>1 for several")
        if self.do_sample and not self.temperature > 0:
            raise InvalidOptionError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidOptionError(f"top_p must be within [0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise InvalidOptionError(f"top_k must be >= 0, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise InvalidOptionError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise InvalidOptionError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        for name in ("max_new_tokens", "min_new_tokens", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidOptionError(f"{name} must be >= 0, got {value}")


# ================================================================================ logits processors
def repetition_penalty(penalty: float, ignore_lengths: torch.Tensor | None) -> LogitsProcessor:
    """Divide positive / multiply negative scores of tokens already present (left padding ignored)."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if ignore_lengths is not None:
            cols = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(cols[None, :] < ignore_lengths[:, None], V)
        ids = ids.clamp(max=V)
        padded = F.pad(scores, (0, 1))
        seen = padded.gather(1, ids)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return padded.scatter(1, ids, seen)[:, :V]

    return apply


def no_repeat_ngram(n: int) -> LogitsProcessor:
    """Ban every token that would repeat an n-gram already in the sequence."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        if L < n:
            return scores
        prefix = ids[:, L + 1 - n :]  # (N, n-1)
        windows = ids.unfold(1, n, 1)  # (N, L-n+1, n)
        hits = (windows[..., :-1] == prefix[:, None, :]).all(-1)  # (N, L-n+1)
        V = scores.shape[-1]
        banned = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(hits, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], -math.inf)

    return apply


def bad_words(bad_words_ids: Sequence[Sequence[int]], eos: Sequence[int]) -> LogitsProcessor:
    """Forbid the last token of each banned sequence when the tokens before it were just produced."""
    if not bad_words_ids or any(not seq or any(int(t) < 0 for t in seq) for seq in bad_words_ids):
        raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {bad_words_ids!r}")
    sequences = [tuple(int(t) for t in seq) for seq in bad_words_ids if list(seq) not in ([e] for e in eos)]
    singles = [s[0] for s in sequences if len(s) == 1]
    multi: dict[int, list[tuple[int, ...]]] = {}
    for seq in sequences:
        if len(seq) > 1:
            multi.setdefault(len(seq) - 1, []).append(seq)

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if any(t >= V for seq in sequences for t in seq):
            raise ValueError(f"bad_words_ids names token ids beyond the vocabulary ({V})")
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if singles:
            banned[:, singles] = True
        for k, group in multi.items():
            if k > ids.shape[1]:
                continue
            prefixes = torch.tensor([s[:-1] for s in group], device=ids.device)  # (G, k)
            last = torch.tensor([s[-1] for s in group], device=ids.device)  # (G,)
            match = (ids[:, None, -k:] == prefixes[None]).all(-1)  # (N, G)
            rows, which = match.nonzero(as_tuple=True)
            banned[rows, last[which]] = True
        return scores.masked_fill(banned, -math.inf)

    return apply


def min_new_tokens(prompt_length: int, n: int, eos: Sequence[int]) -> LogitsProcessor:
    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] - prompt_length < n:
            scores = scores.clone()
            scores[:, list(eos)] = -math.inf
        return scores

    return apply


def prefix_allowed(fn: Callable[[int, torch.Tensor], list[int]], num_beams: int) -> LogitsProcessor:
    """Constrained decoding: only the tokens `fn(batch_id, sequence)` allows (tasks use it to force
    entity names copied from the source)."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, -math.inf)
        for row in range(ids.shape[0]):
            allowed = fn(row // num_beams, ids[row])
            if len(allowed) == 0:
                raise ValueError(f"prefix_allowed_tokens_fn allowed no token for batch {row // num_beams}")
            mask[row, allowed] = 0
        out = scores + mask
        # A row whose allowed tokens all score -inf keeps the allowed set (uniformly) instead.
        dead = out.amax(-1).isneginf().view(-1, num_beams).all(-1, keepdim=True)
        return torch.where(dead.repeat_interleave(num_beams, 0), mask, out)

    return apply


def temperature_warper(t: float) -> LogitsProcessor:
    return lambda ids, scores: scores / t


def top_k_warper(k: int, min_keep: int = 1) -> LogitsProcessor:
    k = max(k, min_keep)

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        kth = torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, -math.inf)

    return apply


def top_p_warper(p: float, min_keep: int = 1) -> LogitsProcessor:
    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - p)
        remove[..., -min_keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)

    return apply


def build_processors(
    cfg: GenerationConfig,
    *,
    prompt_length: int,
    eos: Sequence[int],
    pad_lengths: torch.Tensor | None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None,
) -> list[LogitsProcessor]:
    """transformers' order: repetition penalty, no-repeat n-gram, bad words, min new tokens,
    prefix constraint; then, when sampling, temperature, top-k, top-p."""
    procs: list[LogitsProcessor] = []
    if cfg.repetition_penalty != 1.0:
        procs.append(repetition_penalty(float(cfg.repetition_penalty), pad_lengths))
    if cfg.no_repeat_ngram_size:
        procs.append(no_repeat_ngram(cfg.no_repeat_ngram_size))
    if cfg.bad_words_ids is not None:
        procs.append(bad_words(cfg.bad_words_ids, eos))
    if cfg.min_new_tokens and eos:
        procs.append(min_new_tokens(prompt_length, cfg.min_new_tokens, eos))
    if prefix_allowed_tokens_fn is not None:
        procs.append(prefix_allowed(prefix_allowed_tokens_fn, max(cfg.num_beams, cfg.num_return_sequences)))
    if cfg.do_sample:
        min_keep = (len(eos) + 1) if cfg.num_beams > 1 else 1
        if cfg.temperature != 1.0:
            procs.append(temperature_warper(float(cfg.temperature)))
        if cfg.top_k:
            procs.append(top_k_warper(int(cfg.top_k), min_keep))
        if cfg.top_p < 1.0:
            procs.append(top_p_warper(float(cfg.top_p), min_keep))
    return procs


def _apply(procs: list[LogitsProcessor], ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for proc in procs:
        scores = proc(ids, scores)
    return scores


# ================================================================================ prefill / decode
@dataclass
class DecodeState:
    """What one decode step needs besides the token: the cache, where each row's next position
    is, and (only for padded batches, or always with a graph) which cached keys are real."""

    cache: KVCache
    next_position: torch.Tensor  # (N,) position of the next token of each row
    key_mask: torch.Tensor | None  # (N, S_max) bool, None when no row is padded
    graph: "StaticDecoder | None" = None  # when set, steps replay its captured step

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i continues row index[i]. In place, because with a graph these
        tensors are the captured step's own buffers."""
        self.cache.reorder(index)
        if self.key_mask is not None:
            self.key_mask.copy_(self.key_mask[index])
        self.next_position.copy_(self.next_position[index])


def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
    """Run the prompt through the model, filling the cache; logits of the last position (N, V)."""
    body = model.biogpt
    if attention_mask is None:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    else:
        positions = (torch.cumsum(attention_mask, 1) * attention_mask - 1).long()
    attn_mask, is_causal = build_attention_mask(attention_mask, input_ids.shape[1], 0)
    hidden = body.run(input_ids, positions, attn_mask=attn_mask, is_causal=is_causal, cache=cache)
    return model.output_projection(hidden[:, -1])


def decode_step(model, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """One token per row (N,) -> logits (N, V); the cache grows by one position."""
    if state.graph is not None:
        return state.graph.step(tokens, state)
    cache = state.cache
    end = cache.length + 1
    attn_mask = None if state.key_mask is None else state.key_mask[:, None, None, :end]  # (N, 1, 1, S)
    positions = state.next_position[:, None]  # (N, 1)
    with _matvec_kernels(tokens):
        hidden = model.biogpt.run(tokens[:, None], positions, attn_mask=attn_mask, is_causal=False, cache=cache)
        logits = model.output_projection(hidden[:, -1])
    state.next_position += 1
    return logits


class _matvec_kernels:
    """For a single row on CPU, ATen's own reduced-precision matrix-vector kernels beat oneDNN's
    (measured here: bf16 LM head 2.3 ms vs 4.9 ms, fc2 194 vs 259 µs); oneDNN stays on for
    several rows (prefill, beams), where it is several times faster."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.active = tokens.device.type == "cpu" and tokens.shape[0] == 1

    def __enter__(self) -> None:
        if self.active:
            self.saved = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(False)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch._C._set_mkldnn_enabled(self.saved)


def _start(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: int,
    total_length: int,
    cfg: GenerationConfig,
) -> tuple[torch.Tensor, DecodeState]:
    """Prefill each distinct prompt once, then copy its cache to `rows // batch` rows (beams or
    several samples per prompt). Returns the expanded last logits and the decode state."""
    B, P = input_ids.shape
    expand = rows // B
    padded = attention_mask is not None and not bool(attention_mask.all())
    mask = attention_mask if padded else None
    graph = _static_decoder(model, input_ids.device, rows, total_length, cfg)
    if graph is not None:
        cache = graph.cache_view(rows)
    else:
        cache = KVCache.for_model(model.config, rows, total_length, dtype=model.dtype, device=input_ids.device)
    if expand == 1:
        captured = graph is not None and graph.capture and mask is None
        logits = graph.prefill(input_ids) if captured else None
        if logits is None:
            logits = prefill(model, input_ids, mask, cache)
    else:
        tmp = KVCache.for_model(model.config, B, P, dtype=model.dtype, device=input_ids.device)
        logits = prefill(model, input_ids, mask, tmp).repeat_interleave(expand, 0)
        cache.kv[:, :, :, :, :P] = tmp.kv.repeat_interleave(expand, 2)
        cache.length = P
        cache.shared_prefix = P  # every row of an input starts from the same prompt
    if mask is not None:
        key_mask = torch.ones(rows, total_length, dtype=torch.bool, device=input_ids.device)
        key_mask[:, :P] = mask.bool().repeat_interleave(expand, 0)
        next_position = mask.sum(1).repeat_interleave(expand, 0)
    else:
        key_mask = None
        next_position = torch.full((rows,), P, dtype=torch.long, device=input_ids.device)
    if graph is not None:
        return logits, graph.start(rows, P, cache, next_position, key_mask)
    return logits, DecodeState(cache, next_position.long(), key_mask)


# ================================================================================ static decode step / CUDA graph
GRAPH_LENGTH_STEP = 128  # cache capacities are rounded up to this, so graphs are reused
GRAPH_ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 64, 96, 128, 192, 256)
MAX_GRAPHS = 4  # captured steps kept per model (least recently used dropped)
PREFILL_LENGTH_STEP = 16  # captured prompt passes: prompts right-padded to a multiple of this
PREFILL_GRAPH_TOKENS = 64  # ... for at most this many (bucket rows x padded length) tokens
AUTO_MAX_ROWS = 4  # decode_kernels="auto" measures the fused Triton layer up to this many rows
AUTO_REPLAYS = 15  # replays timed per candidate step
# Relative L2 error of the fused step's logits against the plain step's that "auto" accepts: a
# few units of the dtype's rounding (CPU, Triton's interpreter: ~1e-7 float32, ~1e-3 float16).
FUSED_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
# The fused steps "auto" measures, by name: fused_decode.fused_step's options. The "+pdl" ones
# only where the kernels can be launched dependently (fused_decode.pdl_unavailable_reason).
# A StaticDecoder also takes one of these names as `kernels` (benchmarks/gpu_kernels.py).
FUSED_VARIANTS: dict[str, dict[str, Any]] = {
    "triton": {},
    "triton-sdpa": {"attention": "sdpa"},  # torch's attention kernel, in case the Triton one loses
    "triton+pdl": {"pdl": True},
    "triton-sdpa+pdl": {"attention": "sdpa", "pdl": True},
}


def _bucket(value: int, buckets: Sequence[int], step: int) -> int:
    for b in buckets:
        if value <= b:
            return b
    return -(-value // step) * step


class StaticDecoder:
    """One decode step with static shapes, captured once as a CUDA graph and replayed.

    Why: at batch 1 a BioGPT step is ~350-400 small kernels whose launch cost (Python + driver)
    is several times their run time; replaying a graph launches them all at once. Everything the
    step reads or writes lives in buffers owned here (tokens, positions, the write position, the
    key mask, the cache, the logits), updated in place: the cache is written at a position held
    in a device tensor (index_copy_) and attention always spans the full capacity with a mask
    of the keys written so far, so no shape depends on the step. The graph advances the write
    position and the positions itself; the host only copies in the next tokens. Rows and
    capacity are bucketed (GRAPH_ROW_BUCKETS, GRAPH_LENGTH_STEP) so one capture serves many
    calls; unused rows compute on dummy tokens and are never read. With capture=False the same
    step runs eagerly (CPU tests of the static-shape arithmetic).

    compile_step=True (generate(compile_step=True), opt-in) runs the step through torch.compile
    (inductor, no graphs of its own), inside this decoder's graph: it fuses LayerNorm with the
    residual, the cache write with the mask; measured on an H100 (benchmarks/gpu_kernels.py,
    float16, batch 1): 1.199 -> 0.917 ms per 347M step, 3.224 -> 2.507 ms for BioGPT-Large; the
    first call compiles (H100 machine: 21.7 s and 39.0 s; 35-46 s for the 347M step on a CPU). The
    cache is written on its whole buffer, so the compiled step updates it in place (checked on
    a CPU: no copy of the cache).
    compile_step="layers" compiles the decoder layer instead, once for all
    layers: each layer gets its own view of the cache (kv_cache.LayerCacheView), so nothing in
    the compiled code depends on the layer number (5-12 s for the 347M shapes on a CPU, 2-8 s
    on the H100 machine, one compilation; the view is written in place): 1.072 ms and 2.809 ms
    per step on the H100.

    kernels="triton" runs each layer as model/fused_decode.py's five Triton kernels (LayerNorm,
    bias, activation, residual and the key/value write fused into the four projections, plus
    one-query attention); kernels="auto" also captures that step and the same with torch's
    attention kernel ("triton-sdpa"), on Hopper GPUs both again with their kernels launched as
    programmatic dependent launches ("triton+pdl", "triton-sdpa+pdl": each kernel starts while
    the previous one ends), checks each one's logits against the plain step's
    (FUSED_TOLERANCE) and keeps whichever step replays fastest (`self.kernel_report` says what
    was measured); before that, fused_decode.tune times the kernels' launch configurations on
    this GPU (once per machine). With a fused step, greedy search's token choice is one kernel
    too (fused_decode.greedy_pick). With capture=False (CPU) only an explicit "triton" uses the
    fused layer (under Triton's interpreter: the CPU tests)."""

    def __init__(
        self,
        model,
        device: torch.device,
        rows: int,
        capacity: int,
        *,
        capture: bool,
        compile_step: bool | str = False,
        kernels: str = "torch",
    ) -> None:
        cfg = model.config
        self.model = model
        self.rows, self.capacity = rows, capacity
        self.cache = KVCache.for_model(cfg, rows, capacity, dtype=model.dtype, device=device)
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)
        self.write_pos = torch.zeros(rows, dtype=torch.long, device=device)  # cache column of each row's next key
        self.cache.write_index = self.write_pos  # steps write there (prefills use cache_view)
        self.key_mask = torch.ones(rows, capacity, dtype=torch.bool, device=device)
        self.key_index = torch.arange(capacity, device=device)
        self.mask_zero = torch.zeros((), dtype=model.dtype, device=device)
        self.mask_neg_inf = torch.full((), -math.inf, dtype=model.dtype, device=device)
        self.capture = capture
        self.capture_seconds = 0.0
        self.greedy_graphs: dict = {}
        self.prefill_graphs: dict[int, tuple] = {}  # padded prompt length -> (graph, body, ids, last, out)
        self.span_graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.span_logits: dict[int, torch.Tensor] = {}  # each span graph's output buffer
        self.logits: torch.Tensor | None = None
        self.step_fn: Callable[[], torch.Tensor] = self._step
        self.compiled_layers: list = []  # (compiled layer, its cache view) with compile_step="layers"
        if compile_step == "layers":
            # one compilation shared by every layer (same code, same shapes; each layer reads
            # its own cache view): seconds to build instead of a minute for the whole step
            from .kv_cache import LayerCacheView

            self.compiled_layers = [
                (torch.compile(layer, fullgraph=True, dynamic=False), LayerCacheView(self.cache, i))
                for i, layer in enumerate(model.biogpt.layers)
            ]
        elif compile_step:
            self.step_fn = torch.compile(self._step, fullgraph=True, dynamic=False)
        self.fused: Any = None  # fused_decode.FusedStep: Triton layers and head instead of the model's
        self.kernels = "torch"
        self.kernel_report: dict[str, Any] = {}
        candidates: dict[str, Any] = {}
        tune_seconds = 0.0
        if kernels != "torch":
            from . import fused_decode

            if capture:  # launch configurations timed on this GPU (once per machine: cached on disk)
                try:
                    tune_seconds = fused_decode.tune(model)
                except Exception as exc:  # noqa: BLE001 - the kernels keep their first-guess configurations
                    if kernels != "auto":
                        raise
                    logger.warning("could not tune the fused decode kernels (%s: %s)", type(exc).__name__, exc)
            if kernels in FUSED_VARIANTS:  # that one
                self.fused, self.kernels = fused_decode.fused_step(model, self.cache, **FUSED_VARIANTS[kernels]), kernels
            else:
                pdl_reason = fused_decode.pdl_unavailable_reason(device)
                if pdl_reason is not None:
                    logger.debug("fused decode kernels without programmatic dependent launch: %s", pdl_reason)
                for name, options in FUSED_VARIANTS.items():
                    if pdl_reason is None or not options.get("pdl"):
                        candidates[name] = fused_decode.fused_step(model, self.cache, **options)

        def body() -> None:
            self.logits = self.step_fn()

        self.graph = self._capture(body)
        if kernels == "auto" and self.graph is not None:
            self._choose_kernels(candidates, body)
            if tune_seconds:
                self.kernel_report["tune_seconds"] = tune_seconds
        if self.graph is not None:
            logger.debug("captured a decode step for %d rows x %d positions in %.3f s", rows, capacity, self.capture_seconds)

    def _choose_kernels(self, candidates: dict[str, Any], body: Callable[[], None]) -> None:
        """Capture the step again with each candidate; among the plain step and the candidates
        whose logits agree with its own (same state, one replay each, FUSED_TOLERANCE), keep the
        one that replays fastest (median of AUTO_REPLAYS, the steps timed in turn so that clock
        changes during the measurement favour none of them)."""
        plain_graph, plain_logits = self.graph, self.logits
        want = self._replay_from_same_state(plain_graph, plain_logits).float()
        report: dict[str, Any] = {"rows": self.rows}
        # the Triton attention's columns per program (fused_decode.tune's choice; 0: not split)
        report["attention_split"] = next((f.split for f in candidates.values() if f.attention == "triton"), 0)
        entries = [("torch", plain_graph, plain_logits, None)]
        tolerance = FUSED_TOLERANCE[self.model.dtype]
        for name, fused in candidates.items():
            try:
                self.fused = fused
                graph = self._capture_keeping_state(body)
                logits = self.logits
                got = self._replay_from_same_state(graph, logits).float()
            except Exception as exc:  # noqa: BLE001 - a kernel that does not build or run here
                logger.warning("decode kernels %r unavailable (%s: %s); not used", name, type(exc).__name__, exc)
                report[f"{name}_failed"] = f"{type(exc).__name__}: {exc}"
                continue
            error = float((got - want).norm() / want.norm().clamp_min(1e-30))
            report[f"{name}_error"] = error
            if not error <= tolerance:  # NaN included
                logger.warning("decode kernels %r: logits differ from torch's by %.2e (> %.0e); not used", name, error, tolerance)
                continue
            entries.append((name, graph, logits, fused))
        times = self._replay_ms([graph for _, graph, _, _ in entries])
        for (name, *_), ms in zip(entries, times):
            report[f"{name}_ms"] = ms
        fastest = min(range(len(entries)), key=lambda i: (times[i], i))  # a tie keeps torch's step
        self.kernels, self.graph, self.logits, self.fused = entries[fastest]
        self.kernel_report = {**report, "kernels": self.kernels}
        logger.info("decode step kernels for %d row(s): %s", self.rows, self.kernel_report)

    def _state(self) -> list[torch.Tensor]:
        return [t.clone() for t in (self.write_pos, self.positions, self.tokens)]

    def _restore(self, saved: list[torch.Tensor]) -> None:
        for t, value in zip((self.write_pos, self.positions, self.tokens), saved):
            t.copy_(value)

    def _replay_from_same_state(self, graph: "torch.cuda.CUDAGraph", logits: torch.Tensor) -> torch.Tensor:
        saved = self._state()
        graph.replay()
        result = logits.clone()
        self._restore(saved)
        return result

    def _replay_ms(self, graphs: list) -> list[float]:
        """Each graph's median replay time in milliseconds over AUTO_REPLAYS rounds, one replay of
        each graph per round after two warm-up rounds, every replay from the middle of the cache
        (a step's cost grows with the keys it reads; the decode state is put back)."""
        saved = self._state()
        self.write_pos.fill_(self.capacity // 2)
        self.positions.fill_(self.capacity // 2)
        middle = self._state()
        times: list[list[float]] = [[] for _ in graphs]
        for i in range(AUTO_REPLAYS + 2):
            for graph, samples in zip(graphs, times):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                graph.replay()
                end.record()
                end.synchronize()
                if i >= 2:  # the first rounds warm caches and clocks
                    samples.append(start.elapsed_time(end))
                self._restore(middle)
        self._restore(saved)
        return [sorted(samples)[len(samples) // 2] for samples in times]

    def _step(self, span: int | None = None) -> torch.Tensor:
        """The step; attention reads the first `span` columns of the cache (all by default)."""
        if self.fused is not None:
            return self._fused_step(span)
        model = self.model
        S = span or self.capacity
        allowed = self.key_mask[:, :S] & (self.key_index[None, :S] <= self.write_pos[:, None])  # (N, S): written keys only
        # additive mask in the model's dtype, built once per step (a boolean one is converted
        # by attention in every layer)
        bias = torch.where(allowed, self.mask_zero, self.mask_neg_inf)  # (N, S)
        self.cache.read_span = S
        with in_place_residuals():  # every activation here is the step's own (see modeling)
            hidden = model.biogpt.run(
                self.tokens[:, None],
                self.positions[:, None],
                attn_mask=bias[:, None, None, :],  # (N, 1, 1, S)
                is_causal=False,
                cache=self.cache,
                layers=self.compiled_layers or None,
            )
        logits = model.output_projection(hidden[:, -1])  # (N, V)
        self.write_pos += 1
        self.positions += 1
        return logits

    def _fused_step(self, span: int | None = None) -> torch.Tensor:
        """`_step` with the fused Triton kernels (fused_decode.FusedStep): the same state in and
        out, the same logits within rounding."""
        S = span or self.capacity
        self.cache.read_span = S
        logits = self.fused(self.tokens, self.positions, self.write_pos, self.key_mask[:, :S])  # positions advanced
        self.write_pos += 1
        return logits

    def cache_view(self, rows: int) -> KVCache:
        """A cache over the first `rows` rows of the captured buffers, for the eager prefill."""
        return self.cache.first_rows(rows)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The prompt pass of unpadded prompts (rows, P) as a captured graph: the prompts right-padded
        to a multiple of PREFILL_LENGTH_STEP, the logits taken at each prompt's last token. None
        where it does not pay (more than PREFILL_GRAPH_TOKENS tokens: the pass is then bound by
        its arithmetic, not by launching its ~14 kernels per layer) or does not fit: prefill eagerly.

        Why: a batch-1 call's prompt pass is launched kernel by kernel from Python: measured on an
        H100, 10.8 ms (347M) and 23.7 ms (BioGPT-Large) of fixed cost per call, 3-5% of a whole
        128-256-token call. Causal attention keeps the padding out of the prompt's positions;
        the padding's keys land in cache columns >= P, which the decode step masks until it
        overwrites them. With capture=False (CPU tests) the same padded pass runs eagerly."""
        rows, P = input_ids.shape
        Pb = -(-P // PREFILL_LENGTH_STEP) * PREFILL_LENGTH_STEP
        if self.rows * Pb > PREFILL_GRAPH_TOKENS or Pb > min(self.capacity, self.model.config.max_position_embeddings):
            return None
        if Pb not in self.prefill_graphs:
            device = self.tokens.device
            ids = torch.zeros(self.rows, Pb, dtype=torch.long, device=device)
            last = torch.zeros(self.rows, dtype=torch.long, device=device)  # each row's last prompt column
            positions = torch.arange(Pb, device=device)[None, :]
            out: dict[str, torch.Tensor] = {}

            def body() -> None:
                view = self.cache.first_rows(self.rows)  # a fresh view each run: its length starts at 0
                hidden = self.model.biogpt.run(ids, positions, attn_mask=None, is_causal=True, cache=view)  # (R, Pb, C)
                out["logits"] = self.model.output_projection(hidden[self.cache.row_ids, last])  # (R, V)

            self.prefill_graphs[Pb] = (self._capture(body), body, ids, last, out)
        graph, body, ids, last, out = self.prefill_graphs[Pb]
        ids.zero_()
        ids[:rows, :P] = input_ids
        last.fill_(P - 1)
        if graph is None:
            body()
        else:
            graph.replay()
        return out["logits"][:rows].clone()  # a graph's buffer is overwritten by its next replay

    def start(
        self, rows: int, prompt_length: int, cache: KVCache, next_position: torch.Tensor, key_mask: torch.Tensor | None
    ) -> DecodeState:
        self.write_pos.fill_(prompt_length)
        self.positions.zero_()
        self.positions[:rows] = next_position
        self.key_mask.fill_(True)
        if key_mask is not None:
            self.key_mask[:rows, : key_mask.shape[1]] = key_mask
        self.tokens.zero_()
        return DecodeState(cache, self.positions[:rows], self.key_mask[:rows], graph=self)

    def run_step(self, span: int | None = None) -> torch.Tensor:
        """One step on the tokens already in `self.tokens`: logits (rows, V), valid until the next
        step (on a GPU, the graph's own output buffer).

        `span`: no row attends beyond this many cache columns in this step. Attention then reads
        only the first columns (rounded up to GRAPH_LENGTH_STEP, one graph per rounded span,
        captured on first use): with many rows, reading the whole cache of every row costs more
        than the weights (32 rows x 1,024 columns: 3.2 GB per step in float16 vs 0.7 GB)."""
        S = self.capacity if span is None else min(self.capacity, -(-span // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP)
        if self.graph is None:
            return self.step_fn(S)
        if S == self.capacity:
            self.graph.replay()
            return self.logits
        if S not in self.span_graphs:

            def body() -> None:
                self.span_logits[S] = self.step_fn(S)

            self.span_graphs[S] = self._capture_keeping_state(body)
        self.span_graphs[S].replay()
        return self.span_logits[S]

    def step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        n = tokens.shape[0]
        self.tokens[:n] = tokens
        logits = self.run_step()[:n]
        if self.graph is not None:
            logits = logits.clone()  # the graph's buffer is overwritten by the next replay
        state.cache.length += 1
        return logits

    # ---------------------------------------------------------------- greedy loop inside the graph
    def greedy(
        self, first_logits: torch.Tensor, prompt: torch.Tensor, *, max_new: int, eos: torch.Tensor, pad: int, min_new: int
    ) -> torch.Tensor:
        """Greedy decoding where each replay both picks the next tokens (min_new_tokens, EOS
        bookkeeping included) and runs the decode step: one launch per token, the host only
        checks every EOS_CHECK_EVERY steps whether all rows are done. Same tokens as the eager
        loop in `_greedy_or_sample`."""
        rows, P = prompt.shape
        key = (tuple(eos.tolist()), pad, min_new > 0)
        if key not in self.greedy_graphs:
            self._make_greedy_buffers()
            # The graph reads these addresses on every replay: its own copy of the EOS ids, not
            # this call's tensor (freed when the call returns).
            own_eos = eos.clone()
            own_pad = torch.full((), pad, dtype=torch.long, device=self.tokens.device)
            graph = self._capture_keeping_state(lambda: self._greedy_body(own_eos, own_pad, min_new > 0))
            self.greedy_graphs[key] = (graph, own_eos, own_pad)
        graph, eos, pad_t = self.greedy_graphs[key]
        self.out.fill_(pad)
        self.out[:rows, :P] = prompt
        self.unfinished.fill_(True)
        self.last_col.fill_(P + max_new - 1)
        self.cur.fill_(P)
        self.min_col.fill_(P + min_new)
        self.next_logits[:rows] = first_logits
        for step in range(max_new):
            if graph is None:
                self._greedy_body(eos, pad_t, min_new > 0)
            else:
                graph.replay()
            if step == max_new - 1:
                break
            if (step + 1) % EOS_CHECK_EVERY == 0 and not bool(self.unfinished[:rows].any()):
                break
        length = int(self.last_col[:rows].max()) + 1
        return self.out[:rows, :length].clone()

    def _make_greedy_buffers(self) -> None:
        if hasattr(self, "out"):
            return
        device, rows = self.tokens.device, self.rows
        self.out = torch.zeros(rows, self.capacity, dtype=torch.long, device=device)
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        self.last_col = torch.zeros(rows, dtype=torch.long, device=device)  # each row's last column of out
        self.cur = torch.zeros(1, dtype=torch.long, device=device)  # the column this step writes
        self.min_col = torch.zeros(1, dtype=torch.long, device=device)  # EOS banned before this column
        vocab = self.model.config.vocab_size
        self.next_logits = torch.zeros(rows, vocab, dtype=self.model.dtype, device=device)

    def _greedy_body(self, eos: torch.Tensor, pad: torch.Tensor, has_min_new: bool) -> None:
        """One token per row, then the decode step. Written for few kernels (a batch-1 replay is
        launch-bound): results go straight into the buffers (`out=`), one position counter, and
        the scores stay in the model's dtype (argmax of the exact float32 copy is the same)."""
        if self.fused is not None:  # the fused step's greedy kernel: what the else branch does, in one
            from .fused_decode import greedy_pick

            greedy_pick(
                self.next_logits, eos=eos, pad=pad, cur=self.cur, min_col=self.min_col, unfinished=self.unfinished,
                out=self.out, last_col=self.last_col, tokens=self.tokens, ban=has_min_new, pdl=self.fused.pdl,
            )  # fmt: skip
        else:
            scores = self.next_logits  # (N, V), overwritten by this body's step anyway
            if has_min_new and eos.numel():
                banned = scores[:, eos]  # (N, E)
                scores[:, eos] = torch.where(self.cur < self.min_col, -math.inf, banned)
            torch.where(self.unfinished, scores.argmax(-1), pad, out=self.tokens)  # finished rows: pad
            self.out.index_copy_(1, self.cur, self.tokens[:, None])
            if eos.numel():
                is_eos = (self.tokens[:, None] == eos[None, :]).any(-1)  # (N,)
                torch.where(self.unfinished & is_eos, self.cur, self.last_col, out=self.last_col)
                torch.gt(self.unfinished, is_eos, out=self.unfinished)  # unfinished and not EOS
        self.cur += 1
        self.next_logits.copy_(self.step_fn())

    def _capture_keeping_state(self, body: Callable[[], object]) -> "torch.cuda.CUDAGraph | None":
        """`_capture` in the middle of decoding: its warm-up runs advance the live decode state
        (write positions, positions, tokens), which is put back afterwards."""
        saved = self._state()
        graph = self._capture(body)
        self._restore(saved)
        return graph

    def _capture(self, body: Callable[[], object]) -> "torch.cuda.CUDAGraph | None":
        """Capture `body` (after two warm-up runs on a side stream); None without capture (CPU)."""
        if not self.capture:
            return None
        device = self.tokens.device
        start = time.perf_counter()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph: kernel choice, workspaces
                body()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        torch.cuda.synchronize(device)
        self.capture_seconds += time.perf_counter() - start
        return graph


def _static_decoder(model, device: torch.device, rows: int, total_length: int, cfg: GenerationConfig) -> StaticDecoder | None:
    """The captured step for this call's bucket, capturing it on first use; None = eager steps."""
    wanted = cfg.cuda_graph
    on_cuda = device.type == "cuda"
    if wanted is False or (wanted is None and not on_cuda) or model.training:
        for name, asked in (("compile_step", cfg.compile_step), ("decode_kernels='triton'", cfg.decode_kernels == "triton")):
            if asked:
                logger.warning("%s applies to the captured (CUDA-graph) decode step; ignored here (%s)", name,
                               "training mode" if model.training else f"cuda_graph={wanted}, device {device.type}")
        return None
    if on_cuda and getattr(model, "_cuda_graph_failed", False):
        return None
    rows_b = _bucket(rows, GRAPH_ROW_BUCKETS, 64)
    if on_cuda or cfg.decode_kernels == "triton":  # one q/k/v projection per layer (same parameters; see BioGptAttention.fuse_qkv)
        model.fuse_qkv_projections()
    capacity = -(-total_length // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP
    # A graph holds the addresses of the weights it read: moving or converting the model
    # (new storage) must not replay an old graph, so the weights' addresses are in the key.
    weights = hash(tuple(p.data_ptr() for p in model.parameters()))
    key = (device, model.dtype, rows_b, capacity, weights, on_cuda, cfg.compile_step, cfg.decode_kernels)
    graphs: OrderedDict = model.__dict__.setdefault("_static_decoders", OrderedDict())
    if key in graphs:
        graphs.move_to_end(key)
        return graphs[key]
    kernels = _decode_kernels(model, device, rows_b, cfg)  # checks the model: once per decoder, not per call
    try:
        decoder = StaticDecoder(
            model, device, rows_b, capacity, capture=on_cuda, compile_step=cfg.compile_step, kernels=kernels
        )
    except RuntimeError as exc:  # capture unsupported here: eager steps from now on
        if wanted or kernels == "triton":  # asked for explicitly: say why it cannot be had
            raise
        logger.warning("CUDA graph capture failed (%s); decoding eagerly", exc)
        model.__dict__["_cuda_graph_failed"] = True
        return None
    graphs[key] = decoder
    while len(graphs) > MAX_GRAPHS:
        graphs.popitem(last=False)
    return decoder


def _decode_kernels(model, device: torch.device, rows: int, cfg: GenerationConfig) -> str:
    """The `kernels` a StaticDecoder gets: "auto" is only worth measuring for a captured step of
    few rows (more rows make the weights' reading, which cuBLAS does well, the smaller part)
    without torch.compile; an explicit "triton" that cannot run is an error, not a fallback."""
    choice = cfg.decode_kernels
    if choice == "torch" or (choice == "auto" and (cfg.compile_step or rows > AUTO_MAX_ROWS or device.type != "cuda")):
        return "torch"
    from . import fused_decode

    reason = fused_decode.unavailable_reason(model, device)
    if reason is None:
        return choice
    if choice == "triton":
        raise InvalidOptionError(f"decode_kernels='triton': {reason}")
    logger.debug("fused decode kernels not considered: %s", reason)
    return "torch"


# ================================================================================ strategies
def _greedy_or_sample(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    procs: list[LogitsProcessor],
    eos: torch.Tensor,
    pad: int,
    max_new: int,
    streamer: Streamer | None,
    sync_each_step: bool,
) -> torch.Tensor:
    B, P = input_ids.shape
    n = cfg.num_return_sequences if cfg.do_sample else 1
    rows = B * n
    out = torch.full((rows, P + max_new), pad, dtype=torch.long, device=input_ids.device)
    out[:, :P] = input_ids.repeat_interleave(n, 0)
    if max_new == 0:
        return out
    logits, state = _start(model, input_ids, attention_mask, rows, P + max_new, cfg)
    in_graph = (  # processors with host-side state stay on the per-step path below
        state.graph is not None
        and not cfg.do_sample
        and not sync_each_step
        and cfg.repetition_penalty == 1.0
        and not cfg.no_repeat_ngram_size
        and cfg.bad_words_ids is None
    )
    if in_graph:
        min_new = (cfg.min_new_tokens or 0) if eos.numel() else 0
        return state.graph.greedy(logits, out[:, :P], max_new=max_new, eos=eos, pad=pad, min_new=min_new)
    unfinished = torch.ones(rows, dtype=torch.bool, device=out.device)
    last_step = torch.full((rows,), max_new - 1, dtype=torch.long, device=out.device)
    if streamer is not None:
        streamer.put(out[:, :P].cpu())
    for step in range(max_new):
        cur = P + step
        scores = _apply(procs, out[:, :cur], logits.float())
        if cfg.do_sample:
            tokens = torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)
        else:
            tokens = scores.argmax(-1)
        tokens = torch.where(unfinished, tokens, pad)
        out[:, cur] = tokens
        if streamer is not None:
            streamer.put(tokens.cpu())
        if eos.numel():
            just_done = unfinished & torch.isin(tokens, eos)
            last_step = torch.where(just_done, step, last_step)
            unfinished &= ~just_done
        if step == max_new - 1:
            break
        if (sync_each_step or (step + 1) % EOS_CHECK_EVERY == 0) and not bool(unfinished.any()):
            break
        logits = decode_step(model, tokens, state)
    if streamer is not None:
        streamer.end()
    # transformers stops at the step where the last row finished: trim to that length.
    length = P + int(torch.where(unfinished, max_new - 1, last_step).max()) + 1
    return out[:, :length]


def _beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    procs: list[LogitsProcessor],
    eos: torch.Tensor,
    pad: int,
    max_new: int,
) -> torch.Tensor:
    """transformers' vectorised beam search: keep 2·K candidates per step (so K can continue even
    when some end), move finished ones into a K-best list scored with the length penalty, stop
    by its early-stopping rule."""
    B, P = input_ids.shape
    K = cfg.num_beams
    W = max(2, 1 + eos.numel()) * K  # candidates kept per step
    max_length = P + max_new
    device = input_ids.device
    lp, early = cfg.length_penalty, cfg.early_stopping
    if max_new == 0:
        return input_ids.repeat_interleave(cfg.num_return_sequences, 0)

    running = torch.full((B, K, max_length), pad, dtype=torch.long, device=device)
    running[:, :, :P] = input_ids[:, None, :]
    running_scores = torch.zeros(B, K, device=device)
    running_scores[:, 1:] = -1e9  # all beams start identical: only the first may expand
    finished = running.clone()
    finished_scores = torch.full((B, K), -1e9, device=device)
    finished_len = torch.zeros(B, K, dtype=torch.long, device=device)
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    may_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    first_k = torch.arange(W, device=device) < K  # (W,)
    batch_offset = torch.arange(B, device=device)[:, None] * K  # (B, 1)

    logits, state = _start(model, input_ids, attention_mask, B * K, max_length, cfg)
    cur = P
    while True:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_probs = _apply(procs, running.view(B * K, -1)[:, :cur], log_probs)
        V = log_probs.shape[-1]
        flat = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
        if cfg.do_sample:
            cand = torch.multinomial(flat.softmax(-1), num_samples=W)
            cand_scores = flat.gather(1, cand)
            cand_scores, order = cand_scores.sort(-1, descending=True)
            cand = cand.gather(1, order)
        else:
            cand_scores, cand = torch.topk(flat, W)  # (B, W)
        src = cand // V  # beam each candidate extends
        tok = cand % V
        cand_seqs = running.gather(1, src[:, :, None].expand(-1, -1, max_length)).clone()  # (B, W, L)
        cand_seqs[:, :, cur] = tok
        ends = (torch.isin(tok, eos) if eos.numel() else torch.zeros_like(tok, dtype=torch.bool)) | (cur + 1 >= max_length)

        # the K best candidates that did not end keep running
        alive_scores = cand_scores + ends.float() * -1e9
        keep = torch.topk(alive_scores, K).indices  # (B, K)
        running = cand_seqs.gather(1, keep[:, :, None].expand(-1, -1, max_length))
        running_scores = alive_scores.gather(1, keep)
        reorder = (src.gather(1, keep) + batch_offset).flatten()

        # candidates that ended among the top K join the finished list if good enough
        just_ended = ends & first_k[None, :]
        scored = cand_scores / ((cur + 1 - P) ** lp)
        full = is_finished.all(-1, keepdim=True) & (early is True)
        scored = scored + full.float() * -1e9 + (~may_improve).float() * -1e9 + (~just_ended).float() * -1e9
        merged_scores = torch.cat([finished_scores, scored], 1)  # (B, K + W)
        best = torch.topk(merged_scores, K).indices
        finished = torch.cat([finished, cand_seqs], 1).gather(1, best[:, :, None].expand(-1, -1, max_length))
        finished_scores = merged_scores.gather(1, best)
        cand_len = torch.full((B, W), cur + 1 - P, dtype=torch.long, device=device)
        finished_len = torch.cat([finished_len, cand_len], 1).gather(1, best)
        is_finished = torch.cat([is_finished, just_ended], 1).gather(1, best)

        state.reorder(reorder)
        cur += 1

        # can the best running beam still beat the worst finished one?
        horizon = (max_length - P) if (early == "never" and lp > 0.0) else (cur - P)
        best_running = running_scores[:, :1] / (horizon**lp)
        worst_finished = torch.where(is_finished, finished_scores.min(1, keepdim=True)[0], -1.0e9)
        may_improve = may_improve & (best_running > worst_finished).any(-1, keepdim=True)
        # one host synchronisation per step for the three stopping conditions
        improvable, all_finished, all_ended = torch.stack([may_improve.any(), is_finished.all(), ends.all()]).tolist()
        open_beams = not (all_finished and early is True)
        if not (improvable and open_beams and not all_ended):
            break
        logits = decode_step(model, running[:, :, cur - 1].flatten(), state)

    R = cfg.num_return_sequences
    out = finished[:, :R].flatten(0, 1)
    length = P + int(finished_len[:, :R].max())
    return out[:, :length]


# ================================================================================ entry point
# transformers' generate() options with nothing to choose here: their default is what this
# generate() always does, so a script written for transformers runs unchanged when it passes
# the default, and gets one clear error when it asks for what is not offered.
_CONFIG_FIELDS = tuple(f.name for f in fields(GenerationConfig))  # generate()'s keyword options
_RESULT_OPTIONS = ("return_dict_in_generate", "output_scores", "output_logits", "output_attentions", "output_hidden_states")


def _transformers_only_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if not kwargs.pop("use_cache", True):
        logger.info("use_cache=False: decoding always runs over a key/value cache here (the same tokens, faster)")
    asked = [name for name in _RESULT_OPTIONS if kwargs.pop(name, False)]
    if asked:
        raise TypeError(
            f"generate() returns the token ids only; {', '.join(asked)} not supported "
            "(score sequences with model(ids).logits)"
        )
    return kwargs


def _own_config(config: Any) -> GenerationConfig:
    """Ours, or one read from another library's generation config by the field names they share
    (transformers' GenerationConfig: the same names and meanings), so a script passing its own
    `generation_config=` runs unchanged."""
    if config is None or isinstance(config, GenerationConfig):
        return config or GenerationConfig()
    if not any(hasattr(config, name) for name in _CONFIG_FIELDS):
        raise TypeError(f"generation_config must be a GenerationConfig, got {type(config).__name__}")
    # None there means "not set": our default (which is transformers' default) applies
    shared = {name: getattr(config, name) for name in _CONFIG_FIELDS if getattr(config, name, None) is not None}
    return GenerationConfig(**shared)


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: Any = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    streamer: Streamer | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Prompt plus continuation, (batch × num_return_sequences, length); finished rows are padded
    with pad_token_id. Keyword names and defaults are transformers'."""
    kwargs = _transformers_only_options(kwargs)
    unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"generate() got unexpected keyword arguments: {', '.join(unknown)}")
    cfg = replace(_own_config(generation_config), **kwargs)
    cfg.validate()
    config = model.config
    eos_ids = cfg.eos_token_id if cfg.eos_token_id is not None else config.eos_token_id
    eos_list = [] if eos_ids is None else ([eos_ids] if isinstance(eos_ids, int) else list(eos_ids))
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else config.pad_token_id
    if pad is None:
        pad = eos_list[0] if eos_list else 0
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}")
    P = input_ids.shape[1]
    if cfg.max_new_tokens is not None:
        max_new = cfg.max_new_tokens
    else:
        max_new = max((cfg.max_length if cfg.max_length is not None else 20) - P, 0)
    if P + max_new > config.max_position_embeddings:
        raise ValueError(
            f"prompt ({P} tokens) + max_new_tokens ({max_new}) exceeds the model's "
            f"max_position_embeddings ({config.max_position_embeddings})"
        )
    if streamer is not None and (input_ids.shape[0] > 1 or cfg.num_beams > 1):
        raise ValueError("streaming supports one prompt with num_beams=1")

    eos = torch.tensor(eos_list, dtype=torch.long, device=input_ids.device)
    pad_lengths = None
    if attention_mask is not None and cfg.repetition_penalty != 1.0:
        pad_lengths = (attention_mask != 0).int().argmax(1)
        rows = cfg.num_beams if cfg.num_beams > 1 else (cfg.num_return_sequences if cfg.do_sample else 1)
        pad_lengths = pad_lengths.repeat_interleave(rows, 0)
    procs = build_processors(
        cfg, prompt_length=P, eos=eos_list, pad_lengths=pad_lengths, prefix_allowed_tokens_fn=prefix_allowed_tokens_fn
    )
    with torch.inference_mode():
        if cfg.num_beams > 1:
            return _beam_search(model, input_ids, attention_mask, cfg, procs, eos, pad, max_new)
        sync = streamer is not None or prefix_allowed_tokens_fn is not None
        return _greedy_or_sample(model, input_ids, attention_mask, cfg, procs, eos, pad, max_new, streamer, sync)


# ================================================================================ streaming text
class TextStreamer:
    """Calls `callback(text)` with each new piece of decoded text as tokens arrive.

    Moses detokenisation can change the spacing of the last word once the next one arrives, so
    the final word is held back until it is followed by another (or the stream ends)."""

    def __init__(self, tokenizer, callback: Callable[[str], None], *, skip_prompt: bool = True) -> None:
        self.tokenizer = tokenizer
        self.callback = callback
        self.skip_prompt = skip_prompt
        self.ids: list[int] = []
        self.printed = 0
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        values = value.flatten().tolist()
        if not self.prompt_seen:
            self.prompt_seen = True
            if self.skip_prompt:
                return
        self.ids.extend(values)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = text.rfind(" ")
        if cut > self.printed:
            self.callback(text[self.printed : cut])
            self.printed = cut

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.printed:
            self.callback(text[self.printed :])
        self.printed = len(text)
