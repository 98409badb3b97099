"""generate()'s per-step attentions and hidden states (output_attentions / output_hidden_states
with return_dict_in_generate), in transformers' layout: one entry per generated token, each a
tuple over layers; step 0 covers the prompt (B, H, S, S) / (B, S, C), step t the one token fed
at that step (B, H, 1, S + t) / (B, 1, C).

The search runs on the fast network (biogpt.model.fast), which keeps neither. The model is
causal, so what step t computed for its token is the same row of one forward of the reference
model over the finished sequences (a token never sees the tokens after it). They are therefore
recomputed once after the search, by modeling.py's model, and cut per step: only a caller who
asks pays, and the search stays as fast as before. Attention weights follow the model's
attention: eager gives them; under SDPA every step's tuple is empty, as transformers 5 returns
it (with the same advice to switch to eager).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("biogpt.model.generation")

StepTensors = tuple[tuple[torch.Tensor, ...], ...]


def _forward(
    model: nn.Module,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    prompt_length: int,
    inputs_embeds: torch.Tensor | None,
    fed: int,
    attentions: bool,
    hidden_states: bool,
):
    """The reference model over the first `fed` positions of rows `tokens` (prompt ids, then
    generated ids); a prompt given as embeddings is fed as embeddings, as the search fed it."""
    rows = tokens.shape[0]
    S = prompt_length if inputs_embeds is None else inputs_embeds.shape[1]
    embeds = None
    if inputs_embeds is not None:
        prompt = inputs_embeds.repeat_interleave(rows // inputs_embeds.shape[0], 0)
        new = model.get_input_embeddings()(tokens[:, prompt_length:]).to(prompt.dtype)
        embeds = torch.cat([prompt, new], 1)[:, :fed]
    mask = None
    if attention_mask is not None:  # generated tokens are attended, as the search extends the mask
        mask = attention_mask.repeat_interleave(rows // attention_mask.shape[0], 0)
        mask = torch.cat([mask, mask.new_ones(rows, fed - S)], 1)
    return model(
        input_ids=tokens[:, :fed] if embeds is None else None,
        inputs_embeds=embeds,
        attention_mask=mask,
        use_cache=False,
        output_attentions=attentions,
        output_hidden_states=hidden_states,
        return_dict=True,
    )


def _warn_without_weights(model: nn.Module, attentions: bool) -> None:
    if attentions and model.config._attn_implementation != "eager":
        logger.warning(
            "`sdpa` attention does not support `output_attentions=True`: the attentions are empty. "
            "Set the attention to `eager` (model.set_attn_implementation('eager')) to get them."
        )


def _prompt_step(out, S: int, attentions: bool, hidden_states: bool):
    return (
        tuple(a[:, :, :S, :S] for a in out.attentions or ()) if attentions else None,
        tuple(h[:, :S] for h in out.hidden_states) if hidden_states else None,
    )


def _token_step(out, q: int, attentions: bool, hidden_states: bool):
    """Query row q (the token fed at this step) over the keys up to it."""
    return (
        tuple(a[:, :, q : q + 1, : q + 1] for a in out.attentions or ()) if attentions else None,
        tuple(h[:, q : q + 1] for h in out.hidden_states) if hidden_states else None,
    )


def _collect(steps: list, attentions: bool, hidden_states: bool) -> tuple[StepTensors | None, StepTensors | None]:
    return (
        tuple(a for a, _ in steps) if attentions else None,
        tuple(h for _, h in steps) if hidden_states else None,
    )


def step_outputs(
    model: nn.Module,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    prompt_length: int,
    inputs_embeds: torch.Tensor | None,
    attentions: bool,
    hidden_states: bool,
) -> tuple[StepTensors | None, StepTensors | None]:
    """Greedy search and sampling: (attentions, hidden_states) per generated token of
    `sequences` (rows = prompts × samples, prompt_length P ids first, P = 0 from embeddings
    alone), None where not asked for. Every step's context is a prefix of the final rows, so
    one forward gives them all."""
    _warn_without_weights(model, attentions)
    P = prompt_length
    steps = sequences.shape[1] - P
    if steps <= 0:
        return (() if attentions else None), (() if hidden_states else None)
    S = P if inputs_embeds is None else inputs_embeds.shape[1]
    out = _forward(
        model, sequences, attention_mask, prompt_length=P, inputs_embeds=inputs_embeds, fed=S + steps - 1,
        attentions=attentions, hidden_states=hidden_states,
    )  # fmt: skip
    per_step = [_prompt_step(out, S, attentions, hidden_states)]
    per_step += [_token_step(out, S + t - 1, attentions, hidden_states) for t in range(1, steps)]
    return _collect(per_step, attentions, hidden_states)


def beam_step_outputs(
    model: nn.Module,
    input_ids: torch.Tensor,
    histories: list[torch.Tensor],
    attention_mask: torch.Tensor | None,
    *,
    num_beams: int,
    inputs_embeds: torch.Tensor | None,
    attentions: bool,
    hidden_states: bool,
) -> tuple[StepTensors | None, StepTensors | None]:
    """Beam search: per step, the running beams' (rows batch × num_beams). Step 0 is the prompt
    (the same for every beam of an input); step t the token each running beam was extended
    with, whose context is that beam's history at the time (`histories[t - 1]`, recorded by
    the search: beams are reordered, so no final row holds it). One forward per step."""
    _warn_without_weights(model, attentions)
    P = input_ids.shape[1]
    S = P if inputs_embeds is None else inputs_embeds.shape[1]
    first = _forward(
        model, input_ids, attention_mask, prompt_length=P, inputs_embeds=inputs_embeds, fed=S,
        attentions=attentions, hidden_states=hidden_states,
    )  # fmt: skip
    a, h = _prompt_step(first, S, attentions, hidden_states)
    expand = lambda xs: None if xs is None else tuple(x.repeat_interleave(num_beams, 0) for x in xs)  # noqa: E731
    per_step = [(expand(a), expand(h))]
    for history in histories:
        fed = S + history.shape[1] - P
        out = _forward(
            model, history, attention_mask, prompt_length=P, inputs_embeds=inputs_embeds, fed=fed,
            attentions=attentions, hidden_states=hidden_states,
        )  # fmt: skip
        per_step.append(_token_step(out, fed - 1, attentions, hidden_states))
    return _collect(per_step, attentions, hidden_states)
