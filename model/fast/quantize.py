"""Weight-only int8 quantization for CPU inference: `quantize_int8(model)` returns a copy.

Every linear layer of the blocks (q, k, v, out, fc1, fc2) keeps int8 weights with one float32
scale per output row and group of 64 inputs (symmetric, round to nearest); the LM head stays
bfloat16. Why: a decode step streams every weight once from memory, so bytes are the cost, and
this layout moves well under bfloat16's; one scale per row would exceed the 2% logit bound the
tests hold, one per 64 inputs stays within it (an int8 LM head would cost accuracy for few
bytes; not taken; numbers in BENCHMARKS.md). The products run in this project's VNNI kernel
(cpu_kernels.py) for up to cpu_kernels.MAX_ROWS rows; longer prompts, and machines without the
kernel, multiply the dequantized weights in bfloat16 with torch. The residual stream,
LayerNorms, attention and KV cache stay in float32. Inference only. The model quantized from
is left as it is: the copy shares nothing with it but the small layers it copies.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels

logger = logging.getLogger(__name__)

MIN_PARAMS = 1 << 16  # small layers (classification heads) stay in floating point


class Int8Linear(nn.Module):
    """int8 weights with one float32 scale per output row and group of 64 inputs, packed for
    the kernel (blocks of 4 rows, group by group; padding rows and columns are zero). Without
    the kernel on this machine, the dequantized bfloat16 weight is kept and multiplied instead."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        N, K = w.shape
        G, R = cpu_kernels.GROUP, cpu_kernels.ROWS
        Np, Kp = -(-N // R) * R, -(-K // G) * G
        groups = F.pad(w, (0, Kp - K, 0, Np - N)).reshape(Np, Kp // G, G)  # (Np, Kp/G, G)
        scales = (groups.abs().amax(dim=-1) / 127.0).clamp(min=1e-12)  # (Np, Kp/G)
        q = torch.round(groups / scales[..., None]).clamp(-127, 127).to(torch.int8)  # (Np, Kp/G, G)
        # sum over groups of scale x group sum of the weights: the kernel's activation offset
        corr = (scales.double() * q.sum(dim=-1, dtype=torch.float64)).sum(dim=-1)  # (Np,)
        self.in_features, self.out_features = K, N
        # Packed for the kernel: blocks of R rows, group by group, so it reads them in order.
        packed = q.reshape(Np // R, R, Kp // G, G).transpose(1, 2)  # (Np/R, Kp/G, R, G)
        self.register_buffer("weight_int8", packed.contiguous())
        self.register_buffer("scales", scales.reshape(Np // R, R, Kp // G).transpose(1, 2).contiguous())  # (Np/R, Kp/G, R)
        self.register_buffer("corr", corr.float(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))
        self.dequantized_cache = None if cpu_kernels.available() else self.dequantized()

    def dequantized(self) -> torch.Tensor:
        """The bfloat16 weight (out, in) these int8 values and scales stand for."""
        if cpu_kernels.available():
            return cpu_kernels.dequantize_int8(self.weight_int8, self.scales, self.out_features, self.in_features)
        blocks, ngroups, R, G = self.weight_int8.shape
        w = self.weight_int8.float() * self.scales[..., None]  # (Np/R, Kp/G, R, G)
        w = w.transpose(1, 2).reshape(blocks * R, ngroups * G)  # (Np, Kp)
        return w[: self.out_features, : self.in_features].to(torch.bfloat16).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if cpu_kernels.applies(x):
            return cpu_kernels.linear_int8(x, self.weight_int8, self.scales, self.corr, self.bias, x.dtype, self.out_features)
        # long prompts with the kernel: dequantize for this call only (compute-bound, oneDNN)
        weight = self.dequantized() if self.dequantized_cache is None else self.dequantized_cache
        return F.linear(x.to(torch.bfloat16), weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only, groups of {cpu_kernels.GROUP}"

    @classmethod
    def concat(cls, parts: "tuple[Int8Linear, ...]") -> "Int8Linear | None":
        """One layer computing `parts` side by side (their outputs concatenated), by joining the
        packed buffers: exactly the layer quantized from the concatenated weights (scales are per
        row). None when a part's rows do not fill whole blocks of cpu_kernels.ROWS."""
        if len({p.in_features for p in parts}) != 1 or any(p.out_features % cpu_kernels.ROWS for p in parts):
            return None
        if len({p.bias is None for p in parts}) != 1:
            return None
        joined = cls.__new__(cls)
        nn.Module.__init__(joined)
        joined.in_features, joined.out_features = parts[0].in_features, sum(p.out_features for p in parts)
        for name in ("weight_int8", "scales", "corr", "bias"):
            values = [getattr(p, name) for p in parts]
            joined.register_buffer(name, None if values[0] is None else torch.cat(values), persistent=name != "corr")
        caches = [p.dequantized_cache for p in parts]
        joined.dequantized_cache = None if caches[0] is None else torch.cat(caches)
        return joined


class Bf16Linear(nn.Module):
    """A linear layer whose weight is stored and multiplied in bfloat16 (float32 in and out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight_bf16", weight.detach().to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight_bf16, self.bias).to(x.dtype)


BF16_LAYERS = ("output_projection",)  # the LM head: see the module docstring


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of `model` for CPU inference, in eval mode: its large linear layers (int8 in
    the blocks, bfloat16 for the LM head) built from `model`'s current, ideally float32,
    weights, the rest copied. `model` is not changed; drop it when only the copy is needed."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 weight-only quantization is implemented for CPU inference")
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.weight.numel() >= MIN_PARAMS
    ]
    # deepcopy's memo maps each large layer to its quantized replacement: the copy is built with
    # them in place, and the float weights they replace are never copied
    memo: dict[int, object] = {}
    for name, module in targets:
        layer = Bf16Linear if name.rpartition(".")[2] in BF16_LAYERS else Int8Linear
        memo[id(module)] = layer(module.weight, module.bias)
    quantized = copy.deepcopy(model, memo)
    quantized.eval()
    quantized.quantization = "int8"  # type: ignore[attr-defined]
    if not cpu_kernels.available():
        logger.info("int8 kernel unavailable on this machine: int8 layers multiply dequantized bfloat16 weights")
    logger.info("quantized %d linear layers (weight-only int8, LM head bfloat16)", len(targets))
    return quantized
