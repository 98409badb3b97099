"""POST /v1/embeddings: OpenAI's embeddings, the vectors of `biogpt embed` (embeddings.embed_ids:
the mean of the last hidden states over each input's tokens)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import torch

from .context import Context
from .embeddings import embed_ids
from .errors import ApiError
from .models import ServedModel
from .schemas import EmbeddingRequest

EMBED_BATCH = 32  # inputs per turn alone with the model: decode steps of running requests go on between turns


async def embed(ctx: Context, body: EmbeddingRequest) -> dict[str, Any]:
    """The vectors of every input; base64 is the little-endian float32 bytes the openai client decodes."""
    async with ctx.time_limit():
        served = ctx.pick(body.model)
        ctx.accepting()
        hidden = int(served.model.config.hidden_size)
        if body.dimensions is not None and body.dimensions != hidden:
            raise ApiError(400, f"dimensions: this model's embeddings have {hidden} dimensions, and are not shortened.",
                           param="dimensions")
        inputs = body.input
        items: list[Any] = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else list(inputs)
        if not items:
            raise ApiError(400, "input is empty.", param="input")
        batch = await asyncio.to_thread(_encode_inputs, served, items)
        vectors = []
        for start in range(0, len(batch), EMBED_BATCH):
            part = batch[start : start + EMBED_BATCH]
            vectors.extend(await ctx.run_model(served, lambda part=part: embed_ids(served.model, part)))
    data = []
    for i, vector in enumerate(vectors):
        values = vector.to(dtype=torch.float32).numpy()
        embedding: Any = (base64.b64encode(values.astype("<f4").tobytes()).decode("ascii") if body.encoding_format == "base64"
                          else [float(v) for v in values])
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(ids) for ids in batch)
    ctx.metrics.prompt_tokens.labels(served.name).inc(tokens)
    return {"object": "list", "data": data, "model": served.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _encode_inputs(served: ServedModel, items: list[Any]) -> list[list[int]]:
    batch: list[list[int]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise ApiError(400, f"input {i} is an empty string.", param="input")
            ids = list(served.tokenizer(item)["input_ids"])
        else:
            ids = [int(t) for t in item]
            if not ids or any(not 0 <= t < served.vocab_size for t in ids):
                raise ApiError(400, f"input {i}: token ids must be a non-empty list within the vocabulary (0..{served.vocab_size - 1}).",
                               param="input")
        if len(ids) > served.max_positions:
            raise ApiError(400, f"input {i} has {len(ids)} tokens, more than the model's {served.max_positions} positions.",
                           param="input", code="context_length_exceeded")
        batch.append(ids)
    return batch
