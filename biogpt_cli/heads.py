"""Inference with the head models: entities from a token-classification model, labels from a
sequence-classification model. `biogpt tag` and `biogpt classify` run them on documents; the
training runs score their dev sets with them, so training and inference read a document alike.

Words are the tokenizer's Moses tokens (a BPE piece ending in `</w>` ends a word); the model's
tag of a word is read on its first piece, exactly as it was trained. A document longer than the
model's positions is read in half-overlapping windows, each piece's probabilities averaged over
the windows that hold it, so nothing is cut off.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

Span = tuple[int, int, str]


def load_head(cls: Any, name: str, *, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) of a head model directory (`cls`: the head's class) on `device`."""
    from biogpt.devices import resolve_device, resolve_dtype
    from biogpt.model import BioGptTokenizer

    dev = resolve_device(device)
    model = cls.from_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    return model, BioGptTokenizer.from_pretrained(name)


def encode_words(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int, int]]]:
    """(ids, piece offsets, words) where each word is (first piece index, char start, char end).
    Index 0 is the leading </s> and belongs to no word."""
    enc = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    words: list[list[int]] = []
    new_word = True
    for i in range(1, len(ids)):
        if new_word:
            words.append([i, offsets[i][0], offsets[i][1]])
        else:
            words[-1][2] = offsets[i][1]
        new_word = pieces[i].endswith("</w>") or ids[i] in (tokenizer.eos_token_id, tokenizer.pad_token_id)
    return ids, offsets, [(w[0], w[1], w[2]) for w in words]


def windows(n_pieces: int, size: int) -> list[tuple[int, int]]:
    """Half-overlapping [start, end) ranges over pieces 1..n-1 (each window gets the leading
    </s> prepended, so it holds size - 1 of them)."""
    room = size - 1
    if n_pieces - 1 <= room:
        return [(1, n_pieces)]
    stride = max(1, room // 2)
    out = []
    start = 1
    while True:
        end = min(start + room, n_pieces)
        out.append((start, end))
        if end == n_pieces:
            return out
        start += stride


def word_tags(text: str, words: list[tuple[int, int, int]], spans: list[Span]) -> list[str]:
    """IOB2 tag of each word: B- on the first word a span overlaps, I- on the others."""
    tags = ["O"] * len(words)
    for start, end, label in sorted(spans):
        inside = [i for i, (_, ws, we) in enumerate(words) if ws < end and we > start]
        if not inside or any(tags[i] != "O" for i in inside):
            logger.debug("entity %r (%d-%d) overlaps another or no word; skipped", text[start:end], start, end)
            continue
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return tags


def merge_entities(text: str, words: list[tuple[int, int, int]], tags: list[str], probs: list[float]) -> list[dict[str, Any]]:
    """B-/I- word tags to entity spans; an I- that continues nothing starts an entity."""
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (_, start, end), tag, p in zip(words, tags, probs):
        kind, _, label = tag.partition("-")
        if kind == "I" and current is not None and current["label"] == label:
            current["end"] = end
            current["_p"].append(p)
            continue
        if current is not None:
            entities.append(current)
            current = None
        if kind in ("B", "I") and label:
            current = {"start": start, "end": end, "label": label, "_p": [p]}
    if current is not None:
        entities.append(current)
    out = []
    for e in entities:
        scores = e.pop("_p")
        out.append({"start": e["start"], "end": e["end"], "text": text[e["start"] : e["end"]], "label": e["label"], "score": round(sum(scores) / len(scores), 6)})
    return out


def tag_text(model: Any, tokenizer: Any, text: str) -> list[dict[str, Any]]:
    """Entities of one document (character offsets into `text`)."""
    import torch

    from biogpt.model.fast.network import hidden_states

    ids, _, words = encode_words(tokenizer, text)
    if not words:
        return []
    size = model.config.max_position_embeddings
    spans = windows(len(ids), size)
    if len(spans) > 1:
        logger.info("document of %d pieces tagged in %d overlapping windows", len(ids), len(spans))
    total = torch.zeros(len(ids), model.config.num_labels)
    count = torch.zeros(len(ids), 1)
    with torch.inference_mode():
        for s, e in spans:
            window = torch.tensor([ids[:1] + ids[s:e]], device=model.device)
            logits = model.classifier(hidden_states(model, window))  # the head of model.forward, in eval mode
            probs = torch.softmax(logits[0, 1:].float(), -1).cpu()
            total[s:e] += probs
            count[s:e] += 1
    probs = total / count.clamp(min=1)
    id2label = model.config.id2label
    tags, scores = [], []
    for first, _, _ in words:
        k = int(probs[first].argmax())
        tags.append(id2label[k])
        scores.append(float(probs[first, k]))
    return merge_entities(text, words, tags, scores)


def classify_with_head(model: Any, tokenizer: Any, text: str, *, threshold: float = 0.5) -> dict[str, Any]:
    import torch

    from biogpt.model.fast.network import hidden_states

    ids = tokenizer(text)["input_ids"]
    size = model.config.max_position_embeddings
    windows = [ids] if len(ids) <= size else [
        ids[:1] + ids[start : start + size - 1] for start in range(1, max(len(ids) - size + 2, 2), (size - 1) // 2)
    ]
    if len(windows) > 1:
        logger.warning("document of %d tokens classified in %d overlapping windows", len(ids), len(windows))
    probs = []
    with torch.inference_mode():
        for w in windows:
            ids = torch.tensor([w], device=model.device)
            logits = model.pool(model.score(hidden_states(model, ids)), ids)[0].float()
            multi = model.config.problem_type == "multi_label_classification"
            probs.append(torch.sigmoid(logits) if multi else torch.softmax(logits, -1))
    p = torch.stack(probs).mean(0)
    labels = model.config.id2label
    if model.config.problem_type == "multi_label_classification":
        chosen = [labels[i] for i in range(len(p)) if p[i] >= threshold]
    else:
        chosen = [labels[int(p.argmax())]]
    return {"labels": chosen, "scores": {labels[i]: round(float(p[i]), 6) for i in range(len(p))}}
