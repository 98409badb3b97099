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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .documents import BadRecord
    from .longdocs import Budget

logger = logging.getLogger(__name__)

Span = tuple[int, int, str]
# inputs run at once when one document is read alone (the server, training's dev scoring): a
# long article's units share a few passes, without padding many long windows into one
DOCUMENT_BATCH = 8


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


# ============================================================================ reading a text
# A head model reads a document in three steps, each written once: what inputs it needs (a
# `Reading` per unit), one padded forward pass over a batch of inputs (of any documents:
# `tag_batch`, `classify_batch`), and a document's result from its inputs' probabilities
# (`tag_entities`, `classify_labels`, then the units combined). `run_documents` chains them
# over a stream of documents in shared, length-sorted batches; `tag_document` and
# `classify_document` are that stream for one document.
@dataclass(frozen=True)
class Reading:
    """How one text (a whole document or one unit) is read: its pieces `ids` and the windows of
    them given to the model, each `[start, end)` of `spans` read as the leading </s> followed by
    `ids[start:end]`. `words`: the tagger's words (first piece, char start, char end)."""

    text: str
    ids: list[int]
    spans: list[tuple[int, int]]
    words: list[tuple[int, int, int]] = field(default_factory=list)

    def inputs(self) -> list[list[int]]:
        return [self.ids[:1] + self.ids[s:e] for s, e in self.spans]


def tag_reading(tokenizer: Any, text: str, *, size: int, truncate: bool = False) -> Reading:
    """The tagger's reading of `text` with `size` positions: half-overlapping windows when long
    (`truncate`: only the first, and only the words it holds)."""
    ids, _, words = encode_words(tokenizer, text)
    spans = windows(len(ids), size)
    if truncate and len(spans) > 1:
        logger.info("document of %d pieces: only its first window tagged (--long-documents truncate)", len(ids))
        spans = spans[:1]
        words = [w for w in words if w[0] < spans[0][1]]
    elif len(spans) > 1:
        logger.info("document of %d pieces tagged in %d overlapping windows", len(ids), len(spans))
    return Reading(text, ids, spans, words)


def classify_reading(tokenizer: Any, text: str, *, size: int, truncate: bool = False) -> Reading:
    """The classifier's reading of `text` with `size` positions: the whole text, or when longer
    half-overlapping windows (`truncate`: only the first). Its own window rule, not `windows`:
    trained models' scores stay what they were."""
    ids = tokenizer(text)["input_ids"]
    if len(ids) <= size:
        spans = [(1, len(ids))]
    else:
        spans = [(start, min(start + size - 1, len(ids))) for start in range(1, max(len(ids) - size + 2, 2), (size - 1) // 2)]
    if truncate and len(spans) > 1:
        logger.info("document of %d tokens: only its first window classified (--long-documents truncate)", len(ids))
        spans = spans[:1]
    if len(spans) > 1:
        logger.warning("document of %d tokens classified in %d overlapping windows", len(ids), len(spans))
    return Reading(text, ids, spans)


def _padded(model: Any, inputs: Sequence[list[int]]) -> tuple[Any, Any, Any]:
    """(ids, attention mask or None, lengths) of `inputs` right-padded with the pad id: a row's
    real tokens keep their positions, and with causal attention never see the padding after
    them. No mask when nothing is padded: the pass is then exactly the unbatched one."""
    import torch

    lengths = torch.tensor([len(i) for i in inputs])
    longest = int(lengths.max())
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 1
    ids = torch.tensor([list(i) + [pad] * (longest - len(i)) for i in inputs], device=model.device)
    if bool((lengths == longest).all()):
        return ids, None, lengths
    mask = (torch.arange(longest)[None, :] < lengths[:, None]).long().to(model.device)
    return ids, mask, lengths


def tag_batch(model: Any, inputs: Sequence[list[int]]) -> list[Any]:
    """One forward pass of the token classifier over `inputs` (each </s> then pieces): per input,
    its pieces' label probabilities (pieces x labels, float32, on the CPU), the </s> left out."""
    import torch

    from biogpt.model.fast.network import hidden_states

    ids, mask, lengths = _padded(model, inputs)
    with torch.inference_mode():
        logits = model.classifier(hidden_states(model, ids, mask))  # the head of model.forward, in eval mode
        probs = torch.softmax(logits.float(), -1).cpu()
    return [probs[row, 1 : int(n)] for row, n in enumerate(lengths)]


def classify_batch(model: Any, inputs: Sequence[list[int]]) -> list[Any]:
    """One forward pass of the sequence classifier over `inputs`: per input, its label
    probabilities (sigmoid for a multi-label head, else softmax), float32 on the CPU. The head
    pools each row's last real token: `model.pool` finds it as the rightmost non-pad token, which
    right padding with the pad id keeps; a config without a pad id is pooled at each length."""
    import torch

    from biogpt.model.fast.network import hidden_states

    ids, mask, lengths = _padded(model, inputs)
    with torch.inference_mode():
        scores = model.score(hidden_states(model, ids, mask))
        if model.config.pad_token_id is None:
            logits = scores[torch.arange(len(inputs), device=scores.device), (lengths - 1).to(scores.device)]
        else:
            logits = model.pool(scores, ids)
        logits = logits.float()
        multi = model.config.problem_type == "multi_label_classification"
        probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).cpu()
    return list(probs)


def tag_entities(model: Any, reading: Reading, probs: Sequence[Any]) -> list[dict[str, Any]]:
    """Entities of one reading (offsets into its text) from its windows' piece probabilities
    (`tag_batch`, in `reading.spans` order): each piece's probabilities averaged over the windows
    that hold it, a word's tag read on its first piece."""
    import torch

    if not reading.words:
        return []
    total = torch.zeros(len(reading.ids), model.config.num_labels)
    count = torch.zeros(len(reading.ids), 1)
    for (s, e), p in zip(reading.spans, probs):
        total[s:e] += p
        count[s:e] += 1
    averaged = total / count.clamp(min=1)
    id2label = model.config.id2label
    tags, scores = [], []
    for first, _, _ in reading.words:
        k = int(averaged[first].argmax())
        tags.append(id2label[k])
        scores.append(float(averaged[first, k]))
    return merge_entities(reading.text, reading.words, tags, scores)


def classify_labels(model: Any, reading: Reading, probs: Sequence[Any], *, threshold: float = 0.5) -> dict[str, Any]:
    """Labels of one reading and a probability per label from its windows' probabilities
    (`classify_batch`), averaged."""
    import torch

    p = torch.stack(list(probs)).mean(0)
    labels = model.config.id2label
    if model.config.problem_type == "multi_label_classification":
        chosen = [labels[i] for i in range(len(p)) if p[i] >= threshold]
    else:
        chosen = [labels[int(p.argmax())]]
    return {"labels": chosen, "scores": {labels[i]: round(float(p[i]), 6) for i in range(len(p))}}


def tag_text(model: Any, tokenizer: Any, text: str, *, truncate: bool = False) -> list[dict[str, Any]]:
    """Entities of one document (character offsets into `text`). `truncate`: only the first
    window is read (the words after it are left untagged)."""
    return tag_document(model, tokenizer, text, [], mode="truncate" if truncate else "windows")


def classify_with_head(model: Any, tokenizer: Any, text: str, *, threshold: float = 0.5, truncate: bool = False) -> dict[str, Any]:
    """Labels of one text and a probability per label. A text longer than the model's positions
    is read in half-overlapping windows whose probabilities are averaged (`truncate`: only the
    first window)."""
    return classify_document(model, tokenizer, text, [], mode="truncate" if truncate else "windows", threshold=threshold)


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


@dataclass(frozen=True)
class DocumentPlan:
    """What one document needs from a head model: `readings`, one per unit of `units` (in
    order), or when `units` is None one reading of the whole text."""

    text: str
    passages: Sequence[dict[str, Any]]
    units: list[Any] | None
    readings: list[Reading]


@dataclass(frozen=True)
class HeadInput:
    """One model input of one document, as it travels through the shared batches."""

    record: Any
    plan: DocumentPlan
    unit: int  # the index of its reading in plan.readings
    last: bool  # the document's last input: its results are complete once this one's arrives


@dataclass(frozen=True)
class _Ready:
    """A document's result that needed no model input, passing through the batches in order."""

    item: Any
    result: Any


def plan_tag(model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto") -> DocumentPlan:
    """The tagger's readings of one document by `mode` (see `tag_document`)."""
    # the windows read a long whole document completely: `auto` needs no fit check
    return _plan(model, tokenizer, text, passages, mode=mode, read=tag_reading, whole_fits=lambda budget: True)


def plan_classify(model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto") -> DocumentPlan:
    """The classifier's readings of one document by `mode` (see `classify_document`)."""
    return _plan(model, tokenizer, text, passages, mode=mode, read=classify_reading,
                 whole_fits=lambda budget: budget.tokens(text) <= budget.room)


def _plan(
    model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str,
    read: Callable[..., Reading], whole_fits: Callable[[Budget], bool],
) -> DocumentPlan:
    """One reading of the whole text (windows, truncate, or `auto` when `whole_fits`), else one
    `read` per unit of `longdocs.plan_units`."""
    from .longdocs import MODES, plan_units

    if mode not in MODES:
        raise ValueError(f"unknown long-document mode {mode!r}; expected one of {', '.join(MODES)}")
    size = model.config.max_position_embeddings
    if mode in ("windows", "truncate"):
        return DocumentPlan(text, passages, None, [read(tokenizer, text, size=size, truncate=mode == "truncate")])
    budget = head_budget(model, tokenizer)
    units = plan_units(text, passages, mode=mode, budget=budget, fits=lambda: whole_fits(budget))
    if len(units) == 1 and units[0].kind == "document":
        return DocumentPlan(text, passages, None, [read(tokenizer, text, size=size)])
    logger.debug("document of %d characters read in %d units", len(text), len(units))
    return DocumentPlan(text, passages, units, [read(tokenizer, u.text, size=size) for u in units])


def document_entities(model: Any, plan: DocumentPlan, probs: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """A document's entities (document offsets) from its readings' window probabilities: the
    whole text's, or each unit's moved to document offsets, kept where the unit owns them
    (`owned_spans`), with their `passage` and `section`."""
    if plan.units is None:
        return tag_entities(model, plan.readings[0], probs[0])
    passages = plan.passages
    entities: list[dict[str, Any]] = []
    for unit, (own_start, own_end), reading, unit_probs in zip(plan.units, owned_spans(plan.units), plan.readings, probs):
        for entity in tag_entities(model, reading, unit_probs):
            start, end = entity["start"] + unit.offset, entity["end"] + unit.offset
            if not own_start <= start < own_end or (entities and start < entities[-1]["end"]):
                continue
            home = passage_at(passages, start)
            entities.append({**entity, "start": start, "end": end, "passage": home,
                             "section": str(passages[home].get("section", "")) if home is not None else ""})
    return entities


def document_labels(model: Any, plan: DocumentPlan, probs: Sequence[Sequence[Any]], *, threshold: float = 0.5) -> dict[str, Any]:
    """A document's labels from its readings' window probabilities: the whole text's record, or
    the units' labels aggregated (`aggregate_labels`)."""
    if plan.units is None:
        return classify_labels(model, plan.readings[0], probs[0], threshold=threshold)
    per_unit = [classify_labels(model, reading, p, threshold=threshold) for reading, p in zip(plan.readings, probs)]
    return aggregate_labels(per_unit, multi_label=model.config.problem_type == "multi_label_classification")


def run_documents(
    items: Iterable[Any],
    *,
    plan: Callable[[Any], DocumentPlan],
    run_batch: Callable[[list[list[int]]], list[Any]],
    combine: Callable[[DocumentPlan, list[list[Any]]], Any],
    batch_size: int,
    max_tokens: int | None,
) -> Iterator[tuple[Any, Any] | BadRecord]:
    """(item, combine(plan, probabilities per reading, per window)) per item, in input order,
    the model inputs of many documents sharing length-sorted batches of at most `batch_size`
    inputs and `max_tokens` padded tokens (batching.run_in_batches: a window of upcoming inputs
    at a time, so memory stays bounded and results stream). Bad records pass through."""
    # never batchjob or io here: training scores its dev set with these functions and stays
    # free of the command line (tests/cli/test_trainer.py)
    from .batching import Prepared, run_in_batches
    from .documents import BadRecord
    from .longdocs import by_document

    def inputs() -> Iterator[Any]:
        for item in items:
            if isinstance(item, BadRecord):
                yield item
                continue
            document = plan(item)
            flat = [(r, ids) for r, reading in enumerate(document.readings) for ids in reading.inputs()]
            if not flat:  # nothing to run (no units): the document's result is ready
                yield _Ready(item, combine(document, [[] for _ in document.readings]))
            for n, (r, ids) in enumerate(flat):
                yield Prepared(HeadInput(item, document, r, last=n == len(flat) - 1), ids)

    def run(batch: list[Any]) -> list[tuple[HeadInput, Any]]:
        return list(zip((p.item for p in batch), run_batch([p.input_ids for p in batch])))

    results = run_in_batches(inputs(), run, length=lambda p: len(p.input_ids),
                             passthrough=lambda x: None if isinstance(x, Prepared) else x,
                             batch_size=batch_size, max_tokens=max_tokens)
    unit_of = lambda result: result[0] if isinstance(result, tuple) and isinstance(result[0], HeadInput) else None  # noqa: E731
    for grouped in by_document(results, unit_of):
        if isinstance(grouped, BadRecord):
            yield grouped
            continue
        if isinstance(grouped, _Ready):
            yield grouped.item, grouped.result
            continue
        item, pending = grouped
        document = pending[0][1][0].plan
        probs: list[list[Any]] = [[] for _ in document.readings]
        for index, (_, result) in pending:
            probs[index].append(result)
        yield item, combine(document, probs)


def tag_documents(
    model: Any, tokenizer: Any, items: Iterable[Any], *, mode: str = "auto", batch_size: int = 8, max_tokens: int | None = None
) -> Iterator[tuple[Any, list[dict[str, Any]]] | BadRecord]:
    """(record, entities) per record (`documents.passages_of` gives its passages) in input order,
    as `tag_document` reads each, in batches shared by the documents (see `run_documents`)."""
    from .documents import passages_of

    return run_documents(items, plan=lambda r: plan_tag(model, tokenizer, r.text, passages_of(r), mode=mode),
                         run_batch=partial(tag_batch, model), combine=partial(document_entities, model),
                         batch_size=batch_size, max_tokens=max_tokens)


def classify_documents(
    model: Any, tokenizer: Any, items: Iterable[Any], *, mode: str = "auto", threshold: float = 0.5, batch_size: int = 8,
    max_tokens: int | None = None,
) -> Iterator[tuple[Any, dict[str, Any]] | BadRecord]:
    """(record, labels record) per record in input order, as `classify_document` reads each, in
    batches shared by the documents (see `run_documents`)."""
    from .documents import passages_of

    return run_documents(items, plan=lambda r: plan_classify(model, tokenizer, r.text, passages_of(r), mode=mode),
                         run_batch=partial(classify_batch, model),
                         combine=partial(document_labels, model, threshold=threshold),
                         batch_size=batch_size, max_tokens=max_tokens)


def tag_document(
    model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto", batch_size: int = DOCUMENT_BATCH
) -> list[dict[str, Any]]:
    """Entities of one document with offsets into `text`, read by `mode`:

    - `auto`: a document that is title/abstract or plain text is read whole (half-overlapping
      windows when long, as `tag_text`); a document with more passages as `passages`.
    - `passages`: each unit of `longdocs.plan_units` (title + abstract, then each passage, a
      long one split at sentences) tagged alone, its entities moved to document offsets; an
      entity then never straddles a passage boundary, and carries its `passage` (index in
      `passages`) and `section`.
    - `windows`: half-overlapping windows over the whole text.
    - `truncate`: only the first window (the rest of the document is not tagged).

    Its inputs run `batch_size` at a time, as `tag_documents` runs many documents'.
    """
    document = plan_tag(model, tokenizer, text, passages, mode=mode)
    ((_, entities),) = run_documents([document], plan=lambda d: d, run_batch=partial(tag_batch, model),
                                     combine=partial(document_entities, model), batch_size=batch_size, max_tokens=None)
    return entities


def passage_at(passages: Sequence[dict[str, Any]], offset: int) -> int | None:
    """The index of the passage holding character `offset`, or None."""
    for index, p in enumerate(passages):
        if p["offset"] <= offset < p["offset"] + len(p["text"]):
            return index
    return None


def classify_document(
    model: Any, tokenizer: Any, text: str, passages: Sequence[dict[str, Any]], *, mode: str = "auto", threshold: float = 0.5,
    batch_size: int = DOCUMENT_BATCH,
) -> dict[str, Any]:
    """Labels of one document, read by `mode`:

    - `auto`: a title/abstract or plain-text document that fits the model in one input is
      classified whole (today's record); otherwise as `passages`.
    - `passages`: each unit of `longdocs.plan_units` classified alone, the labels aggregated by
      `aggregate_labels` (record keys `units`, `label_support`, `scores_mean`, `scores_max`).
    - `windows`: half-overlapping windows over the whole text, probabilities averaged.
    - `truncate`: only the first window.

    Its inputs run `batch_size` at a time, as `classify_documents` runs many documents'.
    """
    document = plan_classify(model, tokenizer, text, passages, mode=mode)
    ((_, labels),) = run_documents([document], plan=lambda d: d, run_batch=partial(classify_batch, model),
                                   combine=partial(document_labels, model, threshold=threshold), batch_size=batch_size,
                                   max_tokens=None)
    return labels


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
