"""`biogpt tag`: named entities from a token-classification model (trained by `biogpt train ner`).

Words are the tokenizer's Moses tokens (a BPE piece ending in `</w>` ends a word); the model's
tag of a word is read on its first piece, exactly as it was trained. Entities are character
spans into the input text, taken from the tokenizer's offset mapping. A document longer than
the model's positions is read in half-overlapping windows and each piece's probabilities are
averaged over the windows that hold it, so nothing is cut off.

The encoding helpers here are shared with `biogpt train ner` so training and tagging agree.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .. import _options as opts

from .. import _common
from .._common import UserError, inputs_or_stdin, progress, provenance, resolve_device, resolve_dtype
from ..batching import limited
from ..io import BadRecord, ReadOptions, make_writer, read_inputs
from ..runstate import RunState

logger = logging.getLogger(__name__)

Span = tuple[int, int, str]


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


def ner_features(tokenizer: Any, text: str, spans: list[Span], label2id: dict[str, int], size: int) -> list[dict[str, list[int]]]:
    """Training windows of one document: ids and labels on each word's first piece (-100 elsewhere)."""
    ids, _, words = encode_words(tokenizer, text)
    labels = [-100] * len(ids)
    for (first, _, _), tag in zip(words, word_tags(text, words, spans)):
        if tag not in label2id:
            raise UserError(f"label {tag!r} is not in the model's labels ({', '.join(label2id)})")
        labels[first] = label2id[tag]
    return [{"input_ids": ids[:1] + ids[s:e], "labels": [-100] + labels[s:e]} for s, e in windows(len(ids), size)]


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
            probs = torch.softmax(model(window).logits[0, 1:].float(), -1).cpu()
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


def pubtator_record(item: Any, entities: list[dict[str, Any]]) -> dict[str, Any]:
    """A PubTator document: the title on `|t|`, the abstract on `|a|` when the input had them
    (PubTator input, JSONL title/abstract), mention offsets into `title + " " + abstract`."""
    from biogpt.tasks.pubtator import title_abstract_lines

    title, abstract, shift = title_abstract_lines(item.text, item.fields.get("title"), item.fields.get("abstract"))
    moved = [{**e, "start": e["start"] + shift, "end": e["end"] + shift} for e in entities]
    return {"id": item.id, "title": title, "abstract": abstract, "entities": moved}


def load_tagger(name: str, *, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    from biogpt.model import BioGptConfig, BioGptForTokenClassification, BioGptTokenizer

    try:
        config = BioGptConfig.from_pretrained(name)
    except Exception as exc:
        raise UserError(f"-m {name}: not a model directory ({exc})") from None
    if "BioGptForTokenClassification" not in (config.extra.get("architectures") or []):
        raise UserError(f"-m {name}: not a token-classification model (train one with `biogpt train ner`)")
    dev = resolve_device(device)
    model = BioGptForTokenClassification.from_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    return model, BioGptTokenizer.from_pretrained(name)


def tag(
    inputs: Optional[list[str]] = typer.Argument(None, help="Files or folders of documents (default: stdin)."),
    model_name: str = typer.Option(..., "--model", "-m", help="A directory written by `biogpt train ner`."),
    input_format: str = typer.Option("auto", "--input-format"),
    text_key: str = typer.Option("text", "--text-key"),
    id_key: Optional[str] = typer.Option(None, "--id-key"),
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl or pubtator."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
    force: bool = opts.FORCE,
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    keep_going: bool = opts.KEEP_GOING,
    errors: Optional[Path] = opts.ERRORS,
    device: str = opts.DEVICE,
    dtype: str = opts.DTYPE,
    resume: bool = opts.RESUME,
    shard: Optional[str] = opts.SHARD,
) -> None:
    """Tag named entities: one JSONL record per document with character-offset entities.

    Example: biogpt tag -m ner-run/model-best abstracts.jsonl --format pubtator
    """
    if errors is not None and not keep_going:
        raise UserError("--errors needs --keep-going")
    inputs = inputs_or_stdin(inputs, command="tag")
    run = RunState.start(command="tag", output=output, output_format=output_format, inputs=inputs,
                         resume=resume, shard=shard, force=force, errors=errors)
    model, tokenizer = load_tagger(model_name, device=run.device(device), dtype=dtype)
    items = run.select(limited(read_inputs(inputs, input_format=input_format, options=ReadOptions(text_key, id_key)), limit))
    sink = run.open()
    writer = run.adopt(make_writer(output_format, sink, allowed=("jsonl", "pubtator")))
    failures = run.failure_log(keep_going=keep_going, errors=errors, force=force)
    bar = progress(description="tag", quiet=_common.QUIET)
    meta = provenance(model, model_name)
    try:
        for item in run.track(items):
            if isinstance(item, BadRecord):
                failures.fail(item.location, item.message, item.id)
                continue
            entities = tag_text(model, tokenizer, item.text)
            if output_format == "pubtator":
                writer.write(pubtator_record(item, entities))
            else:
                writer.write({"id": item.id, "entities": entities, "provenance": meta})
            bar.advance()
    finally:
        bar.close()
        failures.close()
        if sink is not sys.stdout:
            sink.close()
    run.finish()


def register(app: typer.Typer) -> None:
    app.command("tag")(tag)
