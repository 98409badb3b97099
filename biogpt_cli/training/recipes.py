"""The paper's fine-tuning recipes (each task's "official" recipe in the task formats) as option
defaults, and the learned prompt tokens that the official recipes add to the vocabulary."""

from __future__ import annotations

from typing import Any

RECIPES = ("default", "official")
OFFICIAL_MAX_TOKENS = 1024
OFFICIAL_GRAD_ACCUM = 32
OFFICIAL_AVERAGE = 5


def official_defaults(task: Any) -> dict[str, Any]:
    """docs/TASK_FORMATS.md's recipe of `task` as option defaults (config file and flags still win)."""
    r = task.recipe
    base: dict[str, Any] = {
        "lr": r.lr, "warmup_steps": r.warmup_updates, "scheduler": "inverse_sqrt", "betas": [0.9, 0.98],
        "weight_decay": 0.01, "max_grad_norm": None, "max_tokens": OFFICIAL_MAX_TOKENS, "grad_accum": OFFICIAL_GRAD_ACCUM,
        "loss": "full",
    }
    if r.max_epochs is not None:
        base.update(epochs=r.max_epochs, save_epochs=True, average_last=OFFICIAL_AVERAGE, save_total_limit=OFFICIAL_AVERAGE)
    if r.max_updates is not None:
        base["max_steps"] = r.max_updates
    return base


def learned_tokens(n: int) -> list[str]:
    return [f"learned{i}" for i in range(1, n + 1)]


def add_prompt_tokens(model: Any, tokenizer: Any, tokens: list[str]) -> None:
    """Add `tokens` to the tokenizer and grow the embedding rows (the tied LM head follows):
    old rows copied, new rows drawn like the model's own initialisation."""
    import torch

    tokenizer.add_tokens(tokens)
    size = max(model.config.vocab_size, max(tokenizer.convert_tokens_to_ids(t) for t in tokens) + 1)
    old = model.biogpt.embed_tokens
    if size <= old.num_embeddings:
        return
    new = type(old)(size, old.embedding_dim, old.padding_idx, old.embed_scale).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, mean=0.0, std=model.config.initializer_range)
        new.weight[: old.num_embeddings] = old.weight
    model.biogpt.embed_tokens = new
    head = model.output_projection
    if model.config.tie_word_embeddings:
        head.weight = new.weight
    else:
        grown = torch.nn.Parameter(torch.empty(size, head.in_features, device=head.weight.device, dtype=head.weight.dtype))
        with torch.no_grad():
            torch.nn.init.normal_(grown, mean=0.0, std=model.config.initializer_range)
            grown[: head.out_features] = head.weight
        head.weight = grown
    head.out_features = size
    model.config.vocab_size = size
