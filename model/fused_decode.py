"""A one-row decode layer in five Triton kernels, for the captured batch-1 step on a GPU.

Why: at one row a decode step reads every weight once and does almost nothing with it, so its
time is the kernels' count and how close each gets to the memory's bandwidth. Measured on an
H100 (BENCHMARKS.md, `benchmarks/gpu_kernels.py --breakdown`): the plain step is ~12.5 kernels
per layer (300 for the 347M model, 1.12 ms; 588 and 3.1 ms for BioGPT-Large), cuBLAS reads the
weights at ~1.1-1.9 TB/s at one row, LayerNorm alone costs 15% of the step and the key/value
write another 9%. Here each projection is one kernel that does the work around it as well:

    qkv  = LN1(x) @ Wqkv^T + b       LayerNorm in the prologue; q to a buffer, k and v straight
                                     into the cache at each row's device-held column
    attn = softmax(q K^T + mask) V   one program per head and row over the cache (or SDPA)
    x   += attn @ Wo^T + b           the residual added in the epilogue, in place
    h    = act(LN2(x) @ W1^T + b)    LayerNorm and GELU fused
    x   += h @ W2^T + b

before the first layer one kernel builds the input vectors and the attention mask
(step_prologue), after the last one logits = LN(x) @ W_lm^T is one kernel (FusedHead), and in
greedy search the token choice is one more (greedy_pick): ~126 kernels per step for the 347M
model instead of ~315, ~246 for BioGPT-Large instead of ~600.

Results are rounded where the plain step rounds (LayerNorm's output, each projection's output
before the residual or the activation), so the logits stay within the dtype's rounding of the
plain step's; float32 runs compute in float32. Used by `generation.StaticDecoder` (few rows;
`decode_kernels`), which in "auto" mode checks the logits against the plain step and keeps
whichever captured step replays fastest: the speed is measured where it runs, not assumed (the
kernels were written and tested without a GPU; `benchmarks/gpu_kernels.py --sweep` tunes their
launch configurations on one). Off the GPU they run only under Triton's interpreter
(TRITON_INTERPRET=1; the CPU tests).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .kv_cache import KVCache

try:  # Triton ships with torch's CUDA wheels; CPU installs have none (and need none)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

logger = logging.getLogger(__name__)

# the activations the kernel's epilogue computes (config.hidden_act -> kernel code)
ACTIVATIONS = {"gelu": 1, "gelu_new": 2, "gelu_pytorch_tanh": 2}
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TILE_ELEMENTS = 4096  # weights per program and loop iteration (8 KB in half precision)
GREEDY_BLOCK_V = 4096  # vocabulary entries per step of the greedy kernel's (unrolled) loop
DECODE_BLOCK_S = 64  # cache columns per step of the attention kernel's loop (spans are multiples of 128)
UNROLL_ELEMENTS = 8192  # unroll K when a program's whole weight slice (BLOCK_N x K) is at most this per 4 warps
# A launch configuration: (BLOCK_N, BLOCK_K, num_warps, unroll K).
Config = tuple[int, int, int, bool]
# Per (N, K) projection shape, replacing the tuned configuration and the rule in `launch_config`
# (benchmarks/gpu_kernels.py --sweep sets these).
CONFIG_OVERRIDES: dict[tuple[int, int], Config] = {}
# (device key, N, K) -> the configuration `tune` timed fastest; kept across processes in
# $BIOGPT_CACHE/fused_decode.json (default ~/.cache/biogpt-cli)
_TUNED: dict[tuple[str, int, int], Config] = {}
# (device key, heads, head size) -> the attention kernel's columns per program `tune` timed
# fastest (0: one program per head and row over the whole span); same file
_TUNED_SPLIT: dict[tuple[str, int, int], int] = {}
# Replaces the tuned split for every model (benchmarks/gpu_kernels.py sets it); None: tuned
SPLIT_OVERRIDE: int | None = None
_TUNED_LOADED = False
PDL_KEY = "|pdl"  # appended to the device key: configurations tuned for dependent launches
ATTENTION_SPLITS = (0, 64, 128, 256)  # what `tune` times for the attention kernel
ATTENTION_TUNE_SPAN = 384  # ... on a cache of this many columns (batch 1's first capacity), read up to its middle


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(model, device: torch.device) -> str | None:
    """Why the fused layer cannot run `model` on `device` (None: it can)."""
    if triton is None:
        return "Triton is not installed"
    if device.type != "cuda" and not interpreted():
        return f"the Triton kernels need a CUDA device (got {device.type})"
    cfg = model.config
    if cfg.hidden_act not in ACTIVATIONS:
        return f"hidden_act {cfg.hidden_act!r} has no fused kernel"
    if model.dtype not in DTYPES:
        return f"dtype {model.dtype} has no fused kernel"
    if cfg.head_dim & (cfg.head_dim - 1):
        return f"head_dim {cfg.head_dim} is not a power of two (the attention kernel's vector width)"
    from .modeling import Linear  # a plain projection (int8 layers replace it)

    for layer in model.biogpt.layers:
        attn = layer.self_attn
        if attn.qkv_proj is not None or any(
            type(m) is not Linear or m.bias is None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, layer.fc1, layer.fc2)
        ):
            return "the model's projections are not plain biased linear layers (quantized?)"
    return None


def launch_config(n: int, k: int, sm_count: int, device_key: str | None = None, *, pdl: bool = False) -> Config:
    """(BLOCK_N, BLOCK_K, num_warps, unroll) for an (n, k) weight: CONFIG_OVERRIDES, else what
    `tune` timed fastest on this device (for the kernel launched dependently when `pdl`, else
    the plain launch's), else the rule: the widest row block that still gives every
    multiprocessor two programs (memory parallelism), TILE_ELEMENTS weights per loop
    iteration, K unrolled when the program's weights fit the registers (`unrolls`)."""
    if (n, k) in CONFIG_OVERRIDES:
        return CONFIG_OVERRIDES[(n, k)]
    if device_key is not None and pdl and (device_key + PDL_KEY, n, k) in _TUNED:
        return _TUNED[(device_key + PDL_KEY, n, k)]
    if device_key is not None and (device_key, n, k) in _TUNED:
        return _TUNED[(device_key, n, k)]
    block_n = 4
    for candidate in (32, 16, 8):
        if -(-n // candidate) >= 2 * sm_count:
            block_n = candidate
            break
    block_k = max(64, min(TILE_ELEMENTS // block_n, triton.next_power_of_2(k)))
    return block_n, block_k, 4, unrolls(block_n, k, 4)


def unrolls(block_n: int, k: int, warps: int) -> bool:
    """Whether unrolling K keeps a program's in-flight weights within its registers: compiled for
    sm_90, 8 x 1024 half-precision weights per 4 warps take 72 registers, 4 x 6400 take 243 and
    8 x 6400 spill (BENCHMARKS.md)."""
    return block_n * k <= UNROLL_ELEMENTS * warps // 4


def candidate_configs(n: int, k: int, sm_count: int) -> list[Config]:
    """What `tune` times for an (n, k) weight: the rule's configuration and the same with the
    other loop form, then its neighbours: the same tile over half as many programs and over
    twice as many, half the rows per program with half, the same or twice the tile, the same
    rows with half the tile, twice the tile with 8 warps. A neighbour is timed in both loop
    forms where unrolling stays within twice the rule's register budget. Why this many: in an
    H200's sweep (BENCHMARKS.md, run 3) the fastest configuration of 6 of the 10 shapes was
    outside the five timed before; these hold 5 of the 6 (8-14 a shape, ~20 s a model, once
    per machine), and BioGPT-Large's step went from 2.01 to 1.87 ms."""
    bn, bk, warps, unroll = launch_config(n, k, sm_count)
    widest = max(64, triton.next_power_of_2(k))
    half_n = max(2, bn // 2)
    others = [
        (bn * 2, max(64, bk // 2), warps),
        (half_n, min(bk * 2, widest), warps),
        (half_n, bk, warps),
        (half_n, max(64, bk // 2), warps),
        (bn, max(64, bk // 2), warps),
        (bn, min(bk * 2, widest), 8),
    ]
    configs = [(bn, bk, warps, unroll), (bn, bk, warps, not unroll)]
    for b, t, w in others:
        configs.append((b, t, w, unrolls(b, k, w)))
        if unrolls(b, k // 2, w):  # the unrolled form fits twice the budget: the rolled one too
            configs.append((b, t, w, not unrolls(b, k, w)))
    return list(dict.fromkeys(configs))


def projection_shapes(config) -> list[tuple[int, int]]:
    """(N, K) of a layer's four projections (q/k/v fused, out_proj, fc1, fc2) and the LM head."""
    C, F_ = config.hidden_size, config.intermediate_size
    return [(3 * C, C), (C, C), (F_, C), (C, F_), (config.vocab_size, C)]


def device_key(device: torch.device, dtype: torch.dtype) -> str:
    """What a tuned configuration is valid for: the GPU, Triton's version, the weights' dtype."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "interpreter"
    return f"{name}|triton {triton.__version__}|{str(dtype).removeprefix('torch.')}"


def graph_us(fn: Callable[[], object], launches: int = 20) -> float:
    """Microseconds per call of `fn` on the GPU: `launches` back-to-back calls captured as one
    graph (no host launch cost in the figure; one call of a one-row kernel is a few µs, less
    than launching it from Python), median of 5 replays. A `fn` that cycles through
    `weight_copies` should get at least as many launches as there are copies."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # compile, choose kernels: outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(launches):
            fn()
    times = []
    for _ in range(6):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) * 1000 / launches)
    return sorted(times[1:])[2]


COLD_BYTES = 256 << 20  # weights cycled through when timing one projection: several times an H100's or H200's L2
MIN_TUNED_BYTES = 32 << 20  # one layer's and the LM head's weights below this: not tuned (tiny test models)
MAX_COPIES = 64  # ... in at most this many copies (347M's smallest projection: 64 x 2 MB, still 2.5 L2s)


def weight_copies(n: int, k: int, *, device: torch.device, dtype: torch.dtype, total_bytes: int = COLD_BYTES) -> list[torch.Tensor]:
    """Copies of a random (n, k) weight filling `total_bytes` (2 to MAX_COPIES): timed back to
    back through them, each launch reads its weight from memory as a real decode step does
    (every layer's weights differ), not from the L2 cache the previous launches filled."""
    w = torch.randn(n, k, device=device).mul_(k**-0.5).to(dtype)
    copies = min(MAX_COPIES, max(2, -(-total_bytes // w.nbytes))) if device.type == "cuda" else 2
    return [w] + [w.clone() for _ in range(copies - 1)]


def _tuned_path() -> Path:
    from .hub import cache_root

    return cache_root() / "fused_decode.json"


def _load_tuned() -> None:
    global _TUNED_LOADED
    if _TUNED_LOADED:
        return
    _TUNED_LOADED = True
    try:
        saved = json.loads(_tuned_path().read_text())
        for entry in saved["configs"]:
            block_n, block_k, warps, unroll = entry["config"]  # an older layout fails here: re-measured
            _TUNED.setdefault((entry["device"], entry["n"], entry["k"]), (int(block_n), int(block_k), int(warps), bool(unroll)))
        for entry in saved.get("attention", []):  # files written before the split attention have none
            _TUNED_SPLIT.setdefault((entry["device"], entry["heads"], entry["head_dim"]), int(entry["split"]))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged or older cache is re-measured, not fatal
        logger.warning("ignoring %s (%s); launch configurations will be timed again", _tuned_path(), exc)


def _save_tuned() -> None:
    path = _tuned_path()
    entries = [{"device": d, "n": n, "k": k, "config": list(c)} for (d, n, k), c in sorted(_TUNED.items())]
    attention = [{"device": d, "heads": h, "head_dim": hd, "split": c} for (d, h, hd), c in sorted(_TUNED_SPLIT.items())]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"configs": entries, "attention": attention}, f, indent=1)
        os.replace(tmp, path)  # atomic: concurrent processes see the old file or the new one
    except OSError as exc:
        logger.warning("could not save tuned launch configurations to %s: %s", path, exc)


def tune(model, *, timer: Callable[[Callable[[], object], int], float] = graph_us) -> float:
    """Time `candidate_configs` of each projection shape of `model` on its device (one-row calls
    of the kernel variant the step runs for that shape, on random weights, `timer` per call) and
    keep the fastest for `launch_config`. Where the kernels can be launched dependently
    (pdl_unavailable_reason), a second, shorter round per shape launches them so: the first
    round's choice and the rule, each in both loop forms (back-to-back dependent launches
    overlap, so the best tile may differ; kept under the device key + PDL_KEY). Then the
    attention kernel's split over the cache (ATTENTION_SPLITS, one row, a cache read up to the
    middle of ATTENTION_TUNE_SPAN columns) for `attention_split`. What is already tuned for this
    device (in this process or in the cache file) is skipped.
    Returns the seconds spent. Why at run time: the best tile depends on the GPU (bandwidth,
    multiprocessors), and the first guess was written without one."""
    device, dtype = model.device, model.dtype
    shapes = projection_shapes(model.config)
    if sum(n * k for n, k in shapes) * dtype.itemsize < MIN_TUNED_BYTES:
        return 0.0  # a small model's step is all launch latency: any configuration will do
    key = device_key(device, dtype)
    _load_tuned()
    missing = [(n, k) for n, k in shapes if (key, n, k) not in _TUNED]
    pdl = pdl_unavailable_reason(device) is None
    missing_pdl = [(n, k) for n, k in shapes if pdl and (key + PDL_KEY, n, k) not in _TUNED]
    heads = (model.config.num_attention_heads, model.config.head_dim)
    if not missing and not missing_pdl and (key, *heads) in _TUNED_SPLIT:
        return 0.0
    # a one-time pause of ~20 s (an H200, BioGPT-Large) that would otherwise look like a hang
    logger.warning("timing the fused decode kernels on this GPU (%s), once per machine; kept in %s", key, _tuned_path())
    start = time.perf_counter()
    for n, k in dict.fromkeys(missing + missing_pdl):
        weights = weight_copies(n, k, device=device, dtype=dtype)
        call = _projection_call(model, n, k)
        for dependent in ((False,) if (n, k) in missing else ()) + ((True,) if (n, k) in missing_pdl else ()):
            tuned_key, configs = key, candidate_configs(n, k, _sm_count(device))
            if dependent:  # after the plain round: its choice and the rule, in both loop forms (not all: ~4 s a model)
                best, rule = launch_config(n, k, _sm_count(device), key), launch_config(n, k, _sm_count(device))
                tuned_key, configs = key + PDL_KEY, list(dict.fromkeys(c for b in (best, rule) for c in (b, (*b[:3], not b[3]))))
            timed, errors = [], []
            for config in configs:
                turn = itertools.cycle(weights)
                try:
                    timed.append((timer(lambda: call(next(turn), config, dependent), max(20, len(weights))), config))
                except Exception as exc:  # noqa: BLE001 - a configuration that does not build here
                    errors.append(f"{config}: {type(exc).__name__}: {exc}")
                    logger.debug("launch configuration %s", errors[-1])
            if timed:
                _TUNED[(tuned_key, n, k)] = min(timed)[1]
                logger.debug("(%d, %d)%s: %s", n, k, " pdl" if dependent else "", ", ".join(f"{c} {t:.2f} us" for t, c in sorted(timed)))
            else:
                logger.warning("no launch configuration of the (%d, %d) projection ran (%s); it keeps the first guess", n, k, errors[0])
    if (key, *heads) not in _TUNED_SPLIT:
        call = _attention_call(model)
        timed_splits = []
        for split in ATTENTION_SPLITS:
            try:
                timed_splits.append((timer(lambda: call(split), 20), split))
            except Exception as exc:  # noqa: BLE001 - a split that does not build here
                logger.warning("attention split %d: %s: %s", split, type(exc).__name__, exc)
        if timed_splits:  # a tie keeps the smaller split (0: no split)
            _TUNED_SPLIT[(key, *heads)] = min(timed_splits)[1]
            logger.debug("attention splits: %s", ", ".join(f"{c} {t:.2f} us" for t, c in sorted(timed_splits)))
    _save_tuned()
    seconds = time.perf_counter() - start
    logger.info("tuned the fused decode kernels' launch configurations for %s in %.1f s", key, seconds)
    return seconds


def attention_split(heads: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> int:
    """The attention kernel's columns per program for this model shape on this device:
    SPLIT_OVERRIDE, else what `tune` timed fastest, else 0 (one program per head and row, the
    kernel as first measured)."""
    if SPLIT_OVERRIDE is not None:
        return SPLIT_OVERRIDE
    if triton is None:
        return 0
    _load_tuned()
    return _TUNED_SPLIT.get((_device_key_of(device, dtype), heads, head_dim), 0)


def _attention_call(model) -> Callable[[int], torch.Tensor]:
    """One row's attention at the model's heads over a random cache of ATTENTION_TUNE_SPAN
    columns, keys written up to its middle: `call(split)`."""
    cfg, device, dtype = model.config, model.device, model.dtype
    H, D, S = cfg.num_attention_heads, cfg.head_dim, ATTENTION_TUNE_SPAN
    kv = torch.randn(2, 1, H, S, D, device=device).to(dtype)
    q = torch.randn(1, H * D, device=device).to(dtype)
    last = torch.full((1,), S // 2 - 1, dtype=torch.long, device=device)
    bias = torch.zeros(1, S, device=device, dtype=dtype)
    bias[:, S // 2 :] = float("-inf")
    out = torch.empty_like(q)
    counts = torch.zeros(H, dtype=torch.int32, device=device)
    return lambda split: decode_attention(q, kv, bias, span=S, last=last, out=out, split=split, counts=counts)


def _projection_call(model, n: int, k: int) -> Callable[[torch.Tensor, Config, bool], torch.Tensor]:
    """A one-row call of the kernel variant the fused step runs for the (n, k) projection (the
    LayerNorm prologue, the residual, the key/value write change its registers and so its best
    configuration), on random inputs: `call(weight, config, pdl)`."""
    cfg, device, dtype = model.config, model.device, model.dtype
    C, H = cfg.hidden_size, cfg.num_attention_heads
    b = torch.randn(n, device=device).to(dtype)
    x = torch.randn(1, k, device=device).to(dtype)
    out = torch.zeros(1, n, device=device, dtype=dtype)  # the residual variants add into it
    norm = torch.nn.LayerNorm(k, device=device, dtype=dtype)
    if (n, k) == (3 * C, C):  # q/k/v: LayerNorm, keys and values into a cache
        cache = torch.zeros(2, 1, H, 128, C // H, device=device, dtype=dtype)
        columns = torch.zeros(1, dtype=torch.long, device=device)
        q = torch.empty(1, C, device=device, dtype=dtype)
        return lambda w, config, pdl=False: row_linear(x, w, b, out=q, layer_norm=norm, kv=(cache, columns), config=config, pdl=pdl)
    if (n, k) == (cfg.intermediate_size, C):  # fc1: LayerNorm and the activation
        return lambda w, config, pdl=False: row_linear(x, w, b, out=out, layer_norm=norm, activation=cfg.hidden_act, config=config, pdl=pdl)
    if n == cfg.vocab_size:  # the LM head: the final LayerNorm, no bias
        return lambda w, config, pdl=False: row_linear(x, w, None, out=out, layer_norm=norm, config=config, pdl=pdl)
    return lambda w, config, pdl=False: row_linear(x, w, b, out=out, residual=True, config=config, pdl=pdl)  # out_proj, fc2


if triton is not None:
    from triton.language.extra import cuda as _triton_cuda

    @triton.jit
    def _no_op():
        """A grid dependency call under the interpreter (one stream orders the kernels there
        anyway), or with a Triton that has none (PDL is then never asked for)."""
        pass

    # grid dependency control (Hopper's programmatic dependent launch): Triton 3.3 and later
    _HAS_GDC = hasattr(_triton_cuda, "gdc_wait")
    _REAL_GDC = _HAS_GDC and not interpreted()
    gdc_wait = _triton_cuda.gdc_wait if _REAL_GDC else _no_op
    gdc_launch_dependents = _triton_cuda.gdc_launch_dependents if _REAL_GDC else _no_op

    @triton.jit
    def _start_dependent(PDL: tl.constexpr):
        """A kernel that reads only what earlier kernels wrote: with PDL, let the next kernel
        launch, then wait for the previous one (see _row_linear_kernel)."""
        if PDL:
            gdc_launch_dependents()
            gdc_wait()

    @triton.jit
    def _weight_tile(w_ptr, offs_n, n_ok, k0, K: tl.constexpr, BLOCK_K: tl.constexpr):
        """w[offs_n, k0:k0+BLOCK_K], zeros outside the weight."""
        ks = k0 + tl.arange(0, BLOCK_K)
        return tl.load(w_ptr + offs_n[:, None] * K + ks[None, :], mask=n_ok[:, None] & (ks < K)[None, :], other=0.0)

    @triton.jit
    def _row_input(x_row, ln_w_ptr, ln_b_ptr, k0, mean, rstd, K: tl.constexpr, BLOCK_K: tl.constexpr, LAYER_NORM: tl.constexpr):
        """x[k0:k0+BLOCK_K] in float32, through LayerNorm when asked."""
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        x = tl.load(x_row + ks, mask=k_ok, other=0.0).to(tl.float32)
        if LAYER_NORM:  # LayerNorm's output, rounded to the model's dtype as the plain step's
            g = tl.load(ln_w_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            beta = tl.load(ln_b_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            x = ((x - mean) * rstd * g + beta).to(x_row.dtype.element_ty).to(tl.float32)
        return x

    @triton.jit
    def _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K: tl.constexpr, BLOCK_K: tl.constexpr, LAYER_NORM: tl.constexpr):
        """acc += w[offs_n, k0:k0+BLOCK_K] * x[k0:k0+BLOCK_K] (x through LayerNorm when asked)."""
        x = _row_input(x_row, ln_w_ptr, ln_b_ptr, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
        w = _weight_tile(w_ptr, offs_n, n_ok, k0, K, BLOCK_K)
        return acc + w.to(tl.float32) * x[None, :]

    @triton.jit
    def _row_linear_kernel(
        x_ptr, w_ptr, b_ptr, y_ptr, ln_w_ptr, ln_b_ptr, kv_ptr, pos_ptr,
        N, stride_xm, stride_ym, eps,
        kv_stride_kv, kv_stride_b, kv_stride_h, kv_stride_t,
        K: tl.constexpr, Q_WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_ROW: tl.constexpr, UNROLL: tl.constexpr,
        HAS_BIAS: tl.constexpr, LAYER_NORM: tl.constexpr, ACTIVATION: tl.constexpr, RESIDUAL: tl.constexpr,
        KV_WRITE: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """y[m, n] = act(LN(x[m]) . w[n] + b[n]) (+ y[m, n]) for BLOCK_N outputs n of row m.

        K is a compile-time constant. A one-row product is bound by memory latency: UNROLL puts
        every iteration's weight loads in flight at once (straight-line code), at the price of
        registers (compiled for sm_90: 243 registers for BioGPT-Large's fc2 at 4 x 1024, and
        spills at 8 x 512); the rolled loop needs 80-100 and relies on several programs per
        multiprocessor instead. `launch_config` decides, `tune` measures.

        PDL (programmatic dependent launch, launched with launch_pdl): the next kernel may start
        as soon as every program of this one has, and this one reads nothing another kernel
        writes before gdc_wait (which returns once the previous kernel has finished and its
        writes are visible). Unrolled, the program's whole weight slice (and bias, LayerNorm
        parameters: constants) is requested before the wait, so the loads overlap the
        previous kernel's tail instead of following it; rolled, the first loop iteration's
        weight tile."""
        if PDL:
            gdc_launch_dependents()
        m = tl.program_id(1)
        offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        x_row = x_ptr + m * stride_xm
        dtype = x_ptr.dtype.element_ty
        cols = tl.arange(0, BLOCK_ROW)  # a whole row (BLOCK_ROW >= K)
        if PDL and HAS_BIAS:  # constants only before the wait
            bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        if PDL and UNROLL:
            w_all = _weight_tile(w_ptr, offs_n, n_ok, 0, K, BLOCK_ROW)
            if LAYER_NORM:
                g_all = tl.load(ln_w_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
                beta_all = tl.load(ln_b_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
        elif PDL:
            w_first = _weight_tile(w_ptr, offs_n, n_ok, 0, K, BLOCK_K)
        if PDL:
            gdc_wait()
        if LAYER_NORM:  # the whole row in one load: mean, then biased variance
            row = tl.load(x_row + cols, mask=cols < K, other=0.0).to(tl.float32)
            mean = tl.sum(row, 0) / K
            centred = tl.where(cols < K, row - mean, 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 0) / K + eps)
        else:
            mean, rstd = 0.0, 1.0
        if PDL and UNROLL:  # the slice requested above, against the whole (normalised) row
            if LAYER_NORM:  # LayerNorm's output, rounded to the model's dtype as the plain step's
                x = (centred * rstd * g_all + beta_all).to(dtype).to(tl.float32)
            else:
                x = tl.load(x_row + cols, mask=cols < K, other=0.0).to(tl.float32)
            y = tl.sum(w_all.to(tl.float32) * x[None, :], 1)
        else:
            acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
            if UNROLL:  # straight-line code: every weight load of the program in flight at once
                for k0 in tl.static_range(0, K, BLOCK_K):
                    acc = _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
            else:  # a loop: few registers, many programs resident per multiprocessor
                if PDL:  # the first tile, requested before the wait
                    x = _row_input(x_row, ln_w_ptr, ln_b_ptr, 0, mean, rstd, K, BLOCK_K, LAYER_NORM)
                    acc += w_first.to(tl.float32) * x[None, :]
                for k0 in range(BLOCK_K if PDL else 0, K, BLOCK_K):
                    acc = _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
            y = tl.sum(acc, 1)
        if HAS_BIAS:
            if not PDL:
                bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
            y += bias
        if ACTIVATION != 0:
            y = y.to(dtype).to(tl.float32)  # the projection's output, as the plain step rounds it
            if ACTIVATION == 1:  # exact GELU
                y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
            else:  # tanh approximation; tanh(z) = 2 sigmoid(2z) - 1
                z = 0.7978845608028654 * (y + 0.044715 * y * y * y)
                y = 0.5 * y * (2.0 * tl.sigmoid(2.0 * z))
        y_row = y_ptr + m * stride_ym
        if RESIDUAL:  # y += projection: each program reads and writes only its own outputs
            y = y.to(dtype).to(tl.float32) + tl.load(y_row + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        if KV_WRITE:  # outputs [0, Q) are the query; [Q, 3Q) keys then values, into the cache
            tl.store(y_row + offs_n, y.to(dtype), mask=offs_n < Q_WIDTH)
            j = offs_n - Q_WIDTH
            which = j // Q_WIDTH  # 0 keys, 1 values
            head = (j % Q_WIDTH) // HEAD_DIM
            col = tl.load(pos_ptr + m)
            dst = kv_ptr + which * kv_stride_kv + m * kv_stride_b + head * kv_stride_h + col * kv_stride_t + j % HEAD_DIM
            tl.store(dst, y.to(dtype), mask=(offs_n >= Q_WIDTH) & n_ok)
        else:
            tl.store(y_row + offs_n, y.to(dtype), mask=n_ok)


    @triton.jit
    def _decode_attention_kernel(
        q_ptr, kv_ptr, bias_ptr, last_ptr, out_ptr, part_ptr, stat_ptr, count_ptr,
        stride_qb, kv_stride_kv, kv_stride_b, kv_stride_h, kv_stride_t, stride_bias_b, stride_ob, scale,
        SPAN: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, COLS: tl.constexpr, SPLITS: tl.constexpr,
        SPLITS_P2: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One query per row and head against the cache's first SPAN columns, plus the additive
        mask: online softmax over BLOCK_S columns at a time (unrolled: the span is a constant),
        scores and probabilities in float32. Blocks after the row's last written column are
        skipped: the static cache has room for the whole generation, and early in it most of
        the span is empty (the plain step reads it all, masked). PDL: as _row_linear_kernel's
        (everything it reads comes from earlier kernels: it waits first).

        SPLITS > 1 (split over the cache, "flash decoding"): program (h, b, s) reads columns
        [s * COLS, (s + 1) * COLS) and writes its running maximum, sum and weighted values to
        the scratch buffers; the last of a (row, head)'s programs to finish (an atomic count,
        put back to 0 for the next launch) combines them. Why: one program per head and row is
        25 programs for BioGPT-Large, on a GPU with 132 multiprocessors, each walking the
        cache block after block (5.3 us a layer on an H200)."""
        _start_dependent(PDL)
        h = tl.program_id(0)
        b = tl.program_id(1)
        if SPLITS == 1:
            start = 0
        else:
            start = tl.program_id(2) * COLS
        last = tl.load(last_ptr + b)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + b * stride_qb + h * HEAD_DIM + d).to(tl.float32) * scale
        keys = kv_ptr + b * kv_stride_b + h * kv_stride_h
        values = keys + kv_stride_kv
        best = tl.full([1], -1.0e30, dtype=tl.float32)  # finite: a block with every key masked adds nothing
        total = tl.zeros([1], dtype=tl.float32)
        acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
        for s0 in tl.static_range(0, COLS, BLOCK_S):
            if start + s0 <= last:  # (so below SPAN: last < SPAN, and SPAN is a multiple of BLOCK_S)
                cols = start + s0 + tl.arange(0, BLOCK_S)
                k = tl.load(keys + cols[:, None] * kv_stride_t + d[None, :]).to(tl.float32)  # (BLOCK_S, D)
                scores = tl.sum(k * q[None, :], 1) + tl.load(bias_ptr + b * stride_bias_b + cols).to(tl.float32)
                new_best = tl.maximum(best, tl.max(scores, 0))
                p = tl.exp(scores - new_best)  # (BLOCK_S,)
                shrink = tl.exp(best - new_best)
                v = tl.load(values + cols[:, None] * kv_stride_t + d[None, :]).to(tl.float32)  # (BLOCK_S, D)
                acc = acc * shrink + tl.sum(p[:, None] * v, 0)
                total = total * shrink + tl.sum(p, 0)
                best = new_best
        if SPLITS == 1:
            tl.store(out_ptr + b * stride_ob + h * HEAD_DIM + d, (acc / total).to(out_ptr.dtype.element_ty))
        else:
            pair = b * tl.num_programs(0) + h  # this (row, head)'s scratch
            split = tl.program_id(2)
            one = tl.arange(0, 1)
            tl.store(part_ptr + (pair * SPLITS + split) * HEAD_DIM + d, acc)
            tl.store(stat_ptr + (pair * SPLITS + split) * 2 + one, best)
            tl.store(stat_ptr + (pair * SPLITS + split) * 2 + 1 + one, total)
            tl.debug_barrier()  # every thread's stores before the count (the atomic releases them)
            arrived = tl.atomic_add(count_ptr + pair, 1, sem="acq_rel", scope="gpu")
            if arrived == SPLITS - 1:  # the last: the others' partials are visible (acquired)
                sp = tl.arange(0, SPLITS_P2)
                ok = sp < SPLITS
                rows = pair * SPLITS + sp
                bests = tl.load(stat_ptr + rows * 2, mask=ok, other=-1.0e30, cache_modifier=".cg")  # from L2, not a stale L1
                totals = tl.load(stat_ptr + rows * 2 + 1, mask=ok, other=0.0, cache_modifier=".cg")
                parts = tl.load(part_ptr + rows[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0, cache_modifier=".cg")
                overall = tl.max(bests, 0)
                weight = tl.exp(bests - overall)  # (SPLITS_P2,): 0 for splits with no key
                combined = tl.sum(weight[:, None] * parts, 0) / tl.sum(weight * totals, 0)
                tl.store(out_ptr + b * stride_ob + h * HEAD_DIM + d, combined.to(out_ptr.dtype.element_ty))
                tl.store(count_ptr + pair, 0)  # ready for the next launch


    @triton.jit
    def _greedy_pick_kernel(
        scores_ptr, eos_ptr, pad_ptr, cur_ptr, min_col_ptr, unfinished_ptr, out_ptr, last_col_ptr, tokens_ptr,
        stride_sb, stride_ob,
        V: tl.constexpr, E: tl.constexpr, E_BLOCK: tl.constexpr, BLOCK_V: tl.constexpr, BAN: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One row's greedy token and its bookkeeping (see greedy_pick)."""
        _start_dependent(PDL)
        b = tl.program_id(0)
        cur = tl.load(cur_ptr)
        row = scores_ptr + b * stride_sb
        e = tl.arange(0, E_BLOCK)
        eos = tl.load(eos_ptr + e, mask=e < E, other=-1)
        if BAN:  # min_new_tokens: end-of-sequence ids are out before column min_col
            banned_now = cur < tl.load(min_col_ptr)
        for v0 in tl.static_range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            x = tl.load(row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            if BAN:
                is_eos_col = tl.sum((cols[:, None] == eos[None, :]).to(tl.int32), 1) > 0
                x = tl.where(is_eos_col & banned_now, float("-inf"), x)
            m = tl.max(x, 0)
            i = tl.argmax(x, 0) + v0  # the first of equal maxima, as torch.argmax
            if v0 == 0:
                best, best_idx = m, i
            else:  # strictly greater: an earlier block keeps its ties
                take = m > best
                best_idx = tl.where(take, i, best_idx)
                best = tl.where(take, m, best)
        unfinished = tl.load(unfinished_ptr + b)
        token = tl.where(unfinished, best_idx.to(tl.int64), tl.load(pad_ptr))
        tl.store(tokens_ptr + b, token)
        tl.store(out_ptr + b * stride_ob + cur, token)
        if E > 0:
            is_eos = tl.sum(((eos == token) & (e < E)).to(tl.int32), 0) > 0
            last = tl.load(last_col_ptr + b)
            tl.store(last_col_ptr + b, tl.where(unfinished & is_eos, cur, last))
            tl.store(unfinished_ptr + b, unfinished & (is_eos == 0))


    @triton.jit
    def _step_prologue_kernel(
        tokens_ptr, positions_ptr, write_ptr, key_mask_ptr, tok_emb_ptr, pos_emb_ptr, x_ptr, bias_ptr,
        stride_km, scale,
        C: tl.constexpr, BLOCK_C: tl.constexpr, S: tl.constexpr, BLOCK_S: tl.constexpr, OFFSET: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One row's input vector and attention mask (see step_prologue)."""
        _start_dependent(PDL)
        b = tl.program_id(0)
        dtype = x_ptr.dtype.element_ty
        token = tl.load(tokens_ptr + b)
        position = tl.load(positions_ptr + b)
        for c0 in tl.static_range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            ok = cols < C
            word = (tl.load(tok_emb_ptr + token * C + cols, mask=ok, other=0.0).to(tl.float32) * scale).to(dtype)
            where = tl.load(pos_emb_ptr + (position + OFFSET) * C + cols, mask=ok, other=0.0)
            tl.store(x_ptr + b * C + cols, (word.to(tl.float32) + where.to(tl.float32)).to(dtype), mask=ok)
        tl.store(positions_ptr + b, position + 1)
        last = tl.load(write_ptr + b)
        for s0 in tl.static_range(0, S, BLOCK_S):
            cols = s0 + tl.arange(0, BLOCK_S)
            ok = cols < S
            keep = tl.load(key_mask_ptr + b * stride_km + cols, mask=ok, other=0) != 0
            allowed = keep & (cols <= last)
            tl.store(bias_ptr + b * S + cols, tl.where(allowed, 0.0, float("-inf")).to(dtype), mask=ok)


def step_prologue(
    model, tokens: torch.Tensor, positions: torch.Tensor, write_pos: torch.Tensor, key_mask: torch.Tensor, *, pdl: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decode step's input vectors (B, 1, C): word embedding x embed_scale + position
    embedding, rounded as the model's two embeddings and the sum round them; the additive
    attention mask (B, S) over key_mask's S columns: 0 where the key is kept and already
    written (column <= write_pos), -inf elsewhere; then positions += 1. One kernel per step
    instead of eight."""
    from .modeling import POSITION_OFFSET

    B, S = key_mask.shape
    body = model.biogpt
    C = body.embed_tokens.weight.shape[1]
    x = torch.empty(B, 1, C, dtype=model.dtype, device=tokens.device)
    bias = torch.empty(B, S, dtype=model.dtype, device=tokens.device)
    _step_prologue_kernel[(B,)](
        tokens, positions, write_pos, key_mask, body.embed_tokens.weight, body.embed_positions.weight, x, bias,
        key_mask.stride(0), float(body.embed_tokens.embed_scale),
        C=C, BLOCK_C=min(1024, triton.next_power_of_2(C)), S=S, BLOCK_S=min(1024, triton.next_power_of_2(S)),
        OFFSET=POSITION_OFFSET, PDL=pdl, num_warps=4, **_launch_options(pdl),
    )  # fmt: skip
    return x, bias


def greedy_pick(
    scores: torch.Tensor,
    *,
    eos: torch.Tensor,
    pad: torch.Tensor,
    cur: torch.Tensor,
    min_col: torch.Tensor,
    unfinished: torch.Tensor,
    out: torch.Tensor,
    last_col: torch.Tensor,
    tokens: torch.Tensor,
    ban: bool,
    pdl: bool = False,
) -> None:
    """The greedy loop's token choice in one kernel (one program per row) instead of ~12 small
    ones: end-of-sequence ids banned before column `min_col` when `ban`, argmax (first of equal
    maxima), pad for finished rows, the token written to `tokens` and to `out` at column `cur`,
    and rows reaching an end-of-sequence id marked finished with their last column. What
    generation.StaticDecoder._greedy_body computes with torch's kernels (a NaN score is not
    treated as the maximum, unlike torch.argmax)."""
    B, V = scores.shape
    E = eos.numel()
    _greedy_pick_kernel[(B,)](
        scores, eos if E else pad, pad, cur, min_col, unfinished, out, last_col, tokens,
        scores.stride(0), out.stride(0),
        V=V, E=E, E_BLOCK=max(2, triton.next_power_of_2(max(E, 1))), BLOCK_V=GREEDY_BLOCK_V, BAN=ban and E > 0,
        PDL=pdl, num_warps=4, **_launch_options(pdl),
    )  # fmt: skip


def decode_attention(
    q: torch.Tensor,
    kv: torch.Tensor,
    bias: torch.Tensor,
    *,
    span: int,
    last: torch.Tensor,
    out: torch.Tensor,
    pdl: bool = False,
    split: int = 0,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + bias) v for one query per row: q (B, H*D), kv one layer's cache
    (2, B', H, S, D) read over its first `span` columns, bias (B, span) additive (0 or -inf, at
    least one key allowed per row, every key after column `last[b]` masked), out (B, H*D). What
    SDPA computes in the plain step (cuDNN's kernel takes ~6 us per layer at one row on an H100,
    13% of the plain step; here one program per head and row reads its keys and values once,
    up to its last written column).

    `split`: columns per program (a multiple of DECODE_BLOCK_S; 0: the whole span), the
    programs of a head and row combined by the last to finish; `counts`: that count, int32 of
    at least B*H zeros, kept by the caller from launch to launch (each launch leaves it zeroed,
    so a captured step needs one allocated outside its graph; None: allocated here)."""
    B = q.shape[0]
    H, D = kv.shape[2], kv.shape[4]
    if span % DECODE_BLOCK_S or bias.stride(1) != 1 or q.stride(1) != 1 or out.stride(1) != 1 or kv.stride(4) != 1:
        raise ValueError(f"decode_attention needs a span that is a multiple of {DECODE_BLOCK_S} and contiguous rows")
    if split % DECODE_BLOCK_S or split < 0:
        raise ValueError(f"decode_attention's split must be a multiple of {DECODE_BLOCK_S} columns, got {split}")
    splits = -(-span // split) if split else 1
    if splits > 1:
        if counts is None:
            counts = torch.zeros(B * H, dtype=torch.int32, device=q.device)
        if counts.numel() < B * H or counts.dtype != torch.int32:
            raise ValueError(f"decode_attention needs int32 counts for {B * H} (row, head) pairs")
        parts = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
        stats = torch.empty(B * H * splits, 2, dtype=torch.float32, device=q.device)  # running maximum, sum
    else:  # unused pointers: the query (Triton's interpreter copies each argument back; nothing writes these)
        parts = stats = counts = q
    _decode_attention_kernel[(H, B, splits)](
        q, kv, bias, last, out, parts, stats, counts,
        q.stride(0), kv.stride(0), kv.stride(1), kv.stride(2), kv.stride(3), bias.stride(0), out.stride(0), D**-0.5,
        SPAN=span, HEAD_DIM=D, BLOCK_S=DECODE_BLOCK_S, COLS=split if splits > 1 else span, SPLITS=splits,
        SPLITS_P2=triton.next_power_of_2(splits), PDL=pdl, num_warps=4, **_launch_options(pdl),
    )  # fmt: skip
    return out


def row_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    out: torch.Tensor,
    layer_norm: torch.nn.LayerNorm | None = None,
    activation: str | None = None,
    residual: bool = False,
    kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    config: Config | None = None,
    pdl: bool = False,
) -> torch.Tensor:
    """act(LN(x) @ weight^T + bias) into `out` (M, N), one program per BLOCK_N outputs and row.

    `residual`: add into `out`'s current values (out += ...). `kv` = (layer cache (2, B, H, S, D),
    each row's column (M,)): outputs from `out.shape[1]` on are keys then values, written into the
    cache at the row's column; `out` then receives only the query. `pdl`: launched as a
    programmatic dependent launch (see pdl_unavailable_reason). x (M, K) and out need
    contiguous rows; weight (N, K) must be contiguous."""
    M, K = x.shape
    N = weight.shape[0]
    if weight.stride() != (K, 1) or x.stride(1) != 1 or out.stride(1) != 1:
        raise ValueError("row_linear needs contiguous weight rows and contiguous x/out rows")
    if config is None:
        config = launch_config(N, K, _sm_count(x.device), _device_key_of(x.device, weight.dtype), pdl=pdl)
    block_n, block_k, warps, unroll = config
    if kv is not None:
        cache, columns = kv
        q_width, head_dim = out.shape[1], cache.shape[-1]
        kv_strides = (cache.stride(0), cache.stride(1), cache.stride(2), cache.stride(3))
    # unused pointers get the weight, which nothing writes (Triton's interpreter copies each argument back)
    if kv is None:  # Q_WIDTH and HEAD_DIM unused: constants that do not split compilations by N
        cache, columns, q_width, head_dim, kv_strides = weight, weight, 1, 1, (0, 0, 0, 0)
    ln_w, ln_b, eps = (layer_norm.weight, layer_norm.bias, layer_norm.eps) if layer_norm is not None else (weight, weight, 0.0)
    grid = (triton.cdiv(N, block_n), M)
    _row_linear_kernel[grid](
        x, weight, weight if bias is None else bias, out, ln_w, ln_b, cache, columns,
        N, x.stride(0), out.stride(0), eps, *kv_strides,
        K=K, Q_WIDTH=q_width, HEAD_DIM=head_dim, BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_ROW=triton.next_power_of_2(K), UNROLL=unroll,
        HAS_BIAS=bias is not None, LAYER_NORM=layer_norm is not None, ACTIVATION=ACTIVATIONS[activation] if activation else 0,
        RESIDUAL=residual, KV_WRITE=kv is not None, PDL=pdl, num_warps=warps, **_launch_options(pdl),
    )  # fmt: skip
    return out


_SM_COUNTS: dict[Any, int] = {}
_DEVICE_KEYS: dict[tuple[torch.device, torch.dtype], str] = {}


def _device_key_of(device: torch.device, dtype: torch.dtype) -> str:
    if (device, dtype) not in _DEVICE_KEYS:
        _DEVICE_KEYS[(device, dtype)] = device_key(device, dtype)
    return _DEVICE_KEYS[(device, dtype)]


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # interpreter runs: an H100's count, so the CPU tests take the GPU's configs
    key = device.index if device.index is not None else torch.cuda.current_device()
    if key not in _SM_COUNTS:
        _SM_COUNTS[key] = torch.cuda.get_device_properties(key).multi_processor_count
    return _SM_COUNTS[key]


def pdl_unavailable_reason(device: torch.device) -> str | None:
    """Why the kernels cannot be launched as programmatic dependent launches on `device` (None:
    they can). Why PDL: a one-row step is ~5 small kernels a layer, and between two of them the
    GPU idles while the next grid launches and its first loads travel (~250 us of a 1.9 ms
    BioGPT-Large step on an H200, BENCHMARKS.md); with PDL the next kernel's programs start,
    and request their weights, while the previous kernel finishes. Hopper (compute capability
    9.0) and later; Triton 3.3 or later. Under the interpreter the waits do nothing (the CPU
    tests run the same code)."""
    if triton is None:
        return "Triton is not installed"
    if not _HAS_GDC:
        return f"Triton {triton.__version__} has no grid dependency control (3.3 or later has)"
    if interpreted():
        return None
    if device.type != "cuda":
        return f"programmatic dependent launch needs a CUDA device (got {device.type})"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        return f"programmatic dependent launch needs compute capability 9.0 or later (this GPU has {major}.{minor})"
    return None


def _launch_options(pdl: bool) -> dict[str, bool]:
    # passed only when asked: a Triton without the option would reject launch_pdl=False too
    return {"launch_pdl": True} if pdl and not interpreted() else {}


class FusedDecodeLayer:
    """A decoder layer of the fused step (FusedStep): the same call as BioGptDecoderLayer's, the
    same result within rounding, four kernels plus attention. Reads the layer's
    parameters at each call (q/k/v through the fused buffer generation keeps), so it follows
    in-place weight updates; the static decoder is rebuilt when weights move."""

    def __init__(
        self,
        layer,
        cache: KVCache,
        layer_idx: int,
        hidden_act: str,
        *,
        attention: str = "triton",
        pdl: bool = False,
        split: int = 0,
        counts: torch.Tensor | None = None,
    ) -> None:
        self.layer = layer
        self.kv = cache.kv[layer_idx]  # (2, B, H, S, D), this layer's part of the static cache
        self.cache = cache
        self.activation = hidden_act
        self.attention = attention  # "triton" (decode_attention) or "sdpa" (torch's, as the plain step)
        self.pdl = pdl  # the Triton kernels launched as programmatic dependent launches
        self.split, self.counts = split, counts  # decode_attention's split over the cache and its count buffer

    def __call__(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None, is_causal: bool, cache: Any) -> torch.Tensor:
        layer, attn = self.layer, self.layer.self_attn
        B, T, C = x.shape  # T == 1: one token per row
        H, D = attn.num_heads, attn.head_dim
        rows = x.view(B, C)  # the residual stream, updated in place below
        weight, bias = attn.qkv_fused  # type: ignore[misc]  (fused_step fused them)
        q = torch.empty(B, C, dtype=x.dtype, device=x.device)
        pdl = self.pdl
        row_linear(rows, weight, bias, out=q, layer_norm=layer.self_attn_layer_norm, kv=(self.kv, self.cache.write_index[:B]), pdl=pdl)
        S = self.cache.read_span or self.cache.capacity
        if self.attention == "triton" and attn_mask is not None and S % DECODE_BLOCK_S == 0:
            mask = attn_mask.view(B, S)  # the step's additive mask (B, 1, 1, S)
            y = decode_attention(
                q, self.kv, mask, span=S, last=self.cache.write_index[:B], out=torch.empty_like(q), pdl=pdl, split=self.split, counts=self.counts
            )  # (B, C)
        else:
            k, v = self.kv[0, :B, :, :S], self.kv[1, :B, :, :S]  # (B, H, S, D)
            y = F.scaled_dot_product_attention(q.view(B, 1, H, D).transpose(1, 2), k, v, attn_mask=attn_mask, is_causal=is_causal)
            y = y.transpose(1, 2).reshape(B, C)  # (B, C)
        row_linear(y, attn.out_proj.weight, attn.out_proj.bias, out=rows, residual=True, pdl=pdl)
        h = torch.empty(B, layer.fc1.weight.shape[0], dtype=x.dtype, device=x.device)
        row_linear(rows, layer.fc1.weight, layer.fc1.bias, out=h, layer_norm=layer.final_layer_norm, activation=self.activation, pdl=pdl)
        row_linear(h, layer.fc2.weight, layer.fc2.bias, out=rows, residual=True, pdl=pdl)
        return x


class FusedHead:
    """The final LayerNorm and the LM head as one kernel: logits (B, V) of the last hidden states
    (B, C), what `model.output_projection(model.biogpt.layer_norm(x))` computes."""

    def __init__(self, model, *, pdl: bool = False) -> None:
        self.norm, self.projection = model.biogpt.layer_norm, model.output_projection
        self.pdl = pdl

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.projection.weight
        out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
        return row_linear(x, weight, self.projection.bias, out=out, layer_norm=self.norm, pdl=self.pdl)


@dataclass
class FusedStep:
    """The static decode step in Triton kernels: the prologue (embeddings and attention mask),
    the layers, and, when the model's is a plain linear layer, the final LayerNorm with the LM
    head (`head`; None: the model's own). `pdl`: its Triton kernels (and greedy_pick's, which
    follows it) launched as programmatic dependent launches."""

    model: Any
    layers: list[FusedDecodeLayer]
    head: FusedHead | None
    attention: str
    pdl: bool = False
    split: int = 0  # the attention kernel's columns per program (0: the whole span; see decode_attention)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, write_pos: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of one token per row; `positions` advance by one (write_pos is the
        caller's to advance, after the layers have written and read its columns)."""
        x, bias = step_prologue(self.model, tokens, positions, write_pos, key_mask, pdl=self.pdl)  # (B, 1, C), (B, S)
        mask = bias[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.layers:
            x = layer(x, attn_mask=mask, is_causal=False, cache=None)
        if self.head is not None:
            return self.head(x[:, -1])
        return self.model.output_projection(self.model.biogpt.layer_norm(x)[:, -1])


def fused_step(model, cache: KVCache, *, attention: str = "triton", pdl: bool = False, split: int | None = None) -> FusedStep:
    """The fused layers over a static decoding cache, with `attention` ("triton" or "sdpa"),
    launched as programmatic dependent launches when `pdl` (see pdl_unavailable_reason); the
    Triton attention split over the cache by `split` columns per program (None: what `tune`
    chose for this GPU, see attention_split)."""
    from .modeling import Linear

    act = model.config.hidden_act
    for layer in model.biogpt.layers:  # one (3C, C) buffer per layer: the qkv kernel reads it
        if layer.self_attn.qkv_fused is None or not layer.self_attn._fused_views_intact():
            layer.self_attn.fuse_qkv()
    cfg = model.config
    if split is None:
        split = attention_split(cfg.num_attention_heads, cfg.head_dim, cache.kv.device, model.dtype) if attention == "triton" else 0
    # one count per (row, head), shared by the layers (their kernels run one after another) and
    # allocated here, outside any captured graph: each launch leaves it zeroed for the next
    counts = torch.zeros(cache.kv.shape[2] * cfg.num_attention_heads, dtype=torch.int32, device=cache.kv.device) if split else None
    layers = [
        FusedDecodeLayer(layer, cache, i, act, attention=attention, pdl=pdl, split=split, counts=counts)
        for i, layer in enumerate(model.biogpt.layers)
    ]
    head = model.output_projection
    plain_head = type(head) is Linear and head.weight.is_contiguous() and head.weight.dtype == model.dtype
    return FusedStep(model, layers, FusedHead(model, pdl=pdl) if plain_head else None, attention, pdl, split)


__all__ = [
    "FusedDecodeLayer",
    "FusedHead",
    "FusedStep",
    "candidate_configs",
    "decode_attention",
    "fused_step",
    "graph_us",
    "greedy_pick",
    "attention_split",
    "launch_config",
    "pdl_unavailable_reason",
    "step_prologue",
    "row_linear",
    "tune",
    "unavailable_reason",
]
