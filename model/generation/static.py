"""The static decode step: one step with static shapes, captured once as a CUDA graph and
replayed, and the per-model store of captured steps.

Why: at batch 1 a BioGPT step is a few hundred small kernels whose launch cost (Python and
driver) is several times their run time; replaying a graph launches them all at once.
Everything the step reads or writes lives in buffers owned by the decoder (tokens, positions,
the write position, the key mask, the cache, the logits), updated in place: the cache is
written at a position held in a device tensor and attention spans a fixed number of columns
with a mask of the keys written so far, so no shape depends on the step. Rows and capacity are
bucketed (GRAPH_ROW_BUCKETS, GRAPH_LENGTH_STEP) so one capture serves many calls; unused rows
compute on dummy tokens and are never read. With capture=False the same step runs eagerly (the
CPU tests of the static-shape arithmetic; continuous batching on a CPU).

Which kernels the step runs is kernel_choice's job; the greedy loop inside the graph is
greedy_graph's.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..fast.network import network_for
from ..kv_cache import KVCache, LayerCacheView
from . import kernel_choice
from .config import GenerationConfig
from .greedy_graph import GreedyLoop
from .steps import DecodeState

logger = logging.getLogger("biogpt.model.generation")

GRAPH_LENGTH_STEP = 128  # cache capacities are rounded up to this, so graphs are reused
GRAPH_ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 64, 96, 128, 192, 256)
MAX_GRAPHS = 4  # captured steps kept per model (least recently used dropped)
PREFILL_LENGTH_STEP = 16  # captured prompt passes: prompts right-padded to a multiple of this
PREFILL_GRAPH_TOKENS = 64  # ... for at most this many (bucket rows x padded length) tokens

# The captured steps of each model, by bucket, and the models whose capture failed. Kept beside
# the model, not on it: what a user's model holds is never changed by generation.
_DECODERS: "weakref.WeakKeyDictionary[nn.Module, OrderedDict]" = weakref.WeakKeyDictionary()
_CAPTURE_FAILED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def bucket(value: int, buckets: Sequence[int], step: int) -> int:
    """The smallest of `buckets` holding `value`, else `value` rounded up to a multiple of `step`."""
    for b in buckets:
        if value <= b:
            return b
    return -(-value // step) * step


def decoders_of(model: nn.Module) -> OrderedDict:
    """The static decoders kept for `model` (most recently used last)."""
    return _DECODERS.setdefault(model, OrderedDict())


class StaticDecoder:
    """One decode step with static shapes over its own cache and buffers (see the module
    docstring), built from `model`'s weights and holding no reference to `model` itself.

    compile_step=True runs the step through torch.compile (inductor, no graphs of its own) inside
    this decoder's graph: it fuses LayerNorm with the residual, the cache write with the mask
    (measured faster per step, at tens of seconds of compilation; BENCHMARKS.md). The cache is
    written on its whole buffer, so the compiled step updates it in place.
    compile_step="layers" compiles the decoder layer instead, once for all layers: each layer
    gets its own view of the cache (kv_cache.LayerCacheView), so nothing in the compiled code
    depends on the layer number (one compilation of seconds instead of a minute).

    kernels: "torch" (the fast network's kernels), a name of kernel_choice.FUSED_VARIANTS (that
    fused Triton step), or "auto" (kernel_choice.choose_kernels measures them on a GPU and keeps
    the fastest that agrees). `fused_options` go to every fused step built (launch
    configurations, the attention split: benchmarks pin them so)."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        rows: int,
        capacity: int,
        *,
        capture: bool,
        compile_step: bool | str = False,
        kernels: str = "torch",
        fused_options: dict[str, Any] | None = None,
    ) -> None:
        cfg = model.config
        self.config, self.dtype = cfg, model.dtype
        self.net = network_for(model, fuse_qkv=device.type == "cuda" or kernels != "torch")
        self.rows, self.capacity = rows, capacity
        self.cache = KVCache.for_model(cfg, rows, capacity, dtype=self.dtype, device=device)
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)
        self.write_pos = torch.zeros(rows, dtype=torch.long, device=device)  # cache column of each row's next key
        self.cache.write_index = self.write_pos  # steps write there (prefills use cache_view)
        self.key_mask = torch.ones(rows, capacity, dtype=torch.bool, device=device)
        self.key_index = torch.arange(capacity, device=device)
        self.mask_zero = torch.zeros((), dtype=self.dtype, device=device)
        self.mask_neg_inf = torch.full((), -math.inf, dtype=self.dtype, device=device)
        self.capture = capture
        self.capture_seconds = 0.0
        self.greedy_loop = GreedyLoop(self)
        self.prefill_graphs: dict[int, tuple] = {}  # padded prompt length -> (graph, body, ids, last, out)
        self.span_graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.span_logits: dict[int, torch.Tensor] = {}  # each span graph's output buffer
        self.row_caches: dict[int, KVCache] = {}  # views over the first rows (eager steps of fewer rows)
        self.logits: torch.Tensor | None = None
        self.step_fn: Callable[..., torch.Tensor] = self._step
        self.compiled_layers: list = []  # (compiled layer, its cache view) with compile_step="layers"
        if compile_step == "layers":
            # one compilation shared by every layer (same code, same shapes; each layer reads
            # its own cache view)
            self.compiled_layers = [
                (torch.compile(layer, fullgraph=True, dynamic=False), LayerCacheView(self.cache, i))
                for i, layer in enumerate(self.net.layers)
            ]
        elif compile_step:
            self.step_fn = torch.compile(self._step, fullgraph=True, dynamic=False)
        self.kernel_report: dict[str, Any] = {}  # what kernel_choice measured ("auto")
        # fused: a fast.fused.FusedStep (Triton layers and head instead of the network's) or None
        self.fused: Any
        self.fused, self.kernels, candidates, tune_seconds = kernel_choice.fused_steps(self, kernels, fused_options or {})

        def body() -> None:
            self.logits = self.step_fn()

        self.graph = self._capture(body)
        if kernels == "auto" and self.graph is not None:
            kernel_choice.choose_kernels(self, candidates, body)
            if tune_seconds:
                self.kernel_report["tune_seconds"] = tune_seconds
        if self.graph is not None:
            logger.debug("captured a decode step for %d rows x %d positions in %.3f s", rows, capacity, self.capture_seconds)

    # ---------------------------------------------------------------- the step
    def _step(self, span: int | None = None, rows: int | None = None) -> torch.Tensor:
        """The step; attention reads the first `span` columns of the cache (all by default).
        `rows`: only the first rows step (an eager decoder; see `rows_for`)."""
        if self.fused is not None:
            return self._fused_step(span)
        S = span or self.capacity
        n = rows or self.rows
        cache = self.cache if n == self.rows else self._cache_of_first(n)
        write_pos, positions = self.write_pos[:n], self.positions[:n]  # views: the updates below reach every buffer
        allowed = self.key_mask[:n, :S] & (self.key_index[None, :S] <= write_pos[:, None])  # (n, S): written keys only
        # additive mask in the model's dtype, built once per step (a boolean one is converted
        # by attention in every layer)
        bias = torch.where(allowed, self.mask_zero, self.mask_neg_inf)  # (n, S)
        cache.read_span = S
        hidden = self.net.run(
            self.tokens[:n, None],
            positions[:, None],
            attn_mask=bias[:, None, None, :],  # (n, 1, 1, S)
            is_causal=False,
            cache=cache,
            layers=self.compiled_layers or None,
        )
        logits = self.net.logits(hidden[:, -1])  # (n, V)
        write_pos += 1
        positions += 1
        return logits

    def _cache_of_first(self, rows: int) -> KVCache:
        """The static-decoding cache over the first `rows` rows: the same memory, written at
        those rows' write positions."""
        view = self.row_caches.get(rows)
        if view is None:
            view = self.row_caches[rows] = self.cache.first_rows(rows)
            view.write_index = self.write_pos[:rows]
        return view

    def rows_for(self, busy: int) -> int:
        """How many of the first rows a step runs to serve the first `busy`: the row bucket
        holding them on an eager decoder (a step's cost grows with its rows: a CPU computes
        every one), all rows on a captured, fused or compiled one, whose shapes are fixed."""
        if self.graph is not None or self.fused is not None or self.compiled_layers or self.step_fn != self._step:
            return self.rows
        return min(self.rows, bucket(max(busy, 1), GRAPH_ROW_BUCKETS, 64))

    def _fused_step(self, span: int | None = None) -> torch.Tensor:
        """`_step` with the fused Triton kernels (fast.fused.FusedStep): the same state in and
        out, the same logits within rounding."""
        S = span or self.capacity
        self.cache.read_span = S
        logits = self.fused(self.tokens, self.positions, self.write_pos, self.key_mask[:, :S])  # positions advanced
        self.write_pos += 1
        return logits

    def run_step(self, span: int | None = None, *, rows: int | None = None) -> torch.Tensor:
        """One step on the tokens already in `self.tokens`: logits (rows, V), valid until the next
        step (on a GPU, the graph's own output buffer).

        `rows` (a value of `rows_for`): only the first `rows` rows step; the others' buffers and
        cache are left as they are.

        `span`: no row attends beyond this many cache columns in this step. Attention then reads
        only the first columns (rounded up to GRAPH_LENGTH_STEP, one graph per rounded span,
        captured on first use): with many rows, reading the whole cache of every row costs more
        than reading the weights."""
        S = self.capacity if span is None else min(self.capacity, -(-span // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP)
        if rows is not None and rows != self.rows:
            if rows != self.rows_for(rows):
                raise ValueError(f"a step of {rows} rows: this decoder steps {self.rows_for(rows)} for them")
            return self._step(S, rows)
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
        """search's decode step through this decoder: tokens (n,) of the first n rows -> logits."""
        n = tokens.shape[0]
        self.tokens[:n] = tokens
        logits = self.run_step()[:n]
        if self.graph is not None:
            logits = logits.clone()  # the graph's buffer is overwritten by the next replay
        state.cache.length += 1
        return logits

    def greedy(
        self, first_logits: torch.Tensor, prompt: torch.Tensor, *, max_new: int, eos: torch.Tensor, pad: int, min_new: int
    ) -> torch.Tensor:
        """Greedy decoding with the token choice inside the captured step (greedy_graph)."""
        return self.greedy_loop.run(first_logits, prompt, max_new=max_new, eos=eos, pad=pad, min_new=min_new)

    # ---------------------------------------------------------------- prompts and decode state
    def cache_view(self, rows: int) -> KVCache:
        """A cache over the first `rows` rows of the captured buffers, for the eager prefill."""
        return self.cache.first_rows(rows)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The prompt pass of unpadded prompts (rows, P) as a captured graph: the prompts right-padded
        to a multiple of PREFILL_LENGTH_STEP, the logits taken at each prompt's last token. None
        where it does not pay (more than PREFILL_GRAPH_TOKENS tokens: the pass is then bound by
        its arithmetic, not by launching its kernels) or does not fit: prefill eagerly.

        Why: a small call's prompt pass launched kernel by kernel from Python is a fixed cost of
        several percent of a whole call. Causal attention keeps the padding out of the prompt's
        positions; the padding's keys land in cache columns >= P, which the decode step masks
        until it overwrites them. With capture=False (CPU tests) the same padded pass runs eagerly."""
        rows, P = input_ids.shape
        Pb = -(-P // PREFILL_LENGTH_STEP) * PREFILL_LENGTH_STEP
        if self.rows * Pb > PREFILL_GRAPH_TOKENS or Pb > min(self.capacity, self.config.max_position_embeddings):
            return None
        if Pb not in self.prefill_graphs:
            device = self.tokens.device
            ids = torch.zeros(self.rows, Pb, dtype=torch.long, device=device)
            last = torch.zeros(self.rows, dtype=torch.long, device=device)  # each row's last prompt column
            positions = torch.arange(Pb, device=device)[None, :]
            out: dict[str, torch.Tensor] = {}

            def body() -> None:
                view = self.cache.first_rows(self.rows)  # a fresh view each run: its length starts at 0
                hidden = self.net.run(ids, positions, attn_mask=None, is_causal=True, cache=view)  # (R, Pb, C)
                out["logits"] = self.net.logits(hidden[self.cache.row_ids, last])  # (R, V)

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
        return DecodeState(cache, self.positions[:rows], self.key_mask[:rows], self.net, graph=self)

    # ---------------------------------------------------------------- capture and replay
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
        """Each graph's median replay time in milliseconds over kernel_choice.AUTO_REPLAYS rounds,
        one replay of each graph per round after two warm-up rounds, every replay from the middle
        of the cache (a step's cost grows with the keys it reads; the decode state is put back)."""
        saved = self._state()
        self.write_pos.fill_(self.capacity // 2)
        self.positions.fill_(self.capacity // 2)
        middle = self._state()
        times: list[list[float]] = [[] for _ in graphs]
        for i in range(kernel_choice.AUTO_REPLAYS + 2):
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


def static_decoder(model: nn.Module, device: torch.device, rows: int, total_length: int, cfg: GenerationConfig) -> StaticDecoder | None:
    """The static step for this call's bucket (captured on a GPU), built on first use and kept
    for `model`; None = eager steps (a CPU without cuda_graph=True, training mode, a failed capture)."""
    wanted = cfg.cuda_graph
    on_cuda = device.type == "cuda"
    if wanted is False or (wanted is None and not on_cuda) or model.training:
        for name, asked in (("compile_step", cfg.compile_step), ("decode_kernels='triton'", cfg.decode_kernels == "triton")):
            if asked:
                logger.warning("%s applies to the captured (CUDA-graph) decode step; ignored here (%s)", name,
                               "training mode" if model.training else f"cuda_graph={wanted}, device {device.type}")  # fmt: skip
        return None
    if on_cuda and model in _CAPTURE_FAILED:
        return None
    rows_b = bucket(rows, GRAPH_ROW_BUCKETS, 64)
    capacity = -(-total_length // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP
    # A graph holds the addresses of the weights it read: moving or converting the model
    # (new storage) must not replay an old graph, so the weights' addresses are in the key.
    weights = hash(tuple(p.data_ptr() for p in model.parameters()))
    key = (device, model.dtype, rows_b, capacity, weights, on_cuda, cfg.compile_step, cfg.decode_kernels)
    graphs = decoders_of(model)
    if key in graphs:
        graphs.move_to_end(key)
        graphs[key].net.refresh()  # weights it copied (fused q/k/v) follow in-place updates
        return graphs[key]
    kernels = kernel_choice.decode_kernels(model, device, rows_b, cfg)  # checks the model: once per decoder, not per call
    try:
        decoder = StaticDecoder(model, device, rows_b, capacity, capture=on_cuda, compile_step=cfg.compile_step, kernels=kernels)
    except RuntimeError as exc:  # capture unsupported here: eager steps from now on
        if wanted or kernels == "triton":  # asked for explicitly: say why it cannot be had
            raise
        logger.warning("CUDA graph capture failed (%s); decoding eagerly", exc)
        _CAPTURE_FAILED.add(model)
        return None
    graphs[key] = decoder
    while len(graphs) > MAX_GRAPHS:
        graphs.popitem(last=False)
    return decoder
