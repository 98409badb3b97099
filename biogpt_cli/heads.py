"""Inference with the head models: entities from a token-classification model, labels from a
sequence-classification model. `biogpt tag` and `biogpt classify` run them on documents; the
training runs score their dev sets with them, so training and inference read a document alike.

Words are the tokenizer's Moses tokens (a BPE piece ending in `</w>` ends a word); the model's
tag of a word is read on its first piece, exactly as it was trained. A document longer than the
model's positions is read in half-overlapping windows, each piece's probabilities averaged over
the windows that hold it, so nothing is cut off.

A document with passages (a full-text article) is read by `--long-documents`
(biogpt_cli.longdocs): `tag_document` and `classify_document` state what each mode means for a
head model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .longdocs import Budget

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


def tag_text(model: Any, tokenizer: Any, text: str, *, truncate: bool = False) -> list[dict[str, Any]]:
    """Entities of one document (character offsets into `text`). `truncate`: only the first
    window is read (the words after it are left untagged)."""
    import torch

    from biogpt.model.fast.network import hidden_states

    ids, _, words = encode_words(tokenizer, text)
    if not words:
        return []
    size = model.config.max_position_embeddings
    spans = windows(len(ids), size)
    if truncate and len(spans) > 1:
        logger.info("document of %d pieces: only its first window tagged (--long-documents truncate)", len(ids))
        spans = spans[:1]
        words = [w for w in words if w[0] < spans[0][1]]
    elif len(spans) > 1:
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


def classify_with_head(model: Any, tokenizer: Any, text: str, *, threshold: float = 0.5, truncate: bool = False) -> dict[str, Any]:
    """Labels of one text and a probability per label. A text longer than the model's positions
    is read in half-overlapping windows whose probabilities are averaged (`truncate`: only the
    first window)."""
    import torch

    from biogpt.model.fast.network import hidden_states

    ids = tokenizer(text)["input_ids"]
    size = model.config.max_position_embeddings
    windows = [ids] if len(ids) <= size else [
        ids[:1] + ids[start : start + size - 1] for start in range(1, max(len(ids) - size + 2, 2), (size - 1) // 2)
    ]
    if truncate and len(windows) > 1:
        logger.info("document of %d tokens: only its first window classified (--long-documents truncate)", len(ids))
        windows = windows[:1]
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


# ============================================================================ long documents
def head_budget(model: Any, tokenizer: Any) -> Budget:
    """How much text one unit of a head model may hold: its positions less the leading </s>."""
    from .longdocs import Budget

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return Budget(model.config.max_position_embeddings - 1, tokens)


def owned_spans(units: Sequence[Any]) -> list[tuple[int, int]]:
    """[start, end) of the document each unit answers for: consecutive units that overlap (the
    sentence overlap of a split passage) share their overlap at its middle, so a mention seen in
    both is kept once, from the unit that read it with more context around it."""
    bounds = [[u.offset, u.end] for u in units]
    for a, b in zip(bounds, bounds[1:]):
        if b[0] < a[1]:
            a[1] = b[0] = (b[0] + a[1]) // 2
    return [(s, e) for s, e in bounds]


def tag_document(model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto") -> list[dict[str, Any]]:
    """Entities of one document with offsets into `text`, read by `mode`:

    - `auto`: a document that is title/abstract or plain text is read whole (half-overlapping
      windows when long, as `tag_text`); a document with more passages as `passages`.
    - `passages`: each unit of `longdocs.plan_units` (title + abstract, then each passage, a
      long one split at sentences) tagged alone, its entities moved to document offsets; an
      entity then never straddles a passage boundary, and carries its `passage` (index in
      `passages`) and `section`.
    - `windows`: half-overlapping windows over the whole text.
    - `truncate`: only the first window (the rest of the document is not tagged).
    """
    from .longdocs import MODES, plan_units

    if mode not in MODES:
        raise ValueError(f"unknown long-document mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode in ("windows", "truncate"):
        return tag_text(model, tokenizer, text, truncate=mode == "truncate")
    # the windows read a long whole document completely: `auto` needs no fit check
    units = plan_units(text, passages, mode=mode, budget=head_budget(model, tokenizer), fits=lambda: True)
    if len(units) == 1 and units[0].kind == "document":
        return tag_text(model, tokenizer, text)
    entities: list[dict[str, Any]] = []
    for unit, (own_start, own_end) in zip(units, owned_spans(units)):
        for entity in tag_text(model, tokenizer, unit.text):
            start, end = entity["start"] + unit.offset, entity["end"] + unit.offset
            if not own_start <= start < own_end or (entities and start < entities[-1]["end"]):
                continue
            home = passage_at(passages, start)
            entities.append({**entity, "start": start, "end": end, "passage": home,
                             "section": str(passages[home].get("section", "")) if home is not None else ""})
    logger.debug("document of %d characters tagged in %d units", len(text), len(units))
    return entities


def passage_at(passages: Sequence[dict[str, Any]], offset: int) -> int | None:
    """The index of the passage holding character `offset`, or None."""
    for index, p in enumerate(passages):
        if p["offset"] <= offset < p["offset"] + len(p["text"]):
            return index
    return None


def classify_document(
    model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto", threshold: float = 0.5
) -> dict[str, Any]:
    """Labels of one document, read by `mode`:

    - `auto`: a title/abstract or plain-text document that fits the model in one input is
      classified whole (today's record); otherwise as `passages`.
    - `passages`: each unit of `longdocs.plan_units` classified alone, the labels aggregated by
      `aggregate_labels` (record keys `units`, `label_support`, `scores_mean`, `scores_max`).
    - `windows`: half-overlapping windows over the whole text, probabilities averaged.
    - `truncate`: only the first window.
    """
    from .longdocs import MODES, plan_units

    if mode not in MODES:
        raise ValueError(f"unknown long-document mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode in ("windows", "truncate"):
        return classify_with_head(model, tokenizer, text, threshold=threshold, truncate=mode == "truncate")
    budget = head_budget(model, tokenizer)
    units = plan_units(text, passages, mode=mode, budget=budget, fits=lambda: budget.tokens(text) <= budget.room)
    if len(units) == 1 and units[0].kind == "document":
        return classify_with_head(model, tokenizer, text, threshold=threshold)
    per_unit = [classify_with_head(model, tokenizer, unit.text, threshold=threshold) for unit in units]
    return aggregate_labels(per_unit, multi_label=model.config.problem_type == "multi_label_classification")


def aggregate_labels(per_unit: Sequence[dict[str, Any]], *, multi_label: bool) -> dict[str, Any]:
    """One document's labels from its units' records ({"labels", "scores"?}).

    Multi-label (heads with per-label probabilities, and generative tasks such as HoC): a label
    is the document's when any unit assigns it; `scores` is then each label's highest unit
    probability (the probability the rule acted on). Single-label heads: the label with the
    highest mean probability over the units; `scores` is the mean. Either way, where units have
    probabilities, `scores_mean` and `scores_max` give both, and `label_support` counts the units
    that assigned each label (labels no unit assigned are left out)."""
    support: dict[str, int] = {}
    for result in per_unit:
        for label in result["labels"]:
            support[label] = support.get(label, 0) + 1
    out: dict[str, Any] = {}
    scored = [r["scores"] for r in per_unit if r.get("scores")]
    if scored:
        names = list(scored[0])
        mean = {k: round(sum(s[k] for s in scored) / len(scored), 6) for k in names}
        peak = {k: max(s[k] for s in scored) for k in names}
        if multi_label:
            labels = [k for k in names if k in support]
        else:
            labels = [max(names, key=lambda k: mean[k])]
        out = {"labels": labels, "scores": peak if multi_label else mean, "scores_mean": mean, "scores_max": peak}
        support = {k: support[k] for k in names if k in support}  # the head's label order
    else:  # a generative task: labels only
        out = {"labels": list(support)}
    return {**out, "units": len(per_unit), "label_support": support}
