"""Which kernels a static decode step runs: torch's (through the fast network) or the fused
Triton layer (biogpt.model.fast.fused) in one of its variants, measured where it runs.

Why measured: the fused layer saves kernels per step, which pays where a step is bound by its
kernel count (few rows on a fast GPU) and not elsewhere; "auto" captures each candidate, checks
its logits against the plain step's (FUSED_TOLERANCE) and keeps whichever replays fastest, so
the choice is made on the GPU at hand, not assumed. The launch configurations the candidates
use are tuned once per machine (fast.tuning.tune, cached on disk).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError
from .config import GenerationConfig

logger = logging.getLogger("biogpt.model.generation")

AUTO_MAX_ROWS = 4  # decode_kernels="auto" measures the fused Triton layer up to this many rows
AUTO_REPLAYS = 15  # replays timed per candidate step
# Relative L2 error of the fused step's logits against the plain step's that "auto" accepts: a
# few units of the dtype's rounding.
FUSED_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
# The fused steps "auto" measures, by name: fast.fused.fused_step's options. The "+pdl" ones
# only where the kernels can be launched dependently (fast.triton_common.pdl_unavailable_reason).
# A StaticDecoder also takes one of these names as `kernels` (benchmarks/gpu_kernels.py).
FUSED_VARIANTS: dict[str, dict[str, Any]] = {
    "triton": {},
    "triton-sdpa": {"attention": "sdpa"},  # torch's attention kernel, in case the Triton one loses
    "triton+pdl": {"pdl": True},
    "triton-sdpa+pdl": {"attention": "sdpa", "pdl": True},
}


def decode_kernels(model: nn.Module, device: torch.device, rows: int, cfg: GenerationConfig) -> str:
    """The `kernels` a StaticDecoder gets: "auto" is only worth measuring for a captured step of
    few rows (more rows make the weights' reading, which cuBLAS does well, the larger part)
    without torch.compile; an explicit "triton" that cannot run is an error, not a fallback."""
    choice = cfg.decode_kernels
    if choice == "torch" or (choice == "auto" and (cfg.compile_step or rows > AUTO_MAX_ROWS or device.type != "cuda")):
        return "torch"
    from ..fast.fused import unavailable_reason

    reason = unavailable_reason(model, device)
    if reason is None:
        return choice
    if choice == "triton":
        raise InvalidOptionError(f"decode_kernels='triton': {reason}")
    logger.debug("fused decode kernels not considered: %s", reason)
    return "torch"


def fused_steps(decoder: Any, kernels: str, options: dict[str, Any]) -> tuple[Any, str, dict[str, Any], float]:
    """(fused step to run, its name, candidates for "auto", seconds spent tuning) for a decoder
    asked for `kernels`: nothing for "torch", that variant for a FUSED_VARIANTS name, every
    variant this device can launch for "auto" (tuned first when the decoder captures)."""
    if kernels == "torch":
        return None, "torch", {}, 0.0
    from ..fast import fused, tuning
    from ..fast.triton_common import pdl_unavailable_reason

    tune_seconds = 0.0
    device = decoder.cache.kv.device
    if decoder.capture:  # launch configurations timed on this GPU (once per machine: cached on disk)
        try:
            tune_seconds = tuning.tune(decoder.config, device, decoder.dtype)
        except Exception as exc:  # noqa: BLE001 - the kernels keep their first-guess configurations
            if kernels != "auto":
                raise
            logger.warning("could not tune the fused decode kernels (%s: %s)", type(exc).__name__, exc)
    if kernels in FUSED_VARIANTS:  # that one
        return fused.fused_step(decoder.net, decoder.cache, **FUSED_VARIANTS[kernels], **options), kernels, {}, tune_seconds
    pdl_reason = pdl_unavailable_reason(device)
    if pdl_reason is not None:
        logger.debug("fused decode kernels without programmatic dependent launch: %s", pdl_reason)
    candidates = {
        name: fused.fused_step(decoder.net, decoder.cache, **variant, **options)
        for name, variant in FUSED_VARIANTS.items()
        if pdl_reason is None or not variant.get("pdl")
    }
    return None, "torch", candidates, tune_seconds


def choose_kernels(decoder: Any, candidates: dict[str, Any], body: Callable[[], None]) -> None:
    """Capture the decoder's step again with each candidate; among the plain step and the
    candidates whose logits agree with its own (same state, one replay each, FUSED_TOLERANCE),
    keep the one that replays fastest (median of AUTO_REPLAYS, the steps timed in turn so that
    clock changes during the measurement favour none of them). Sets the decoder's graph, logits,
    fused step and `kernel_report` (what was measured)."""
    plain_graph, plain_logits = decoder.graph, decoder.logits
    want = decoder._replay_from_same_state(plain_graph, plain_logits).float()
    report: dict[str, Any] = {"rows": decoder.rows}
    # the Triton attention's columns per program (tuning's choice; 0: not split)
    report["attention_split"] = next((f.split for f in candidates.values() if f.attention == "triton"), 0)
    entries = [("torch", plain_graph, plain_logits, None)]
    tolerance = FUSED_TOLERANCE[decoder.dtype]
    for name, fused in candidates.items():
        try:
            decoder.fused = fused
            graph = decoder._capture_keeping_state(body)
            logits = decoder.logits
            got = decoder._replay_from_same_state(graph, logits).float()
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
    times = decoder._replay_ms([graph for _, graph, _, _ in entries])
    for (name, *_), ms in zip(entries, times):
        report[f"{name}_ms"] = ms
    fastest = min(range(len(entries)), key=lambda i: (times[i], i))  # a tie keeps torch's step
    decoder.kernels, decoder.graph, decoder.logits, decoder.fused = entries[fastest]
    decoder.kernel_report = {**report, "kernels": decoder.kernels}
    logger.info("decode step kernels for %d row(s): %s", decoder.rows, decoder.kernel_report)
