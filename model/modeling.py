"""BioGPT in one file, read top-down: embeddings -> attention -> MLP -> block -> model -> heads.

The mathematics and the state-dict key names are transformers' BioGPT (itself fairseq's
`transformer_lm` with pre-LayerNorm blocks), so a transformers checkpoint loads with no renaming:
- token embeddings scaled by sqrt(hidden_size); learned positions with an offset of 2, computed
  from the attention mask so a left-padded row sees the same positions as an unpadded one;
- pre-LayerNorm blocks (LayerNorm eps 1e-5, as the reference: `layer_norm_eps` is not used),
  a final LayerNorm, and an LM head tied to the token embeddings;
- attention through `scaled_dot_product_attention`, with a preallocated KV cache (kv_cache.py).
Checkpoint I/O (from_pretrained / save_pretrained) lives in checkpoint.py and is mixed in here.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .checkpoint import PretrainedMixin
from .config import BioGptConfig
from .errors import InvalidOptionError
from .kv_cache import KVCache

POSITION_OFFSET = 2  # fairseq reserves positions 0 and 1 (padding_idx + 1)
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, used by fairseq and transformers alike


# ------------------------------------------------------------------------------ outputs
@dataclass
class BaseModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, C)
    past_key_values: KVCache | None = None


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None
    past_key_values: KVCache | None = None


@dataclass
class TokenClassifierOutput:
    logits: torch.Tensor  # (B, T, num_labels)
    loss: torch.Tensor | None = None
    past_key_values: KVCache | None = None


@dataclass
class SequenceClassifierOutput:
    logits: torch.Tensor  # (B, num_labels)
    loss: torch.Tensor | None = None
    past_key_values: KVCache | None = None


# ------------------------------------------------------------------------------ embeddings
class BioGptScaledWordEmbedding(nn.Embedding):
    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, embed_scale: float) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale


class BioGptLearnedPositionalEmbedding(nn.Embedding):
    """Rows 0 and 1 are never used by real tokens: position p reads row p + 2."""

    def __init__(self, max_positions: int, embedding_dim: int) -> None:
        super().__init__(max_positions + POSITION_OFFSET, embedding_dim)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(position_ids + POSITION_OFFSET)


def positions_from_mask(attention_mask: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """0-based positions counting only attended tokens; padding gets -1 (row 1, never attended)."""
    positions = torch.cumsum(attention_mask, dim=1) * attention_mask - 1  # (B, S)
    return positions[:, past_length:].long()


# ------------------------------------------------------------------------------ linear layers
def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _onednn_linear_available()


class Linear(nn.Linear):
    """nn.Linear (same parameters and keys) with a faster CPU path for float32 inference.

    For float32, F.linear runs MKL's GEMM/GEMV, which on the AMD EPYC machines we measure is
    1.6-2.7x slower than oneDNN's inner product on the same plain weights (347M shapes, 1 row:
    1024->4096 549 vs 980 us, LM head 3.6 vs 9.9 ms; 5 rows 963 vs 1974 us; 135 rows 5.8 vs 9.5
    ms). `torch.ops.mkldnn._linear_pointwise` reaches oneDNN without converting or copying the
    weights; it has no autograd, so it serves only no-grad CPU calls on layers large enough for
    the kernel choice to matter. Results differ from MKL's by float32 rounding (~1e-6 relative).
    bfloat16/float16 already reach oneDNN through F.linear; training uses F.linear unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            _ONEDNN_LINEAR
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and not torch.is_grad_enabled()
            and self.weight.dtype == torch.float32
            and self.weight.numel() >= 1 << 20
        ):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


# ------------------------------------------------------------------------------ attention
def _consecutive_slices(whole: torch.Tensor, parts: list[torch.Tensor]) -> bool:
    """Whether `parts` still live back to back at the start of `whole`'s memory."""
    step = parts[0].numel() * whole.element_size()
    return all(p.data_ptr() == whole.data_ptr() + i * step for i, p in enumerate(parts))


class BioGptAttention(nn.Module):
    def __init__(self, config: BioGptConfig, layer_idx: int) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_probs_dropout_prob
        self.layer_idx = layer_idx
        c = config.hidden_size
        self.k_proj = Linear(c, c)
        self.v_proj = Linear(c, c)
        self.q_proj = Linear(c, c)
        self.out_proj = Linear(c, c)
        # Set by quantize.py for inference: one (3C, C) projection instead of three, fewer calls
        # per decode step (q, k, v are then deleted).
        self.qkv_proj: nn.Module | None = None
        # Set by fuse_qkv(): (weight (3C, C), bias (3C,)) whose slices ARE q/k/v's parameters.
        self.qkv_fused: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def fuse_qkv(self) -> None:
        """Re-home q, k and v's parameters as slices of one (3C, C) buffer (same values, same
        Parameter objects, same state-dict keys), so inference can run one projection instead
        of three: two kernels fewer per layer and step on a GPU. Moving or converting the model
        gives each parameter its own storage again, which `_fused_views_intact` notices."""
        parts = (self.q_proj, self.k_proj, self.v_proj)
        # generate() fuses under inference mode: the buffer must still be a normal tensor, or
        # the model could never be trained again ("inference tensors cannot be saved for backward")
        with torch.inference_mode(False), torch.no_grad():
            weight = torch.cat([p.weight.detach() for p in parts])
            has_bias = parts[0].bias is not None
            bias = torch.cat([p.bias.detach() for p in parts]) if has_bias else None
        C = parts[0].weight.shape[0]
        for i, p in enumerate(parts):
            p.weight.data = weight[i * C : (i + 1) * C]
            if bias is not None:
                p.bias.data = bias[i * C : (i + 1) * C]
        self.qkv_fused = (weight, bias)

    def _fused_views_intact(self) -> bool:
        if torch.compiler.is_compiling():
            # storage addresses are not traceable; a compiled decode step is built for the
            # model's current weights (generation checks the views before building one)
            return True
        weight, bias = self.qkv_fused  # type: ignore[misc]
        parts = (self.q_proj, self.k_proj, self.v_proj)
        intact = _consecutive_slices(weight, [p.weight for p in parts]) and (
            bias is None or _consecutive_slices(bias, [p.bias for p in parts])
        )
        if not intact:  # the model was moved or converted: three projections again
            self.qkv_fused = None
        return intact

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """out_proj(attention(x)), or `residual` + that when a residual is given."""
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        if self.qkv_proj is not None:
            qkv = self.qkv_proj(x)  # (B, T, 3C)
        elif self.qkv_fused is not None and not torch.is_grad_enabled() and self._fused_views_intact():
            qkv = F.linear(x, *self.qkv_fused)  # (B, T, 3C)
        else:
            qkv = None
        if qkv is not None:
            q = qkv[..., :C].reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            # keys and values as one strided view: the cache stores both with one copy
            kv = qkv[..., C:].view(B, T, 2, H, D).permute(2, 0, 3, 1, 4)  # (2, B, H, T, D)
            k, v = kv[0], kv[1]
        else:
            q = self.q_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k = self.k_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            v = self.v_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            kv = None
        if cache is not None:
            kv = torch.stack((k, v)) if kv is None else kv  # (2, B, H, T, D)
            k, v = cache.update(self.layer_idx, kv)  # (B, H, S, D) with S = past + T
        if T == 1 and q.device.type == "cpu" and q.dtype in _HALF and not self.training and B * k.shape[2] >= 64:
            y = _one_query_attention(q, k, v, attn_mask)  # (B, H, 1, D)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal,
            )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        if residual is not None:
            return add_linear(residual, self.out_proj, y)
        return self.out_proj(y)


_HALF = (torch.bfloat16, torch.float16)


def _one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of one new token per row (a decode step) on a CPU in bfloat16/float16: two
    batched products and a softmax. Why: ATen's CPU attention kernel costs ~0.9 us per row and key
    here against ~50 us plus a little for this (347M shapes, bfloat16: 220 vs 75 us per layer at
    1 row x 256 keys, 3.8 vs 0.55 ms at 8 rows x 512 keys), so it is used from 64 rows x keys on.
    The result differs by bfloat16 rounding of the scores (relative error against float32 0.48% vs
    0.38% for one layer; decode-step logits of the whole model 1.36% either way)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, 1, S)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    return torch.matmul(scores.softmax(-1), v)  # (B, H, 1, D)


# ------------------------------------------------------------------------------ block (with its MLP)
class BioGptDecoderLayer(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)); fc1/fc2 keep the reference's keys."""

    def __init__(self, config: BioGptConfig, layer_idx: int) -> None:
        super().__init__()
        c = config.hidden_size
        self.self_attn = BioGptAttention(config, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.fc1 = Linear(c, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, c)
        self.final_layer_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.activation = _activation(config.hidden_act)
        self.dropout = config.hidden_dropout_prob
        self.activation_dropout = config.activation_dropout

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.fc1(x))
        x = F.dropout(x, p=self.activation_dropout, training=self.training)
        return self.fc2(x)

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
    ) -> torch.Tensor:
        if not self.training and accumulate_in_place(x):
            # the static decode step on a GPU: both residual additions accumulate into x (add_linear)
            x = self.self_attn(self.self_attn_layer_norm(x), attn_mask=attn_mask, is_causal=is_causal, cache=cache, residual=x)
            return add_linear(x, self.fc2, self.activation(self.fc1(self.final_layer_norm(x))))
        h = self.self_attn(self.self_attn_layer_norm(x), attn_mask=attn_mask, is_causal=is_causal, cache=cache)
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        h = self.mlp(self.final_layer_norm(x))
        return x + F.dropout(h, p=self.dropout, training=self.training)


class _Switch:
    """A process-wide mode, on within `with switch():` (nestable: the previous state comes back)."""

    def __init__(self, doc: str) -> None:
        self.on = False
        self.__doc__ = doc

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        saved, self.on = self.on, True
        try:
            yield
        finally:
            self.on = saved


in_place_residuals = _Switch(
    """Within this context, GPU inference may accumulate projections into the residual stream in
    place. Only the generation engine's static decode step turns it on: there every activation is
    its own, whereas a caller of the model (forward hooks, activation patching) may keep a layer's
    input and must not see it change."""
)

no_host_sync = _Switch(
    """Within this context the model takes no decision from tensor values on the host: a padding
    mask is always built, even when nothing is padded. Why: a CUDA graph capture fails on any
    host synchronisation, and a captured step must not bake in one batch's branch."""
)


def accumulate_in_place(x: torch.Tensor) -> bool:
    """Whether the residual stream `x` may take the output projections in place: inside
    `in_place_residuals()`, on a GPU, without autograd, on a contiguous stream."""
    return in_place_residuals.on and x.is_cuda and not torch.is_grad_enabled() and x.is_contiguous()


def add_linear(residual: torch.Tensor, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`residual + linear(x)`, with the product accumulated into `residual` in place (one GEMM
    with beta=1) and the bias added after. Why: written for torch versions where a single row's
    F.linear is a bias copy plus a GEMM (then this saves a kernel per projection). Measured on an
    H100 with torch 2.11 (benchmarks/gpu_kernels.py --breakdown): there cuBLASLt already fuses the
    bias for one row, and the captured step has the same 300 kernels and time either way (1.203
    vs 1.199 ms); kept because the compiled step (compile_step=True) was measured with it.
    Layers other than a plain Linear (int8) take the ordinary path."""
    if type(linear) is not Linear or not accumulate_in_place(residual):
        return residual + linear(x)
    out = residual.view(-1, residual.shape[-1])  # (B*T, C)
    out.addmm_(x.reshape(-1, x.shape[-1]), linear.weight.t())
    if linear.bias is not None:
        out.add_(linear.bias)
    return residual


def _activation(name: str):
    table = {
        "gelu": F.gelu,
        "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu,
        "silu": F.silu,
        "swish": F.silu,
    }
    if name not in table:
        from .errors import ConfigError

        raise ConfigError(f"hidden_act {name!r} is not supported; choose one of {', '.join(table)}")
    return table[name]


# ------------------------------------------------------------------------------ attention masks
def build_attention_mask(
    attention_mask: torch.Tensor | None, query_length: int, past_length: int
) -> tuple[torch.Tensor | None, bool]:
    """(attn_mask for SDPA, is_causal) for `query_length` new tokens after `past_length` cached ones.

    Unpadded batches need no mask tensor at all (SDPA's causal kernels). With padding, a boolean
    (B, 1, T, S) mask: causal, padding keys excluded, and every query may see itself, so a
    padding row never has an empty softmax (which would give NaN and poison later layers).
    """
    if attention_mask is None or (not no_host_sync.on and bool(attention_mask.all())):
        if past_length == 0:
            return None, query_length > 1
        if query_length == 1:
            return None, False
        attention_mask = None
    S = past_length + query_length
    device = attention_mask.device if attention_mask is not None else None
    q_pos = torch.arange(past_length, S, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    allowed = (k_pos <= q_pos)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :S].bool()  # (B, 1, T, S)
        allowed = allowed | (k_pos == q_pos)[None, None]
    return allowed, False


# ------------------------------------------------------------------------------ model
class BioGptPreTrainedModel(PretrainedMixin, nn.Module):
    config_class = BioGptConfig
    base_model_prefix = "biogpt"

    def __init__(self, config: BioGptConfig) -> None:
        super().__init__()
        self.config = config

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Heads tied to the input embeddings share the same Parameter (overridden where tied)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each block's activations during backward (transformers' method name)."""
        body = self if isinstance(self, BioGptModel) else self.biogpt  # type: ignore[attr-defined]
        body.gradient_checkpointing = True

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def fuse_qkv_projections(self) -> None:
        """`BioGptAttention.fuse_qkv` in every layer not already fused (or moved since). GPU
        generation calls it; a captured training step calls it first, so that a generative
        evaluation during training does not re-home q/k/v under its graphs."""
        for attn in self.modules():
            if isinstance(attn, BioGptAttention) and attn.qkv_proj is None:
                if attn.qkv_fused is None or not attn._fused_views_intact():
                    attn.fuse_qkv()


class BioGptModel(BioGptPreTrainedModel):
    base_model_prefix = ""

    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        c = config.hidden_size
        self.embed_tokens = BioGptScaledWordEmbedding(config.vocab_size, c, config.pad_token_id, config.embed_scale)
        self.embed_positions = BioGptLearnedPositionalEmbedding(config.max_position_embeddings, c)
        self.layers = nn.ModuleList(BioGptDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.layer_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.gradient_checkpointing = False
        if init:
            self.init_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> BaseModelOutput:
        """`attention_mask` covers the cached and the new tokens (B, past + T), as in transformers."""
        B, T = input_ids.shape
        if use_cache and past_key_values is None:
            past_key_values = KVCache.for_model(self.config, B, dtype=self.dtype, device=input_ids.device)
        cache = past_key_values if (use_cache or past_key_values is not None) else None
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {past + T} tokens exceeds max_position_embeddings "
                f"({self.config.max_position_embeddings})"
            )
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + T, device=input_ids.device)[None, :]
            else:
                position_ids = positions_from_mask(attention_mask, past)
        attn_mask, is_causal = build_attention_mask(attention_mask, T, past)
        hidden = self.run(input_ids, position_ids, attn_mask=attn_mask, is_causal=is_causal, cache=cache)
        return BaseModelOutput(last_hidden_state=hidden, past_key_values=cache)

    def run(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        layers: Sequence[tuple[Callable[..., torch.Tensor], Any]] | None = None,
    ) -> torch.Tensor:
        """The network itself, with positions and mask already decided (the generation engine's
        prefill and decode steps call this directly). `layers`: (layer, its cache) pairs standing
        in for self.layers and `cache` (the decode step's layer compiled once for all layers,
        each with its own cache view: StaticDecoder(compile_step="layers"))."""
        x = self.embed_tokens(input_ids) + self.embed_positions(position_ids)  # (B, T, C)
        x = F.dropout(x, p=self.config.hidden_dropout_prob, training=self.training)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for layer, layer_cache in layers or zip(self.layers, itertools.repeat(cache)):
            if self.training and self.config.layerdrop > 0.0 and torch.rand(()) < self.config.layerdrop:
                continue
            if checkpointing:  # recompute activations in backward: memory for compute
                x = torch.utils.checkpoint.checkpoint(
                    lambda h, layer=layer: layer(h, attn_mask=attn_mask, is_causal=is_causal, cache=None),
                    x,
                    use_reentrant=False,
                )
            else:
                x = layer(x, attn_mask=attn_mask, is_causal=is_causal, cache=layer_cache)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        return self.layer_norm(x)


# ------------------------------------------------------------------------------ heads
class BioGptForCausalLM(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        self.output_projection = Linear(config.hidden_size, config.vocab_size, bias=False)
        if init:
            self.init_weights()
        else:
            self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.output_projection.weight = self.biogpt.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.biogpt.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.output_projection

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        out = self.biogpt(input_ids, attention_mask, position_ids, past_key_values, use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.output_projection(hidden)  # (B, T, V)
        loss = None
        if labels is not None:
            # Next-token loss: position t predicts labels[t + 1]; -100 is ignored.
            shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]
            loss = F.cross_entropy(logits.float().flatten(0, 1), shifted.flatten(), ignore_index=-100)
        return CausalLMOutput(logits=logits, loss=loss, past_key_values=out.past_key_values)

    def quantize(self, method: str = "int8") -> "BioGptForCausalLM":
        """Weight-only int8 linear layers for fast CPU decoding (see quantize.py)."""
        from .quantize import quantize_int8

        if method != "int8":
            raise InvalidOptionError(f"unknown quantization {method!r}; supported: int8")
        return quantize_int8(self)  # type: ignore[return-value]

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        inputs: torch.Tensor | None = None,
        **kwargs,
    ):
        """transformers-compatible generation; see model/generation.py for the options.
        `inputs` is transformers' name of the prompt ids (its first positional parameter)."""
        from .generation import generate

        if (input_ids is None) == (inputs is None):
            raise TypeError("generate() needs the prompt ids once: input_ids or inputs")
        return generate(self, input_ids if inputs is None else inputs, attention_mask=attention_mask, **kwargs)


class BioGptForTokenClassification(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        if init:
            self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
    ) -> TokenClassifierOutput:
        out = self.biogpt(input_ids, attention_mask, position_ids, past_key_values, use_cache)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, L)
        loss = None
        if labels is not None:
            if attention_mask is not None:  # padding never counts, whatever its label
                labels = labels.masked_fill(attention_mask[:, -labels.shape[1] :] == 0, -100)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return TokenClassifierOutput(logits=logits, loss=loss, past_key_values=out.past_key_values)


class BioGptForSequenceClassification(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        if init:
            self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        out = self.biogpt(input_ids, attention_mask, position_ids, past_key_values, use_cache)
        logits = self.score(out.last_hidden_state)  # (B, T, L)
        B, T = input_ids.shape
        # Pool the rightmost non-pad token: right for right padding and for left padding alike.
        if self.config.pad_token_id is None:
            last = torch.full((B,), T - 1, device=logits.device)
        else:
            not_pad = (input_ids != self.config.pad_token_id).int()
            last = (torch.arange(T, device=logits.device, dtype=torch.int32) * not_pad).argmax(-1)
        pooled = logits[torch.arange(B, device=logits.device), last]  # (B, L)
        loss = None
        if labels is not None:
            loss = self._loss(pooled, labels)
        return SequenceClassifierOutput(logits=pooled, loss=loss, past_key_values=out.past_key_values)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        problem = self.config.problem_type
        if problem is None:
            if self.config.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
            self.config.problem_type = problem
        if problem == "regression":
            if self.config.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


MODEL_CLASSES = {
    "BioGptModel": BioGptModel,
    "BioGptForCausalLM": BioGptForCausalLM,
    "BioGptForTokenClassification": BioGptForTokenClassification,
    "BioGptForSequenceClassification": BioGptForSequenceClassification,
}

__all__ = [*MODEL_CLASSES, "BaseModelOutput", "CausalLMOutput", "TokenClassifierOutput", "SequenceClassifierOutput"]
