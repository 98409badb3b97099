"""Readers of the training data the `train ner|classify|lm` runs take (the generative runs
read their task's own files through `biogpt.tasks`).

A training set is read whole and strictly: a malformed line stops the run with its file and
line number. The batch commands' JSONL reader (`biogpt.io`) is the opposite on purpose: it
streams documents, needs a text field in each, and lets --keep-going skip a bad one. Both open
files through `biogpt.model.files` (gzip, stdin, `file:line` for bytes that are not UTF-8).

Every problem of the data is an `InputDataError` (a data error, exit 1, like the inference
commands' bad input); `TrainingError` is kept for options (biogpt.training.errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biogpt.model.errors import InputDataError
from biogpt.model.files import text_lines
from biogpt.tasks.base import json_objects, read_jsonl

Span = tuple[int, int, str]


def read_training_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, each with `_where` (file:line) for messages."""
    rows = [{**obj, "_where": f"{path}:{number}"} for number, obj in read_jsonl(path, InputDataError)]
    if not rows:
        raise InputDataError(f"{path}: no {what}")
    return rows


def ner_documents(path: Path) -> list[tuple[str, str, list[Span]]]:
    """(id, text, spans) from `{"tokens","tags"}` (IOB2, words joined by spaces) or
    `{"text","entities":[{"start","end","label"}]}` lines."""
    docs = []
    for i, row in enumerate(read_training_jsonl(path, "NER documents")):
        where = row["_where"]
        doc_id = str(row.get("id", i))
        if "tokens" in row:
            docs.append((doc_id, *_iob2_document(row, where)))
        elif isinstance(row.get("text"), str):
            spans = []
            for e in row.get("entities") or []:
                try:
                    s, t, label = int(e["start"]), int(e["end"]), str(e["label"])
                except (KeyError, TypeError, ValueError):
                    raise InputDataError(f"{where}: each entity needs start, end and label") from None
                if not 0 <= s < t <= len(row["text"]):
                    raise InputDataError(f"{where}: entity {s}-{t} lies outside the text")
                spans.append((s, t, label))
            docs.append((doc_id, row["text"], spans))
        else:
            raise InputDataError(f"{where}: expected {{'tokens','tags'}} or {{'text','entities'}}")
    return docs


def _iob2_document(row: dict[str, Any], where: str) -> tuple[str, list[Span]]:
    """(text, spans) of a `{"tokens","tags"}` row: the words joined by single spaces."""
    tokens, tags = row.get("tokens"), row.get("tags")
    if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
        raise InputDataError(f"{where}: 'tokens' and 'tags' must be lists of the same length")
    text, spans = "", []
    open_: list[Any] | None = None
    for token, tag in zip(tokens, tags):
        start = len(text) + (1 if text else 0)
        text = f"{text} {token}" if text else str(token)
        kind, _, label = str(tag).partition("-")
        if kind == "I" and open_ is not None and open_[2] == label:
            open_[1] = len(text)
            continue
        if open_ is not None:
            spans.append(tuple(open_))
            open_ = None
        if kind in ("B", "I") and label:
            open_ = [start, len(text), label]
        elif tag != "O":
            raise InputDataError(f"{where}: tag {tag!r} is not IOB2 (O, B-X, I-X)")
    if open_ is not None:
        spans.append(tuple(open_))
    return text, spans


def classify_rows(path: Path) -> tuple[list[tuple[str, list[str]]], bool]:
    """([(text, labels)], multi_label) from `{"text","label"}` or `{"text","labels":[...]}`."""
    rows, multi = [], False
    for row in read_training_jsonl(path, "documents"):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputDataError(f"{row['_where']}: needs a non-empty 'text'")
        if isinstance(row.get("labels"), list):
            multi = True
            rows.append((text, [str(x) for x in row["labels"]]))
        elif row.get("label") is not None:
            rows.append((text, [str(row["label"])]))
        else:
            raise InputDataError(f"{row['_where']}: needs 'label' or 'labels'")
    return rows, multi


def corpus_texts(path: Path) -> list[str]:
    """Documents of a corpus: JSONL (`text`) when every line is a JSON object, else one per line."""
    lines = [(number, line) for number, line in text_lines(path) if line.strip()]
    if not lines:
        raise InputDataError(f"{path}: empty corpus")
    if not all(line.lstrip().startswith("{") for _, line in lines):
        return [line for _, line in lines]
    texts = []
    for _, row in json_objects(lines, name=str(path), error=InputDataError):
        if row.get("text"):
            texts.append(str(row["text"]))
    return texts
