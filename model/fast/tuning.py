"""Launch configurations of the fused decode kernels: the first-guess rule, the autotuner that
times candidates on the GPU at hand, and the per-machine cache of what it measured
($BIOGPT_CACHE/fused_decode.json, default ~/.cache/biogpt-cli).

Why at run time: the best tile depends on the GPU (bandwidth, multiprocessors), and the first
guess was written without one. Callers that want fixed configurations (benchmarks sweeping
them) pass them to fused.fused_step (`configs=`, `split=`) instead of changing this module.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .triton_common import Config, pdl_unavailable_reason, sm_count, triton
from .triton_linear import row_linear, rule_config, unrolls
from .triton_step import decode_attention

logger = logging.getLogger("biogpt.model.fast")

# (device key, N, K) -> the configuration `tune` timed fastest; kept across processes in the cache file
_TUNED: dict[tuple[str, int, int], Config] = {}
# (device key, heads, head size) -> the attention kernel's columns per program `tune` timed
# fastest (0: one program per head and row over the whole span); same file
_TUNED_SPLIT: dict[tuple[str, int, int], int] = {}
_TUNED_LOADED = False
PDL_KEY = "|pdl"  # appended to the device key: configurations tuned for dependent launches
ATTENTION_SPLITS = (0, 64, 128, 256)  # what `tune` times for the attention kernel
ATTENTION_TUNE_SPAN = 384  # ... on a cache of this many columns (batch 1's first capacity), read up to its middle


def launch_config(
    n: int, k: int, sm_count: int, device_key: str | None = None, *, pdl: bool = False, overrides: dict[tuple[int, int], Config] | None = None
) -> Config:
    """(BLOCK_N, BLOCK_K, num_warps, unroll) for an (n, k) weight: `overrides`, else what `tune`
    timed fastest on this device (for the kernel launched dependently when `pdl`, else the
    plain launch's), else the rule (triton_linear.rule_config)."""
    if overrides and (n, k) in overrides:
        return overrides[(n, k)]
    if device_key is not None and pdl and (device_key + PDL_KEY, n, k) in _TUNED:
        return _TUNED[(device_key + PDL_KEY, n, k)]
    if device_key is not None and (device_key, n, k) in _TUNED:
        return _TUNED[(device_key, n, k)]
    return rule_config(n, k, sm_count)


def candidate_configs(n: int, k: int, sm_count: int) -> list[Config]:
    """What `tune` times for an (n, k) weight: the rule's configuration and the same with the
    other loop form, then its neighbours: the same tile over half as many programs and over
    twice as many, half the rows per program with half, the same or twice the tile, the same
    rows with half the tile, twice the tile with 8 warps. A neighbour is timed in both loop
    forms where unrolling stays within twice the rule's register budget. Why this many: a
    sweep of every configuration found most shapes' fastest outside a smaller set, and these
    neighbours hold nearly all of them at seconds a model, once per machine (BENCHMARKS.md)."""
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
    from ..hub import cache_root

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


def tune(model_config, device: torch.device, dtype: torch.dtype, *, timer: Callable[[Callable[[], object], int], float] = graph_us) -> float:
    """Time `candidate_configs` of each projection shape of a model (`model_config`) on `device` (one-row calls
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
    shapes = projection_shapes(model_config)
    if sum(n * k for n, k in shapes) * dtype.itemsize < MIN_TUNED_BYTES:
        return 0.0  # a small model's step is all launch latency: any configuration will do
    key = device_key(device, dtype)
    _load_tuned()
    missing = [(n, k) for n, k in shapes if (key, n, k) not in _TUNED]
    pdl = pdl_unavailable_reason(device) is None
    missing_pdl = [(n, k) for n, k in shapes if pdl and (key + PDL_KEY, n, k) not in _TUNED]
    heads = (model_config.num_attention_heads, model_config.head_dim)
    if not missing and not missing_pdl and (key, *heads) in _TUNED_SPLIT:
        return 0.0
    # a one-time pause of many seconds that would otherwise look like a hang
    logger.warning("timing the fused decode kernels on this GPU (%s), once per machine; kept in %s", key, _tuned_path())
    start = time.perf_counter()
    for n, k in dict.fromkeys(missing + missing_pdl):
        weights = weight_copies(n, k, device=device, dtype=dtype)
        call = _projection_call(model_config, device, dtype, n, k)
        for dependent in ((False,) if (n, k) in missing else ()) + ((True,) if (n, k) in missing_pdl else ()):
            tuned_key, configs = key, candidate_configs(n, k, sm_count(device))
            if dependent:  # after the plain round: its choice and the rule, in both loop forms (not all: time)
                best, rule = launch_config(n, k, sm_count(device), key), launch_config(n, k, sm_count(device))
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
        call = _attention_call(model_config, device, dtype)
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
    """The attention kernel's columns per program for this model shape on this device: what
    `tune` timed fastest, else 0 (one program per head and row)."""
    if triton is None:
        return 0
    _load_tuned()
    return _TUNED_SPLIT.get((device_key(device, dtype), heads, head_dim), 0)


def _attention_call(config, device: torch.device, dtype: torch.dtype) -> Callable[[int], torch.Tensor]:
    """One row's attention at the model's heads over a random cache of ATTENTION_TUNE_SPAN
    columns, keys written up to its middle: `call(split)`."""
    cfg = config
    H, D, S = cfg.num_attention_heads, cfg.head_dim, ATTENTION_TUNE_SPAN
    kv = torch.randn(2, 1, H, S, D, device=device).to(dtype)
    q = torch.randn(1, H * D, device=device).to(dtype)
    last = torch.full((1,), S // 2 - 1, dtype=torch.long, device=device)
    bias = torch.zeros(1, S, device=device, dtype=dtype)
    bias[:, S // 2 :] = float("-inf")
    out = torch.empty_like(q)
    counts = torch.zeros(H, dtype=torch.int32, device=device)
    return lambda split: decode_attention(q, kv, bias, span=S, last=last, out=out, split=split, counts=counts)


def _projection_call(config, device: torch.device, dtype: torch.dtype, n: int, k: int) -> Callable[[torch.Tensor, Config, bool], torch.Tensor]:
    """A one-row call of the kernel variant the fused step runs for the (n, k) projection (the
    LayerNorm prologue, the residual, the key/value write change its registers and so its best
    configuration), on random inputs: `call(weight, config, pdl)`."""
    cfg = config
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
