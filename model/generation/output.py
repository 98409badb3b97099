"""What `generate(..., return_dict_in_generate=True)` returns: transformers'
`GenerateDecoderOnlyOutput` / `GenerateBeamDecoderOnlyOutput`, field for field, without importing
transformers. ModelOutputs (biogpt.model.outputs): read by attribute, by key (`out["sequences"]`),
by position over the fields that are set (`out[0]`), and `to_tuple()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..outputs import ModelOutput


@dataclass(eq=False)
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy search and sampling. `scores`: the processed scores of each step (one
    (rows, vocab) float32 tensor per new token), `logits`: the raw ones; None unless asked for
    (output_scores / output_logits). `attentions` / `hidden_states` (output_attentions /
    output_hidden_states): per generated token, a tuple over layers (step_outputs.py). `cache`:
    the KVCache of every fed position, which `past_key_values=` / `cache=` continues from."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    cache: Any = None


@dataclass(eq=False)
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search. `sequences_scores` (with output_scores): the length-penalised score of each
    returned sequence; `scores`: each step's processed log-probabilities per beam (rows =
    batch × num_beams); `beam_indices` (always): for each returned sequence and new token, the
    flat beam row (batch_index × num_beams + beam) it came from, -1 past its end. `cache`: the
    running beams' KVCache; `attentions` / `hidden_states`: per step, the running beams'."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    attentions: tuple[tuple[torch.Tensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.Tensor, ...], ...] | None = None
    cache: Any = None
