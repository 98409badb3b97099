"""Weight-only int8 quantization for CPU inference.

The attention projections and fc1 keep their weights as int8 with one scale per output row
(symmetric, round-to-nearest) and multiply with `torch._weight_int8pack_mm`, which reads a
quarter of the bytes of fp32 weights: decoding at batch 1 is bound by reading weights, so it is
that much faster. fc2 and the LM head stay in bfloat16: measured on real abstracts, int8 there
pushed the teacher-forced logits past 2% relative error (all-int8: 2.3%; this mix: 1.7%).
The residual stream, LayerNorms, attention and KV cache stay in float32; only the matrix
inputs are rounded to bfloat16. Inference only (no gradients).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

MIN_PARAMS = 1 << 16  # small layers (classification heads) stay in floating point


class Int8Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # (out,)
        q = torch.round(w / scales[:, None]).clamp(-128, 127).to(torch.int8).contiguous()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer("weight_int8", q)
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_int8, self.scales)
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


BF16_LAYERS = ("fc2", "output_projection")


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace the large linear layers (int8 for attention and fc1, bfloat16 for fc2 and the LM
    head), from their current, ideally float32, weights. Returns the same model, in eval mode."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 weight-only quantization is implemented for CPU inference")
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.weight.numel() >= MIN_PARAMS
    ]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = Bf16Linear if attr in BF16_LAYERS else Int8Linear
        setattr(parent, attr, layer(module.weight, module.bias))
    model.eval()
    model.quantization = "int8"  # type: ignore[attr-defined]
    logger.info("quantized %d linear layers to int8 (weight-only)", len(targets))
    return model
