"""The decoder for inference, built from a model's weights with this machine's faster kernels.

`FastNetwork(model)` computes what `model.biogpt(...)` and `model.output_projection` compute
(the reference, modeling.py) for inference, with positions and the attention mask decided by
the caller (the generation engine) and these substitutions, each proven equal to the reference
by tests:
- float32 CPU projections through oneDNN's inner product (cpu.OneDnnLinear), on the model's own
  weight tensors;
- one-query attention for half precision on a CPU (cpu.one_query_attention);
- q, k and v as one (3C, C) projection (`fuse_qkv`: GPU steps, the Triton layer, int8 copies):
  the step holds its own concatenated copy of the three weights, refreshed from the model by
  `refresh()` so in-place updates (training between generations) are followed.

Nothing here changes the model: its modules stay what they are, with their hooks and wrappers.
A layer whose modules are not exactly the reference's plain ones (a LoRA wrapper, a forward
hook, a subclass), and every layer of a model in training mode, runs through the reference
layer itself, so what the user wrapped or hooked is what runs.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import build_attention_mask, positions_from_mask
from .cpu import OneDnnLinear, one_query_applies, one_query_attention
from .quantize import Int8Linear


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _reference(module: nn.Module) -> bool:
    """Whether `module` is exactly one of modeling.py's classes (by name: this package never
    imports the model's module, which keeps the import graph acyclic)."""
    return type(module).__module__ == "biogpt.model.modeling"


def _plain_linear(module: nn.Module) -> bool:
    return type(module) is nn.Linear and not _hooked(module)


def projection(linear: nn.Module) -> Any:
    """What runs `linear(x)` in the fast network: oneDNN for a plain float32 CPU `nn.Linear`
    worth it, else the module itself (its own kernel, its hooks, its wrapper)."""
    if _plain_linear(linear) and OneDnnLinear.applies(linear):
        return OneDnnLinear(linear)
    return linear


class FusedQKV:
    """q, k and v of one layer as one projection: a (3C, C) copy of their weights (and biases).
    Why: one kernel instead of three per layer and step, which matters where a step is bound by
    its kernel count (a GPU decode step; the Triton layer reads it as one weight)."""

    def __init__(self, parts: Sequence[nn.Linear]) -> None:
        self.parts = tuple(parts)
        with torch.no_grad():
            self.weight = torch.cat([p.weight.detach() for p in parts])
            has_bias = parts[0].bias is not None
            self.bias = torch.cat([p.bias.detach() for p in parts]) if has_bias else None

    @staticmethod
    def applies(parts: Sequence[nn.Module]) -> bool:
        biases = {p.bias is None for p in parts if isinstance(p, nn.Linear)}
        return all(_plain_linear(p) for p in parts) and len(biases) == 1

    def refresh(self) -> None:
        """Copy the three layers' current weights into this projection's buffers (same addresses,
        so a captured graph that reads them stays valid)."""
        with torch.no_grad():
            torch.cat([p.weight.detach() for p in self.parts], out=self.weight)
            if self.bias is not None:
                torch.cat([p.bias.detach() for p in self.parts], out=self.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _fused_projection(attn: nn.Module, fuse: bool) -> Any:
    parts = (attn.q_proj, attn.k_proj, attn.v_proj)
    if all(type(p) is Int8Linear for p in parts):  # an int8 copy: one kernel call instead of three
        return Int8Linear.concat(parts)
    if fuse and FusedQKV.applies(parts):
        return FusedQKV(parts)
    return None


class FastLayer(nn.Module):
    """One decoder layer of the reference (BioGptDecoderLayer), inference only: the same call,
    the same result within the rounding of the kernels it substitutes."""

    def __init__(self, layer: nn.Module, *, fuse_qkv: bool) -> None:
        super().__init__()
        attn = layer.self_attn
        self.reference = layer
        self.num_heads, self.head_dim, self.layer_idx = attn.num_heads, attn.head_dim, attn.layer_idx
        self.ln1, self.ln2, self.activation = layer.self_attn_layer_norm, layer.final_layer_norm, layer.activation
        self.qkv = _fused_projection(attn, fuse_qkv)
        self.q, self.k, self.v = (projection(p) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        self.out, self.fc1, self.fc2 = projection(attn.out_proj), projection(layer.fc1), projection(layer.fc2)
        # The reference layer itself runs where substituting its parts could bypass what the user
        # put there (hooks on the layer or its attention, a class not modeling.py's), and in
        # training mode (dropout, autograd). LayerNorms and projections are called as the
        # modules they are (oneDNN only for exact nn.Linear), so their hooks and wrappers run.
        self.delegate = _hooked(layer) or _hooked(attn) or not (_reference(layer) and _reference(attn))

    def attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool, cache: Any) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        if self.qkv is not None:
            qkv = self.qkv(x)  # (B, T, 3C)
            q = qkv[..., :C].reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            # keys and values as one strided view: the cache stores both with one copy
            kv = qkv[..., C:].view(B, T, 2, H, D).permute(2, 0, 3, 1, 4)  # (2, B, H, T, D)
            k, v = kv[0], kv[1]
        else:
            q = self.q(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k = self.k(x).reshape(B, T, H, D).transpose(1, 2)
            v = self.v(x).reshape(B, T, H, D).transpose(1, 2)
            kv = None
        if cache is not None:
            k, v = cache.update(self.layer_idx, torch.stack((k, v)) if kv is None else kv)  # (B, H, S, D)
        if one_query_applies(q, k):
            y = one_query_attention(q, k, v, attn_mask)  # (B, H, 1, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)

    def forward(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None, is_causal: bool, cache: Any) -> torch.Tensor:
        if self.delegate or self.reference.training:
            return self.reference(x, attn_mask=attn_mask, is_causal=is_causal, cache=cache)
        x = x + self.attention(self.ln1(x), attn_mask, is_causal, cache)
        return x + self.fc2(self.activation(self.fc1(self.ln2(x))))


class FastNetwork:
    """The causal LM's decoder and head for the generation engine (see the module docstring).
    `run` takes positions and the attention mask already decided, as the engine's prefill and
    decode steps do; `layers` (the compiled step) stands in for `self.layers` with one
    (layer, cache) pair each."""

    def __init__(self, model: nn.Module, *, fuse_qkv: bool = False) -> None:
        body = model.biogpt
        # no reference to `model` itself: networks are kept per model in a weak dictionary
        self.config, self.dtype = model.config, model.dtype
        self.embed_tokens, self.embed_positions, self.norm = body.embed_tokens, body.embed_positions, body.layer_norm
        self.layers = [FastLayer(layer, fuse_qkv=fuse_qkv) for layer in body.layers]
        # the causal LM's head; the classification models' heads are applied by their callers
        self.head_module = getattr(model, "output_projection", None)
        self.head = projection(self.head_module) if self.head_module is not None else None
        self.fused_qkv = fuse_qkv and all(isinstance(layer.qkv, FusedQKV) for layer in self.layers)

    def refresh(self) -> None:
        """Re-read the weights this network copied (fused q/k/v) from the model."""
        for layer in self.layers:
            if isinstance(layer.qkv, FusedQKV):
                layer.qkv.refresh()

    def run(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: Any,
        layers: Sequence[tuple[Any, Any]] | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, C), after the final LayerNorm; the cache advances by T.
        `inputs_embeds` (B, T, C), scaled token embeddings as the model's embed_tokens gives them,
        stand in for embed_tokens(input_ids) (generate(inputs_embeds=...); input_ids is then unused)."""
        tokens = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        x = tokens + self.embed_positions(position_ids)  # (B, T, C)
        if self.norm.training:  # generating from a model in training mode: the reference's dropout
            x = F.dropout(x, p=self.config.hidden_dropout_prob, training=True)
        for layer, layer_cache in layers or [(layer, cache) for layer in self.layers]:
            x = layer(x, attn_mask=attn_mask, is_causal=is_causal, cache=layer_cache)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise TypeError("logits() needs a causal language model (this model has no LM head)")
        return self.head(hidden)


# The network last built for each model, with what it was built from: reused while the model's
# modules, tensors and hooks are the same (an int8 copy's joined q/k/v are not rebuilt per call).
_NETWORKS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, FastNetwork]]" = weakref.WeakKeyDictionary()


def _built_from(model: nn.Module, fuse_qkv: bool) -> tuple:
    modules = list(model.modules())
    return (
        fuse_qkv,
        model.training,
        tuple(id(m) for m in modules),
        tuple(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules),
        tuple(t.data_ptr() for t in itertools.chain(model.parameters(), model.buffers())),
    )


def network_for(model: nn.Module, *, fuse_qkv: bool = False) -> FastNetwork:
    """`FastNetwork(model, fuse_qkv=...)`, the one built last for `model` when nothing it was
    built from has changed (its copied weights refreshed: in-place updates are followed)."""
    key = _built_from(model, fuse_qkv)
    cached = _NETWORKS.get(model)
    if cached is not None and cached[0] == key:
        cached[1].refresh()
        return cached[1]
    net = FastNetwork(model, fuse_qkv=fuse_qkv)
    _NETWORKS[model] = (key, net)
    return net


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """What `model.biogpt(input_ids, attention_mask).last_hidden_state` computes, through the
    fast network, for scoring passes without a cache (the batch commands' teacher-forced
    log-probabilities, tagging, classification, perplexity). Why not `model(...)`: the model's
    own modules are plain, so this is where those passes get the faster CPU kernels. Positions
    and the mask follow the model's forward rule (masks.py)."""
    B, T = input_ids.shape
    if attention_mask is None:
        position_ids = torch.arange(T, device=input_ids.device)[None, :]
    else:
        position_ids = positions_from_mask(attention_mask)
    attn_mask, is_causal = build_attention_mask(attention_mask, T, 0)
    return network_for(model).run(input_ids, position_ids, attn_mask=attn_mask, is_causal=is_causal, cache=None)


def lm_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A causal LM's logits (B, T, V) for a scoring pass: `model(input_ids, attention_mask).logits`
    through the fast network (see `hidden_states`)."""
    return network_for(model).logits(hidden_states(model, input_ids, attention_mask))
