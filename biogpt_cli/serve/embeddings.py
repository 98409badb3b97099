"""Text embeddings from a BioGPT model: the mean of the last hidden states (after the final
LayerNorm) over a sequence's real tokens. Used by `biogpt embed` and by the server's
/v1/embeddings (inside the engine's run_exclusive, alone with the model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM or a head model (its `biogpt` attribute), or the model
    itself when it is one: the embedding must not pay for a vocabulary-sized projection."""
    return getattr(model, "biogpt", model)


@torch.inference_mode()
def embed_ids(model: torch.nn.Module, batch_of_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """(n, hidden) float32 on the CPU, one row per token-id list, in order.

    Rows are right-padded and masked, so a row's vector does not depend on what it is batched
    with (positions count real tokens only: biogpt.model.masks.positions_from_mask). ValueError
    for an empty list of ids or one longer than the model's positions: the caller names the
    document (a silent truncation would embed a different text)."""
    if not batch_of_ids:
        return torch.zeros(0, model.config.hidden_size, dtype=torch.float32)
    limit = model.config.max_position_embeddings
    for i, ids in enumerate(batch_of_ids):
        if len(ids) == 0:
            raise ValueError(f"input {i}: no tokens to embed")
        if len(ids) > limit:
            raise ValueError(f"input {i}: {len(ids)} tokens, more than the model's {limit} positions")
    decoder = backbone(model)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 1
    width = max(len(ids) for ids in batch_of_ids)
    device = next(model.parameters()).device
    input_ids = torch.full((len(batch_of_ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch_of_ids), width), dtype=torch.long)
    for row, ids in enumerate(batch_of_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
        mask[row, : len(ids)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False, return_dict=True).last_hidden_state
    # summed in float32: a bfloat16 sum over hundreds of tokens loses the vector's low bits
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)
    return (summed / weights.sum(dim=1)).cpu()
