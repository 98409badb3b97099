"""A one-row decode layer in five Triton kernels, for the captured few-row step on a GPU.

Why: at one row a decode step reads every weight once and does almost nothing with it, so its
time is the kernels' count and how close each gets to the memory's bandwidth; in the plain step
LayerNorm and the key/value write alone are a sizeable part of it (BENCHMARKS.md). Here each
projection is one kernel that does the work around it as well:

    qkv  = LN1(x) @ Wqkv^T + b       LayerNorm in the prologue; q to a buffer, k and v straight
                                     into the cache at each row's device-held column
    attn = softmax(q K^T + mask) V   one program per head and row over the cache (or SDPA)
    x   += attn @ Wo^T + b           the residual added in the epilogue, in place
    h    = act(LN2(x) @ W1^T + b)    LayerNorm and GELU fused
    x   += h @ W2^T + b

before the first layer one kernel builds the input vectors and the attention mask
(triton_step.step_prologue), after the last one logits = LN(x) @ W_lm^T is one kernel
(FusedHead), and in greedy search the token choice is one more (triton_step.greedy_pick):
well under half the plain step's kernels.

Results are rounded where the plain step rounds, so the logits stay within the dtype's rounding
of the plain step's; float32 runs compute in float32. Used by generation.static.StaticDecoder
(few rows; `decode_kernels`), whose "auto" mode checks the logits against the plain step and
keeps whichever captured step replays fastest (generation.kernel_choice). The step reads the
fast network's weights (q/k/v through its fused copy), never the model's modules' state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..kv_cache import KVCache
from .network import FastLayer, FastNetwork, FusedQKV
from .triton_common import ACTIVATIONS, DTYPES, Config, interpreted, sm_count, triton
from .tuning import attention_split, device_key, launch_config
from .triton_linear import row_linear
from .triton_step import DECODE_BLOCK_S, decode_attention, step_prologue


def unavailable_reason(model: nn.Module, device: torch.device) -> str | None:
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
    for layer in model.biogpt.layers:
        attn = layer.self_attn
        if any(type(m) is not nn.Linear or m.bias is None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, layer.fc1, layer.fc2)):
            return "the model's projections are not plain biased linear layers (quantized?)"
    return None


class FusedDecodeLayer:
    """A decoder layer of the fused step (FusedStep): the same call as the fast network's layer,
    the same result within rounding, four kernels plus attention. Reads the weights at each call
    (q/k/v through the network's fused copy, which the engine refreshes), so it follows in-place
    weight updates; the static decoder is rebuilt when weights move."""

    def __init__(
        self,
        layer: FastLayer,
        cache: KVCache,
        hidden_act: str,
        *,
        configs: dict[str, Config],
        attention: str = "triton",
        pdl: bool = False,
        split: int = 0,
        counts: torch.Tensor | None = None,
    ) -> None:
        if not isinstance(layer.qkv, FusedQKV):
            raise ValueError("the fused layer needs the network's fused q/k/v (FastNetwork(fuse_qkv=True))")
        self.layer = layer
        ref = layer.reference
        self.out_proj, self.fc1, self.fc2 = ref.self_attn.out_proj, ref.fc1, ref.fc2
        self.kv = cache.kv[layer.layer_idx]  # (2, B, H, S, D), this layer's part of the static cache
        self.cache = cache
        self.activation = hidden_act
        self.configs = configs  # launch configuration per projection ("qkv", "out", "fc1", "fc2")
        self.attention = attention  # "triton" (decode_attention) or "sdpa" (torch's, as the plain step)
        self.pdl = pdl  # the Triton kernels launched as programmatic dependent launches
        self.split, self.counts = split, counts  # decode_attention's split over the cache and its count buffer

    def __call__(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None, is_causal: bool, cache: Any) -> torch.Tensor:
        layer, cfg = self.layer, self.configs
        B, T, C = x.shape  # T == 1: one token per row
        H, D = layer.num_heads, layer.head_dim
        rows = x.view(B, C)  # the residual stream, updated in place below
        qkv = layer.qkv
        q = torch.empty(B, C, dtype=x.dtype, device=x.device)
        pdl = self.pdl
        write = (self.kv, self.cache.write_index[:B])
        row_linear(rows, qkv.weight, qkv.bias, out=q, layer_norm=layer.ln1, kv=write, config=cfg["qkv"], pdl=pdl)
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
        row_linear(y, self.out_proj.weight, self.out_proj.bias, out=rows, residual=True, config=cfg["out"], pdl=pdl)
        h = torch.empty(B, self.fc1.weight.shape[0], dtype=x.dtype, device=x.device)
        row_linear(rows, self.fc1.weight, self.fc1.bias, out=h, layer_norm=layer.ln2, activation=self.activation, config=cfg["fc1"], pdl=pdl)
        row_linear(h, self.fc2.weight, self.fc2.bias, out=rows, residual=True, config=cfg["fc2"], pdl=pdl)
        return x


class FusedHead:
    """The final LayerNorm and the LM head as one kernel: logits (B, V) of the last hidden states
    (B, C), what `net.logits(net.norm(x))` computes."""

    def __init__(self, net: FastNetwork, *, config: Config, pdl: bool = False) -> None:
        self.norm, self.projection = net.norm, net.head_module
        self.config, self.pdl = config, pdl

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.projection.weight
        out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
        return row_linear(x, weight, self.projection.bias, out=out, layer_norm=self.norm, config=self.config, pdl=self.pdl)


@dataclass
class FusedStep:
    """The static decode step in Triton kernels: the prologue (embeddings and attention mask),
    the layers, and, when the model's is a plain linear layer, the final LayerNorm with the LM
    head (`head`; None: the network's own). `pdl`: its Triton kernels (and greedy_pick's, which
    follows it) launched as programmatic dependent launches."""

    net: FastNetwork
    layers: list[FusedDecodeLayer]
    head: FusedHead | None
    attention: str
    pdl: bool = False
    split: int = 0  # the attention kernel's columns per program (0: the whole span; see decode_attention)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, write_pos: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of one token per row; `positions` advance by one (write_pos is the
        caller's to advance, after the layers have written and read its columns)."""
        x, bias = step_prologue(self.net, tokens, positions, write_pos, key_mask, pdl=self.pdl)  # (B, 1, C), (B, S)
        mask = bias[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.layers:
            x = layer(x, attn_mask=mask, is_causal=False, cache=None)
        if self.head is not None:
            return self.head(x[:, -1])
        return self.net.logits(self.net.norm(x)[:, -1])


def fused_step(
    net: FastNetwork,
    cache: KVCache,
    *,
    attention: str = "triton",
    pdl: bool = False,
    split: int | None = None,
    configs: dict[tuple[int, int], Config] | None = None,
) -> FusedStep:
    """The fused layers over a static decoding cache, with `attention` ("triton" or "sdpa"),
    launched as programmatic dependent launches when `pdl` (see pdl_unavailable_reason); the
    Triton attention split over the cache by `split` columns per program (None: what tuning
    chose for this GPU); `configs`: launch configurations by (N, K) weight shape that replace
    the tuned ones (benchmarks sweep them)."""
    cfg, device, dtype = net.config, cache.kv.device, net.dtype
    if attention != "triton":  # torch's attention: nothing to split
        split = 0
    elif split is None:
        split = attention_split(cfg.num_attention_heads, cfg.head_dim, device, dtype)
    key, sms = device_key(device, dtype), sm_count(device)

    def config_of(weight: torch.Tensor) -> Config:
        return launch_config(*weight.shape, sms, key, pdl=pdl, overrides=configs)

    # one count per (row, head), shared by the layers (their kernels run one after another) and
    # allocated here, outside any captured graph: each launch leaves it zeroed for the next
    counts = torch.zeros(cache.kv.shape[2] * cfg.num_attention_heads, dtype=torch.int32, device=device) if split else None
    layers = []
    for layer in net.layers:
        ref = layer.reference
        weights = {"qkv": layer.qkv.weight, "out": ref.self_attn.out_proj.weight, "fc1": ref.fc1.weight, "fc2": ref.fc2.weight}
        layer_configs = {name: config_of(w) for name, w in weights.items()}
        layers.append(
            FusedDecodeLayer(layer, cache, cfg.hidden_act, configs=layer_configs, attention=attention, pdl=pdl, split=split, counts=counts)
        )
    head = net.head_module
    plain_head = type(head) is nn.Linear and head.weight.is_contiguous() and head.weight.dtype == dtype
    fused_head = FusedHead(net, config=config_of(head.weight), pdl=pdl) if plain_head else None
    return FusedStep(net, layers, fused_head, attention, pdl, split)
