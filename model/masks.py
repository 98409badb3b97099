"""Positions and attention masks from a padding mask, shared by the model and the generation
engine (transformers keeps these in its masking utilities for the same reason: the model's
forward and `generate`'s own prefill must decide them by one rule)."""

from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """0-based positions counting only attended tokens; padding gets -1 (row 1, never attended).
    This is fairseq's and transformers' `generate` rule: a left-padded row sees the same
    positions as the same row unpadded."""
    positions = torch.cumsum(attention_mask, dim=1) * attention_mask - 1  # (B, S)
    return positions[:, past_length:].long()


def build_attention_mask(
    attention_mask: torch.Tensor | None, query_length: int, past_length: int, *, check_padding: bool = True
) -> tuple[torch.Tensor | None, bool]:
    """(attn_mask for SDPA, is_causal) for `query_length` new tokens after `past_length` cached ones.

    Unpadded batches need no mask tensor at all (SDPA's causal kernels). With padding, a boolean
    (B, 1, T, S) mask: causal, padding keys excluded, and every query may see itself, so a
    padding row never has an empty softmax (which would give NaN and poison later layers).

    `check_padding=False`: do not look at the mask's values on the host to find out whether
    anything is padded; the mask tensor is always built. Why: that look is a device
    synchronisation, which a CUDA graph capture forbids (and a captured step must not bake in
    one batch's branch).
    """
    if attention_mask is None or (check_padding and bool(attention_mask.all())):
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
