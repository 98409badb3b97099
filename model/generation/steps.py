"""The two eager steps of decoding over a KV cache: prefill (the prompt) and decode (one token
per row), and the state a decode step carries. Both run the model's weights through a
`fast.network.FastNetwork`; a captured static step (static.StaticDecoder) takes the decode
step's place when the state names one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..fast.cpu import single_row_matvec
from ..fast.network import FastNetwork
from ..kv_cache import KVCache
from ..masks import build_attention_mask, positions_from_mask


@dataclass
class DecodeState:
    """What one decode step needs besides the token: the cache, where each row's next position
    is, and (only for padded batches, or always with a graph) which cached keys are real."""

    cache: KVCache
    next_position: torch.Tensor  # (N,) position of the next token of each row
    key_mask: torch.Tensor | None  # (N, S_max) bool, None when no row is padded
    net: FastNetwork
    graph: Any = None  # a static.StaticDecoder: when set, steps replay its captured step

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i continues row index[i]. In place, because with a graph these
        tensors are the captured step's own buffers."""
        self.cache.reorder(index)
        if self.key_mask is not None:
            self.key_mask.copy_(self.key_mask[index])
        self.next_position.copy_(self.next_position[index])


def prefill(
    net: FastNetwork,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache: KVCache,
    *,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the prompt through the network, filling the cache; logits of the last position (N, V).
    Positions count only attended tokens (masks.positions_from_mask), as the model's forward.
    With `inputs_embeds` (N, S, C) the prompt is those embeddings (input_ids is not read)."""
    prompt = input_ids if inputs_embeds is None else inputs_embeds
    S = prompt.shape[1]
    if attention_mask is None:
        positions = torch.arange(S, device=prompt.device)[None, :]
    else:
        positions = positions_from_mask(attention_mask)
    attn_mask, is_causal = build_attention_mask(attention_mask, S, 0)
    hidden = net.run(input_ids, positions, attn_mask=attn_mask, is_causal=is_causal, cache=cache, inputs_embeds=inputs_embeds)
    return net.logits(hidden[:, -1])


def decode_step(tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """One token per row (N,) -> logits (N, V); the cache grows by one position."""
    if state.graph is not None:
        return state.graph.step(tokens, state)
    cache = state.cache
    end = cache.length + 1
    attn_mask = None if state.key_mask is None else state.key_mask[:, None, None, :end]  # (N, 1, 1, S)
    positions = state.next_position[:, None]  # (N, 1)
    with single_row_matvec(tokens.shape[0], tokens.device):
        hidden = state.net.run(tokens[:, None], positions, attn_mask=attn_mask, is_causal=False, cache=cache)
        logits = state.net.logits(hidden[:, -1])
    state.next_position += 1
    return logits
