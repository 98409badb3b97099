"""The public `generate`: transformers' argument handling in front of the search."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import torch
from torch import nn

from .config import GenerationConfig
from .output import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .processors import LogitsProcessor, build_processors
from .search import StoppingCriterion, beam_search, greedy_or_sample
from .step_outputs import beam_step_outputs, step_outputs
from .streamer import Streamer

logger = logging.getLogger("biogpt.model.generation")

DEFAULT_NEW_TOKENS = 20  # transformers 5: with no length given, 20 new tokens (its global max_length)

_CONFIG_FIELDS = tuple(f.name for f in fields(GenerationConfig))  # generate()'s keyword options
# transformers' per-step model outputs: not search options, so not GenerationConfig fields here;
# recomputed after the search when asked for (step_outputs.py).
_STEP_OUTPUTS = ("output_attentions", "output_hidden_states")

GenerateOutput = GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput


def _transformers_only_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """(the search options, which per-step outputs were asked for)."""
    kwargs = dict(kwargs)
    if not kwargs.pop("use_cache", True):
        logger.info("use_cache=False: decoding always runs over a key/value cache here (the same tokens, faster)")
    asked = {name: bool(kwargs.pop(name, False)) for name in _STEP_OUTPUTS}
    return kwargs, asked


def _set_options(config: Any, *, ours_by_default: bool) -> dict[str, Any]:
    """The options `config` sets: those not None (transformers' "unset"; its GenerationConfig has
    the same names and meanings, so a script passing its own `generation_config=` runs
    unchanged). `ours_by_default`: for one of ours only those that differ from the defaults,
    for the model's own (read from generation_config.json, every absent key a default)."""
    if config is None:
        return {}
    if isinstance(config, GenerationConfig) and ours_by_default:
        default = GenerationConfig()
        return {name: getattr(config, name) for name in _CONFIG_FIELDS if getattr(config, name) != getattr(default, name)}
    if not any(hasattr(config, name) for name in _CONFIG_FIELDS):
        raise TypeError(f"generation_config must be a GenerationConfig, got {type(config).__name__}")
    return {name: getattr(config, name) for name in _CONFIG_FIELDS if getattr(config, name, None) is not None}


def _resolve_config(model: nn.Module, generation_config: Any, kwargs: dict[str, Any]) -> tuple[GenerationConfig, bool]:
    """transformers' precedence: keywords > the caller's generation_config > the model's own
    (`model.generation_config`, from its generation_config.json) > the defaults. Also whether
    no layer set max_length (transformers' `has_default_max_length`)."""
    model_options = _set_options(getattr(model, "generation_config", None), ours_by_default=True)
    caller_options = _set_options(generation_config, ours_by_default=False)
    default_max_length = all(layer.get("max_length") is None for layer in (kwargs, caller_options, model_options))
    return GenerationConfig(**{**model_options, **caller_options, **kwargs}), default_max_length


def _prompt(
    input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids (B, P), embeddings (B, S, C) or None). Generating from embeddings alone starts the
    returned sequences empty (P = 0), as transformers does for a decoder-only model; ids given
    with them must be the same prompt (P = S) and start the sequences."""
    if inputs_embeds is None:
        if input_ids is None:
            raise TypeError("generate() needs the prompt: input_ids (or inputs) or inputs_embeds")
        return (input_ids[None, :] if input_ids.dim() == 1 else input_ids), None
    if inputs_embeds.dim() != 3:
        raise ValueError(f"inputs_embeds must be (batch, length, hidden_size), got shape {tuple(inputs_embeds.shape)}")
    B, S = inputs_embeds.shape[:2]
    if input_ids is None:
        return torch.empty(B, 0, dtype=torch.long, device=inputs_embeds.device), inputs_embeds
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    if input_ids.shape[0] != B or input_ids.shape[1] not in (0, S):
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} given with inputs_embeds {tuple(inputs_embeds.shape)} must be the same prompt"
        )
    return input_ids, inputs_embeds


def generate(
    model: nn.Module,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: Any = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    streamer: Streamer | None = None,
    logits_processor: Sequence[LogitsProcessor] | None = None,
    stopping_criteria: Sequence[StoppingCriterion] | None = None,
    inputs_embeds: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor | GenerateOutput:
    """Prompt plus continuation, (batch × num_return_sequences, length); finished rows are padded
    with pad_token_id. With return_dict_in_generate=True, transformers' output object instead
    (output.py). Keyword names, defaults and precedence are transformers' 5: with no length
    given, 20 new tokens, capped at the model's positions, unless the model's generation_config
    sets one. `logits_processor` and `stopping_criteria` are lists of transformers-style
    callables (a LogitsProcessorList / StoppingCriteriaList works), applied after ours as there.
    Positions of a padded prompt count only its attended tokens (fairseq's and transformers'
    rule). `model` is read, never changed: the engine's faster kernels run on its weights
    (biogpt.model.fast)."""
    # ~90 lines of transformers' argument handling (precedence, eos/pad defaults, length limits,
    # checks) before the search is chosen: kept in one place so it reads as transformers' does.
    kwargs, step_options = _transformers_only_options(kwargs)
    unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"generate() got unexpected keyword arguments: {', '.join(unknown)}")
    cfg, default_max_length = _resolve_config(model, generation_config, kwargs)
    cfg.validate()
    # transformers keeps them only in the dict output; so does this generate
    want_attentions = step_options["output_attentions"] and cfg.return_dict_in_generate
    want_hidden = step_options["output_hidden_states"] and cfg.return_dict_in_generate
    # beam search reorders its beams: each step's context is recorded for step_outputs
    histories: list[torch.Tensor] | None = [] if (want_attentions or want_hidden) and cfg.num_beams > 1 else None
    config = model.config
    eos_ids = cfg.eos_token_id if cfg.eos_token_id is not None else config.eos_token_id
    eos_list = [] if eos_ids is None else ([eos_ids] if isinstance(eos_ids, int) else list(eos_ids))
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else config.pad_token_id
    if pad is None:
        pad = eos_list[0] if eos_list else 0
    input_ids, inputs_embeds = _prompt(input_ids, inputs_embeds)
    P = input_ids.shape[1]  # prompt tokens in the returned sequences
    S = P if inputs_embeds is None else inputs_embeds.shape[1]  # prompt positions in the cache
    from_embeds_only = S != P
    if attention_mask is not None and tuple(attention_mask.shape) != (input_ids.shape[0], S):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, the prompt {(input_ids.shape[0], S)}")

    # Lengths, as transformers' _prepare_generated_length: max_new_tokens wins over max_length;
    # max_length counts the returned sequence (from embeddings alone: the embeddings too).
    if cfg.max_new_tokens is not None:
        max_length = cfg.max_new_tokens + P
    elif default_max_length or cfg.max_length is None:  # (None: a keyword max_length=None)
        max_length = min(DEFAULT_NEW_TOKENS + P, config.max_position_embeddings)
    else:
        max_length = cfg.max_length - (S if from_embeds_only else 0)
    max_new = max_length - P
    if max_new <= 0 and cfg.max_new_tokens != 0:  # max_new_tokens=0 asks for the prompt back
        raise ValueError(
            f"Input length of input_ids is {P}, but `max_length` is set to {max_length}: "
            "increase max_length or, better, set max_new_tokens"
        )
    max_new = max(max_new, 0)
    if S + max_new > config.max_position_embeddings:
        raise ValueError(
            f"prompt ({S} tokens) + max_new_tokens ({max_new}) exceeds the model's "
            f"max_position_embeddings ({config.max_position_embeddings})"
        )
    if cfg.min_new_tokens is not None:
        min_length = cfg.min_new_tokens + P
    else:
        min_length = max((cfg.min_length or 0) - (S if from_embeds_only else 0), 0)
    # one rule for both (transformers applies MinLength and MinNewTokens, which then agree)
    cfg = replace(cfg, max_new_tokens=max_new, max_length=None, min_new_tokens=max(min_length - P, 0) or None, min_length=None)
    if streamer is not None and (input_ids.shape[0] > 1 or cfg.num_beams > 1):
        raise ValueError("streaming supports one prompt with num_beams=1")

    device = input_ids.device
    eos = torch.tensor(eos_list, dtype=torch.long, device=device)
    pad_lengths = None
    if attention_mask is not None and cfg.repetition_penalty != 1.0:
        pad_lengths = (attention_mask != 0).int().argmax(1)
        rows = cfg.num_beams if cfg.num_beams > 1 else (cfg.num_return_sequences if cfg.do_sample else 1)
        pad_lengths = pad_lengths.repeat_interleave(rows, 0)
    procs = build_processors(
        cfg,
        prompt_length=P,
        eos=eos_list,
        pad_lengths=pad_lengths,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        extra=list(logits_processor or ()),
    )
    criteria = list(stopping_criteria or ())
    with torch.inference_mode():
        if cfg.num_beams > 1:
            out: GenerateOutput = beam_search(
                model, input_ids, attention_mask, cfg, procs, eos, pad, max_new,
                inputs_embeds=inputs_embeds, criteria=criteria, histories=histories,
            )  # fmt: skip
        else:
            # the caller's hooks run on the host each step: the path that synchronises per step
            sync = streamer is not None or prefix_allowed_tokens_fn is not None or bool(logits_processor) or bool(criteria)
            # transformers pads a stopped row only when an EOS criterion is present
            pad_finished = bool(eos_list) or any(hasattr(c, "eos_token_id") for c in criteria)
            out = greedy_or_sample(
                model, input_ids, attention_mask, cfg, procs, eos, pad, max_new, streamer, sync,
                inputs_embeds=inputs_embeds, criteria=criteria, pad_finished=pad_finished,
            )  # fmt: skip
    # transformers' generate runs under no_grad, so it returns ordinary tensors, which a training
    # forward may take (RL fine-tuning scores its samples with gradients) or code may write in
    # place. Ours ran under inference_mode (faster); the ids and the cache leave it as copies.
    out.sequences = out.sequences.clone()
    if out.cache is not None:
        out.cache.kv = out.cache.kv.clone()
    if histories is not None and max_new == 0:  # no step ran
        out.attentions, out.hidden_states = (() if want_attentions else None), (() if want_hidden else None)
    elif histories is not None:
        with torch.no_grad():
            out.attentions, out.hidden_states = beam_step_outputs(
                model,
                input_ids,
                histories,
                attention_mask,
                num_beams=cfg.num_beams,
                inputs_embeds=inputs_embeds,
                attentions=want_attentions,
                hidden_states=want_hidden,
            )
    elif want_attentions or want_hidden:
        with torch.no_grad():
            out.attentions, out.hidden_states = step_outputs(
                model,
                out.sequences,
                attention_mask,
                prompt_length=P,
                inputs_embeds=inputs_embeds,
                attentions=want_attentions,
                hidden_states=want_hidden,
            )
    return out if cfg.return_dict_in_generate else out.sequences
