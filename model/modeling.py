"""BioGPT in one file, read top-down: embeddings -> attention -> MLP -> block -> model -> heads.

The mathematics and the state-dict key names are transformers' BioGPT (itself fairseq's
`transformer_lm` with pre-LayerNorm blocks), so a transformers checkpoint loads with no renaming:
- token embeddings scaled by sqrt(hidden_size); learned positions with an offset of 2, computed
  from the attention mask so a left-padded row sees the same positions as an unpadded one;
- pre-LayerNorm blocks (LayerNorm eps 1e-5, as the reference: `layer_norm_eps` is not used),
  a final LayerNorm, and an LM head tied to the token embeddings;
- attention through `scaled_dot_product_attention`, with a preallocated KV cache (kv_cache.py),
  or written out ("eager", config._attn_implementation) where a caller wants its weights;
- forward's arguments and outputs (outputs.py) are transformers': `cache` (or the former
  `past_key_values`) takes our KVCache, a transformers Cache or legacy tuples; `use_cache`,
  `return_dict`, `output_hidden_states`, `output_attentions` default to the config.
Checkpoint I/O (from_pretrained / save_pretrained) lives in checkpoint.py and is mixed in here;
positions and attention masks from a padding mask in masks.py (the generation engine uses them too).

This file is the reference network and nothing else: every module is a plain `nn.Linear`,
`nn.LayerNorm` or `nn.Embedding`, and no inference speed path lives here. The faster kernels
(oneDNN, one-query attention, fused q/k/v, int8, Triton, captured steps) live in
`biogpt.model.fast` and `biogpt.model.generation`, which read this model's weights and never
change it; this file does not import them (`generate` imports the engine when called).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .checkpoint import PretrainedMixin
from .config import BioGptConfig
from .errors import ConfigError
from .kv_cache import KVCache, model_cache, returned_cache
from .masks import build_attention_mask, positions_from_mask
from .outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)

POSITION_OFFSET = 2  # fairseq reserves positions 0 and 1 (padding_idx + 1)
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, used by fairseq and transformers alike


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
        self.offset = POSITION_OFFSET

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(position_ids + self.offset)


# ------------------------------------------------------------------------------ attention
class BioGptAttention(nn.Module):
    def __init__(self, config: BioGptConfig, layer_idx: int) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:  # checked here, as transformers does
            raise ConfigError(
                f"hidden_size ({config.hidden_size}) must be divisible by "
                f"num_attention_heads ({config.num_attention_heads})"
            )
        self.config = config  # read per call: `_attn_implementation` may change after building
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_probs_dropout_prob
        self.layer_idx = layer_idx
        c = config.hidden_size
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.q_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output (B, T, C), attention weights (B, H, T, S) under eager attention, else None)."""
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        q = self.q_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = self.v_proj(x).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer_idx, torch.stack((k, v)))  # (B, H, S, D) with S = past + T
        dropout = self.dropout if self.training else 0.0
        weights = None
        if self.config._attn_implementation == "eager":
            y, weights = eager_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.out_proj(y), weights


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    dropout: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What SDPA computes, written out so the weights (B, H, T, S) can be returned (transformers'
    "eager" attention, the one that gives `output_attentions`). `attn_mask`: boolean, True = may
    attend, as build_attention_mask gives it."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, S)
    if is_causal:
        T, S = scores.shape[-2:]
        attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    weights = F.dropout(scores.softmax(-1), p=dropout, training=dropout > 0)
    return weights @ v, weights


# ------------------------------------------------------------------------------ block (with its MLP)
class BioGptDecoderLayer(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)); fc1/fc2 keep the reference's keys."""

    def __init__(self, config: BioGptConfig, layer_idx: int) -> None:
        super().__init__()
        c = config.hidden_size
        self.self_attn = BioGptAttention(config, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(c, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, c)
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
        cache: Any,
        output_attentions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """The new hidden states (B, T, C); with `output_attentions`, (them, the attention weights
        or None under SDPA)."""
        h, weights = self.self_attn(self.self_attn_layer_norm(x), attn_mask=attn_mask, is_causal=is_causal, cache=cache)
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        h = self.mlp(self.final_layer_norm(x))
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        return (x, weights) if output_attentions else x


def _returned(output: Any, return_dict: bool | None, config: BioGptConfig) -> Any:
    """The output object, or its tuple (the fields that are set, in order) where the call or the
    config says return_dict=False."""
    return output if (config.return_dict if return_dict is None else return_dict) else output.to_tuple()


def _capturing_cuda_graph() -> bool:
    """Whether a CUDA graph is being captured on the current stream (no host synchronisation
    may happen then)."""
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


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


# ------------------------------------------------------------------------------ model
class BioGptPreTrainedModel(PretrainedMixin, nn.Module):
    config_class = BioGptConfig
    base_model_prefix = "biogpt"

    def __init__(self, config: BioGptConfig) -> None:
        super().__init__()
        self.config = config
        if config._attn_implementation is None:  # what transformers records when it builds a model
            config._attn_implementation = "sdpa"

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


class BioGptModel(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        c = config.hidden_size
        self.embed_tokens = BioGptScaledWordEmbedding(config.vocab_size, c, config.pad_token_id, config.embed_scale)
        self.embed_positions = BioGptLearnedPositionalEmbedding(config.max_position_embeddings, c)
        self.layers = nn.ModuleList(BioGptDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.layer_norm = nn.LayerNorm(c, eps=LAYER_NORM_EPS)
        self.gradient_checkpointing = False
        self._finish_construction(init=init)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        past_key_values: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple:
        """transformers' arguments, in its order. `attention_mask` covers the cached and the new
        tokens (B, past + T). Without `position_ids`, positions count only the attended tokens
        (masks.positions_from_mask: fairseq's and transformers' `generate` rule), so left padding
        does not shift them. `cache` (or the former `past_key_values`): see kv_cache.model_cache.
        `use_cache` defaults to the config's, except in training mode, where a cache is only
        cost (every key and value copied) and transformers turns it off for checkpointing too."""
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if past_key_values is not None:
            if cache is not None:
                raise ValueError("pass the cache once: cache or past_key_values (its former name)")
            cache = past_key_values
        if use_cache is None:
            use_cache = cfg.use_cache and not self.training
        want_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        want_hidden = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, C), scaled
        B, T = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        kv = model_cache(cache)
        if use_cache and kv is None:
            kv = KVCache.for_model(cfg, B, dtype=self.dtype, device=device)
        past = kv.length if kv is not None else 0
        if past + T > cfg.max_position_embeddings:
            raise ValueError(f"sequence of {past + T} tokens exceeds max_position_embeddings ({cfg.max_position_embeddings})")
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + T, device=device)[None, :]
            else:
                position_ids = positions_from_mask(attention_mask, past)
        # no look at the mask's values during a CUDA graph capture (the trainer's captured step)
        attn_mask, is_causal = build_attention_mask(attention_mask, T, past, check_padding=not _capturing_cuda_graph())
        x = inputs_embeds + self.embed_positions(position_ids)  # (B, T, C)
        x = F.dropout(x, p=cfg.hidden_dropout_prob, training=self.training)

        hidden_states: list[torch.Tensor] | None = [] if want_hidden else None
        attentions: list[torch.Tensor] | None = [] if want_attentions else None
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled() and kv is None
        for layer in self.layers:
            if self.training and cfg.layerdrop > 0.0 and torch.rand(()) < cfg.layerdrop:
                continue
            if hidden_states is not None:
                hidden_states.append(x)  # each layer's input: the embeddings, then layer outputs
            if checkpointing:  # recompute activations in backward: memory for compute
                # the function and its options are set by activation_checkpointing_enable (pretrained.py)
                out = self._gradient_checkpointing_func(
                    lambda h, layer=layer: layer(
                        h, attn_mask=attn_mask, is_causal=is_causal, cache=None, output_attentions=want_attentions
                    ),
                    x,
                )
            else:
                out = layer(x, attn_mask=attn_mask, is_causal=is_causal, cache=kv, output_attentions=want_attentions)
            if want_attentions:
                x, weights = out
                if weights is not None:  # SDPA gives none: attentions stay empty, as in transformers 5
                    attentions.append(weights)  # type: ignore[union-attr]
            else:
                x = out
        if kv is not None:
            kv.advance(T)
        x = self.layer_norm(x)
        if hidden_states is not None:
            hidden_states.append(x)  # the last one after the final LayerNorm, as transformers'
        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            cache=returned_cache(cache, kv),
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )
        return _returned(output, return_dict, cfg)


# ------------------------------------------------------------------------------ heads
class BioGptForCausalLM(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        self.output_projection = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._finish_construction(init=init)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.output_projection.weight = self.biogpt.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.biogpt.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.output_projection

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Any = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        *,
        past_key_values: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **loss_kwargs: Any,
    ) -> CausalLMOutputWithCrossAttentions | tuple:
        """transformers' arguments, in its order (see BioGptModel.forward). `logits_to_keep`: the
        last n positions (0: all) or the positions a tensor names. `shift_labels` (in
        `loss_kwargs`, where transformers takes it): the targets already aligned with the
        positions (B, T), used instead of shifting `labels`: sequence- and context-parallel
        trainers shift before they shard the sequence (the loss is computed when `labels` is
        given). `num_items_in_batch` (the Trainer passes it to a forward that takes keyword
        arguments): the loss is the sum over the batch's target tokens divided by it, so that
        gradient accumulation weighs every token alike, as transformers' causal-LM loss. Neither
        is a named parameter, on purpose: the Trainer takes every forward parameter whose name
        holds "label" for a label column and computes no eval loss when one is absent."""
        shift_labels = loss_kwargs.pop("shift_labels", None)
        num_items_in_batch = loss_kwargs.pop("num_items_in_batch", None)
        if loss_kwargs:
            raise TypeError(f"forward() got unexpected keyword arguments: {', '.join(sorted(loss_kwargs))}")
        out = self.biogpt(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            position_ids=position_ids,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = out.last_hidden_state
        if not isinstance(logits_to_keep, int):
            hidden = hidden[:, logits_to_keep]
        elif logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.output_projection(hidden)  # (B, T, V)
        loss = None
        if labels is not None:
            # Next-token loss: position t predicts labels[t + 1] (or shift_labels[t]); -100 is ignored.
            shifted = F.pad(labels, (0, 1), value=-100)[:, 1:] if shift_labels is None else shift_labels
            flat = (logits.float().flatten(0, 1), shifted.flatten().to(logits.device))
            if num_items_in_batch is None:
                loss = F.cross_entropy(*flat, ignore_index=-100)
            else:
                loss = F.cross_entropy(*flat, ignore_index=-100, reduction="sum") / num_items_in_batch
        output = CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return _returned(output, return_dict, self.config)

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        inputs: torch.Tensor | None = None,
        **kwargs,
    ):
        """transformers-compatible generation; see biogpt.model.generation for the options.
        `inputs` is transformers' name of the prompt ids (its first positional parameter)."""
        # Imported when called, as transformers does: the engine reads this model's weights and
        # never imports this file, so the import graph has no cycle.
        from .generation import generate

        if input_ids is not None and inputs is not None:  # neither: inputs_embeds may be the prompt
            raise TypeError("generate() needs the prompt ids once: input_ids or inputs")
        return generate(self, input_ids if inputs is None else inputs, attention_mask=attention_mask, **kwargs)


class BioGptForTokenClassification(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._finish_construction(init=init)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        past_key_values: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple:
        """transformers' arguments, in its order: `token_type_ids` is accepted and unused, as
        there (so is `use_cache`: this output has no cache, and a cache passed in is still
        filled)."""
        out = self.biogpt(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=False,
            position_ids=position_ids,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, L)
        loss = None
        if labels is not None:
            if attention_mask is not None:  # padding never counts, whatever its label
                labels = labels.masked_fill(attention_mask[:, -labels.shape[1] :] == 0, -100)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        output = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        return _returned(output, return_dict, self.config)


class BioGptForSequenceClassification(BioGptPreTrainedModel):
    def __init__(self, config: BioGptConfig, *, init: bool = True) -> None:
        super().__init__(config)
        self.biogpt = BioGptModel(config, init=False)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self._finish_construction(init=init)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        *,
        past_key_values: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutputWithPast | tuple:
        """transformers' arguments, in its order. From `inputs_embeds` the last position is
        pooled (padding cannot be seen there, as in transformers)."""
        out = self.biogpt(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            position_ids=position_ids,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
        scores = self.score(hidden)  # (B, T, L)
        pooled = self.pool(scores, input_ids) if input_ids is not None else scores[:, -1]  # (B, L)
        loss = None
        if labels is not None:
            loss = self._loss(pooled, labels)
        output = SequenceClassifierOutputWithPast(
            loss=loss, logits=pooled, cache=out.cache, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return _returned(output, return_dict, self.config)

    def pool(self, logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Per-token scores (B, T, L) -> the rightmost non-pad token's (B, L): right for right
        padding and for left padding alike."""
        B, T = input_ids.shape
        if self.config.pad_token_id is None:
            last = torch.full((B,), T - 1, device=logits.device)
        else:
            not_pad = (input_ids != self.config.pad_token_id).int()
            last = (torch.arange(T, device=logits.device, dtype=torch.int32) * not_pad).argmax(-1)
        return logits[torch.arange(B, device=logits.device), last]

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

# The seed's names of the outputs, kept for code that imported them from here.
BaseModelOutput = BaseModelOutputWithPastAndCrossAttentions
CausalLMOutput = CausalLMOutputWithCrossAttentions
SequenceClassifierOutput = SequenceClassifierOutputWithPast

__all__ = [
    *MODEL_CLASSES,
    "BaseModelOutputWithPastAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "TokenClassifierOutput",
    "SequenceClassifierOutputWithPast",
]
