"""CPU inference kernels the reference model does not use: oneDNN's float32 inner product,
one-query attention in half precision, and ATen's matrix-vector kernels for a single row.

Each is a plain function or a small callable over tensors the model already holds (no copy, no
change to the model); `network.FastNetwork` picks them per layer and call. Tests prove each
equal to what the reference computes, within the rounding stated where it is used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HALF = (torch.bfloat16, torch.float16)
ONEDNN_MIN_WEIGHTS = 1 << 20  # smaller layers: the kernel choice does not matter
ONE_QUERY_MIN_WORK = 64  # rows x keys from which one_query_attention beats ATen's attention


def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear_available()


class OneDnnLinear:
    """`linear(x)` for an `nn.Linear`, through oneDNN's inner product for float32 CPU calls.

    Why: for float32, F.linear runs MKL's GEMM/GEMV, which on the CPUs we measure is clearly
    slower than oneDNN's inner product on the same plain weights (BENCHMARKS.md), at one row as
    at a prompt's hundreds. `torch.ops.mkldnn._linear_pointwise` reaches oneDNN without
    converting or copying the weights; it has no autograd, so it serves inference only (the
    network that uses it runs under no_grad). Results differ from MKL's by float32 rounding
    (~1e-6 relative). The layer's weight is read at each call, so in-place updates and
    `p.data = ...` replacements are followed."""

    def __init__(self, linear: nn.Linear) -> None:
        self.linear = linear

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.linear.weight, self.linear.bias
        if x.dtype == torch.float32 and x.device.type == "cpu" and weight.dtype == torch.float32:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)

    @staticmethod
    def applies(linear: nn.Module) -> bool:
        """Whether `linear` is a plain float32 CPU `nn.Linear` large enough to gain from oneDNN."""
        w = getattr(linear, "weight", None)
        return (
            ONEDNN_LINEAR
            and w is not None
            and w.device.type == "cpu"
            and w.dtype == torch.float32
            and w.numel() >= ONEDNN_MIN_WEIGHTS
        )


def one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of one new token per row (a decode step), q (B, H, 1, D) against k, v
    (B, H, S, D): two batched products and a softmax. Why: for bfloat16/float16 on a CPU,
    ATen's attention kernel has a large cost per row and key that this does not (measured
    several times faster from ONE_QUERY_MIN_WORK rows x keys on; BENCHMARKS.md). The result
    differs from SDPA's by half-precision rounding of the scores (tests bound it)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, 1, S)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    return torch.matmul(scores.softmax(-1), v)  # (B, H, 1, D)


def one_query_applies(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether `one_query_attention` serves this call: one query per row, half precision, CPU,
    enough rows x keys for ATen's per-key cost to dominate."""
    B, _, T, _ = q.shape
    return T == 1 and q.device.type == "cpu" and q.dtype in HALF and B * k.shape[2] >= ONE_QUERY_MIN_WORK


class single_row_matvec:
    """Within this context, a CPU call for one row uses ATen's own reduced-precision
    matrix-vector kernels instead of oneDNN's. Why: for a single row they are faster (the bf16
    LM head most of all; BENCHMARKS.md), while oneDNN stays much faster for several rows
    (prefill, beams). Scoped to one decode step of the generation engine and restored on exit:
    it flips torch's own (thread-global) oneDNN switch, so nothing outside the step sees it."""

    def __init__(self, rows: int, device: torch.device) -> None:
        self.active = device.type == "cpu" and rows == 1

    def __enter__(self) -> None:
        if self.active:
            self.saved = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(False)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch._C._set_mkldnn_enabled(self.saved)
