"""Weight-only int8 quantization for CPU inference.

fc2 keeps its weights as int8 with one float32 scale per output row (symmetric,
round-to-nearest); the other large linear layers store and multiply bfloat16 weights. Why this
mix (measured on this project's CPU, 347M shapes): int8 everywhere gives 2.0-2.3% relative error
of the teacher-forced logits (over the 2% bound) even with exact activations, so int8 goes only
where it is accurate enough: this mix stays at ~1.5%. Decode steps (one row) multiply int8 with
this project's VNNI kernel (cpu_kernels.py), 1.2-1.5x faster than torch's int8 kernel, which
serves several rows and CPUs without it. The residual stream, LayerNorms, attention and KV cache
stay in float32; the bfloat16 layers round their inputs to bfloat16. Inference only.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from . import cpu_kernels

logger = logging.getLogger(__name__)

MIN_PARAMS = 1 << 16  # small layers (classification heads) stay in floating point


class Int8Linear(nn.Module):
    """int8 weights, one float32 scale per output row (symmetric, round to nearest).

    A single row (a decode step) goes through this project's VNNI kernel when the CPU has it
    (cpu_kernels.py: 1.2-1.5x faster than torch's, activations kept at ~15 bits); several rows
    (prefill, beams) through `torch._weight_int8pack_mm` (activations rounded to bfloat16)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # (out,)
        q = torch.round(w / scales[:, None]).clamp(-128, 127).to(torch.int8).contiguous()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer("weight_int8", q)
        self.register_buffer("scales", scales.contiguous())
        self.register_buffer("scales_bf16", scales.to(torch.bfloat16), persistent=False)
        self.register_buffer("rowsum", q.sum(dim=1, dtype=torch.int32), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))
        self.fast = self.in_features <= cpu_kernels.MAX_INT8_K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast and cpu_kernels.applies(x):
            return cpu_kernels.linear_int8(x, self.weight_int8, self.scales, self.rowsum, self.bias, x.dtype)
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_int8, self.scales_bf16)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


class Bf16Linear(nn.Module):
    """A linear layer whose weight is stored and multiplied in bfloat16 (float32 in and out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight_bf16", weight.detach().to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight_bf16, self.bias).to(x.dtype)


INT8_LAYERS = ("fc2",)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace the large linear layers (int8 for fc2, bfloat16 for the others, the LM head
    included), from their current, ideally float32, weights. Returns the same model, in eval mode."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 weight-only quantization is implemented for CPU inference")
    # q, k and v become one bfloat16 projection: three calls (and input/output casts) fewer per
    # layer and step, measured ~1 ms per token on 2 cores
    from .modeling import BioGptAttention

    for attn in [m for m in model.modules() if isinstance(m, BioGptAttention)]:
        attn.fuse_qkv()
        attn.qkv_proj = Bf16Linear(*attn.qkv_fused)  # type: ignore[misc]
        attn.qkv_fused = None
        del attn.q_proj, attn.k_proj, attn.v_proj
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.weight.numel() >= MIN_PARAMS
    ]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = Int8Linear if attr in INT8_LAYERS else Bf16Linear
        setattr(parent, attr, layer(module.weight, module.bias))
    model.eval()
    model.quantization = "int8"  # type: ignore[attr-defined]
    logger.info("quantized %d linear layers to int8 (weight-only)", len(targets))
    return model
