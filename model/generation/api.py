"""The public `generate`: transformers' argument handling in front of the search."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import torch
from torch import nn

from .config import GenerationConfig
from .processors import build_processors
from .search import beam_search, greedy_or_sample
from .streamer import Streamer

logger = logging.getLogger("biogpt.model.generation")


# transformers' generate() options with nothing to choose here: their default is what this
# generate() always does, so a script written for transformers runs unchanged when it passes
# the default, and gets one clear error when it asks for what is not offered.
_CONFIG_FIELDS = tuple(f.name for f in fields(GenerationConfig))  # generate()'s keyword options
_RESULT_OPTIONS = ("return_dict_in_generate", "output_scores", "output_logits", "output_attentions", "output_hidden_states")


def _transformers_only_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if not kwargs.pop("use_cache", True):
        logger.info("use_cache=False: decoding always runs over a key/value cache here (the same tokens, faster)")
    asked = [name for name in _RESULT_OPTIONS if kwargs.pop(name, False)]
    if asked:
        raise TypeError(
            f"generate() returns the token ids only; {', '.join(asked)} not supported "
            "(score sequences with model(ids).logits)"
        )
    return kwargs


def _own_config(config: Any) -> GenerationConfig:
    """Ours, or one read from another library's generation config by the field names they share
    (transformers' GenerationConfig: the same names and meanings), so a script passing its own
    `generation_config=` runs unchanged."""
    if config is None or isinstance(config, GenerationConfig):
        return config or GenerationConfig()
    if not any(hasattr(config, name) for name in _CONFIG_FIELDS):
        raise TypeError(f"generation_config must be a GenerationConfig, got {type(config).__name__}")
    # None there means "not set": our default (which is transformers' default) applies
    shared = {name: getattr(config, name) for name in _CONFIG_FIELDS if getattr(config, name, None) is not None}
    return GenerationConfig(**shared)


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: Any = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    streamer: Streamer | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Prompt plus continuation, (batch × num_return_sequences, length); finished rows are padded
    with pad_token_id. Keyword names and defaults are transformers'. Positions of a padded
    prompt count only its attended tokens (fairseq's and transformers' rule). `model` is read,
    never changed: the engine's faster kernels run on its weights (biogpt.model.fast)."""
    # ~65 lines of transformers' argument handling (eos/pad defaults, length limits, checks)
    # before the search is chosen: kept in one place so it reads as transformers' does.
    kwargs = _transformers_only_options(kwargs)
    unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"generate() got unexpected keyword arguments: {', '.join(unknown)}")
    cfg = replace(_own_config(generation_config), **kwargs)
    cfg.validate()
    config = model.config
    eos_ids = cfg.eos_token_id if cfg.eos_token_id is not None else config.eos_token_id
    eos_list = [] if eos_ids is None else ([eos_ids] if isinstance(eos_ids, int) else list(eos_ids))
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else config.pad_token_id
    if pad is None:
        pad = eos_list[0] if eos_list else 0
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}")
    P = input_ids.shape[1]
    if cfg.max_new_tokens is not None:
        max_new = cfg.max_new_tokens
    else:
        max_new = max((cfg.max_length if cfg.max_length is not None else 20) - P, 0)
    if P + max_new > config.max_position_embeddings:
        raise ValueError(
            f"prompt ({P} tokens) + max_new_tokens ({max_new}) exceeds the model's "
            f"max_position_embeddings ({config.max_position_embeddings})"
        )
    if streamer is not None and (input_ids.shape[0] > 1 or cfg.num_beams > 1):
        raise ValueError("streaming supports one prompt with num_beams=1")

    eos = torch.tensor(eos_list, dtype=torch.long, device=input_ids.device)
    pad_lengths = None
    if attention_mask is not None and cfg.repetition_penalty != 1.0:
        pad_lengths = (attention_mask != 0).int().argmax(1)
        rows = cfg.num_beams if cfg.num_beams > 1 else (cfg.num_return_sequences if cfg.do_sample else 1)
        pad_lengths = pad_lengths.repeat_interleave(rows, 0)
    procs = build_processors(
        cfg, prompt_length=P, eos=eos_list, pad_lengths=pad_lengths, prefix_allowed_tokens_fn=prefix_allowed_tokens_fn
    )
    with torch.inference_mode():
        if cfg.num_beams > 1:
            return beam_search(model, input_ids, attention_mask, cfg, procs, eos, pad, max_new)
        sync = streamer is not None or prefix_allowed_tokens_fn is not None
        return greedy_or_sample(model, input_ids, attention_mask, cfg, procs, eos, pad, max_new, streamer, sync)
