"""Scoring a predictions file against a task's data: alignment by id, bookkeeping of missing,
extra, duplicate and malformed records, and bootstrap confidence intervals.

A predictions file is JSONL, one `{"id": ..., "output": "<raw generated text>"}` a line (NER:
`{"id": ..., "entities": [{"start", "end", "label"}]}`, what `biogpt tag` writes). One bad line
cannot crash the scoring or lose a run's score: blank lines are skipped; a line that is not JSON,
not an object or has no id is counted as malformed (reported); a record whose id is known but
whose output is missing or not text is a failed parse; duplicate ids: the last line wins
(reported); ids not in the data are reported and ignored; ids of the data absent from the file
count as empty predictions (reported), as the official evaluators count a missing prediction as
no triples. But a file that holds no prediction at all (empty, or another kind of file: abstracts,
gold data), or whose ids match no document of the data, is an error naming it: a wrong file must
not score as a silent zero.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biogpt.model.files import open_input

from .base import Example, MalformedLine, Prediction, Task, TaskDataError, parse_json_line

logger = logging.getLogger(__name__)

#: how many ids each report list shows (the counts are always complete)
SHOW_IDS = 50


@dataclass
class PredictionFile:
    """The records of a predictions file by id (the last line of an id wins). `path` names the
    file in errors found after reading (no id matches the data); empty for generated predictions."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: int = 0
    malformed: list[str] = field(default_factory=list)  # "line N: why"
    duplicates: list[str] = field(default_factory=list)
    path: str = ""


def _has_prediction(obj: dict[str, Any], kind: str) -> bool:
    if kind == "ner" and isinstance(obj.get("entities"), list):
        return True
    return isinstance(obj.get("output"), str)


def read_predictions(path: Path | str, kind: str = "generative") -> PredictionFile:
    """Read a JSONL predictions file (gzip or not); bad lines are counted (see the module
    docstring), a file without a single prediction record raises TaskDataError. Bytes that are
    not UTF-8 raise InputDataError naming `file:line`: the whole file needs re-encoding, which no
    count of malformed lines would tell."""
    field_name = "entities" if kind == "ner" else "output"
    with open_input(path) as source:
        result = PredictionFile(path=source.name)
        for number, line in source.lines():
            if not line.strip():
                continue
            result.lines += 1
            try:
                obj = parse_json_line(line)
            except MalformedLine as exc:
                result.malformed.append(f"line {number}: {exc}")
                continue
            if not isinstance(obj, dict):
                result.malformed.append(f"line {number}: not a JSON object")
                continue
            rid = obj.get("id")
            if rid is None or isinstance(rid, (dict, list)):
                result.malformed.append(f"line {number}: no usable 'id' (fields: {', '.join(list(obj)[:8]) or 'none'})")
                continue
            rid = str(rid)
            if not _has_prediction(obj, kind):
                result.malformed.append(f"line {number}: id {rid}: no {field_name!r} (fields: {', '.join(list(obj)[:8])})")
            if rid in result.records:
                result.duplicates.append(rid)
            result.records[rid] = obj
    if not result.lines:
        raise TaskDataError(f"{path}: no predictions in the file (it is empty)")
    if not any(_has_prediction(obj, kind) for obj in result.records.values()):
        example = '{"id": ..., "entities": [...]}' if kind == "ner" else '{"id": ..., "output": "..."}'
        raise TaskDataError(
            f"{path}: none of its {result.lines} lines is a prediction (first: {result.malformed[0]}); expected {example} lines"
        )
    return result


def align(
    task: Task, examples: Sequence[Example], predictions: PredictionFile
) -> tuple[list[Prediction], list[str], list[str]]:
    """Predictions in the examples' order; returns (predictions, missing ids, extra ids)."""
    known = {ex.id for ex in examples}
    out: list[Prediction] = []
    missing: list[str] = []
    for ex in examples:
        record = predictions.records.get(ex.id)
        if record is None:
            missing.append(ex.id)
            out.append(task.empty_prediction(ex))
        else:
            pred = task.prediction_from_record(record, ex)
            pred.id = ex.id
            out.append(pred)
    extra = [rid for rid in predictions.records if rid not in known]
    return out, missing, extra


def bootstrap(
    task: Task, examples: Sequence[Example], predictions: Sequence[Prediction], n: int, seed: int = 0
) -> dict[str, Any]:
    """95% percentile intervals of the headline metrics over `n` resamplings of the documents
    (with replacement, the same number of documents each time)."""
    stat = task.bootstrap_statistic(examples, predictions)
    rng = random.Random(seed)
    size = len(examples)
    samples: dict[str, list[float]] = {k: [] for k in task.headline}
    if size == 0 or n <= 0:
        return {"n": n, "seed": seed, "ci95": {}}
    for _ in range(n):
        indices = [rng.randrange(size) for _ in range(size)]
        values = stat(indices)
        for k in task.headline:
            samples[k].append(values[k])
    ci = {}
    for k, values in samples.items():
        values.sort()
        ci[k] = [_percentile(values, 2.5), _percentile(values, 97.5)]
    return {"n": n, "seed": seed, "method": "percentile, documents resampled with replacement", "ci95": ci}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def evaluate(
    task: Task,
    examples: Sequence[Example],
    predictions: PredictionFile,
    *,
    bootstrap_samples: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """The metrics dict: headline metrics at the top level, then task extras, `counts` (with the
    predictions file's bookkeeping) and, when asked, `bootstrap`. Predictions none of whose ids
    is in the data raise TaskDataError: that is a mismatched file or split, not a score of 0."""
    preds, missing, extra = align(task, examples, predictions)
    if examples and len(missing) == len(examples):
        shown = f"; its ids look like {extra[0]!r}, the data's like {examples[0].id!r}" if extra else ""
        raise TaskDataError(
            f"{predictions.path or 'the predictions'}: none of its {len(predictions.records)} ids is an id of the "
            f"{len(examples)} documents of the data{shown} (wrong --data, --data-split or predictions file?)"
        )
    metrics = task.score(examples, preds)
    counts = metrics.setdefault("counts", {})
    counts.update(
        {
            "prediction_lines": predictions.lines,
            "predictions_used": len(examples) - len(missing),
            "missing_ids": len(missing),
            "extra_ids": len(extra),
            "duplicate_ids": len(predictions.duplicates),
            "malformed_lines": len(predictions.malformed),
        }
    )
    failed = [p.id for p in preds if p.failed and not p.missing]
    metrics["missing_ids"] = missing[:SHOW_IDS]
    metrics["extra_ids"] = extra[:SHOW_IDS]
    metrics["duplicate_ids"] = predictions.duplicates[:SHOW_IDS]
    metrics["malformed_lines"] = predictions.malformed[:SHOW_IDS]
    metrics["failed_ids"] = failed[:SHOW_IDS]
    if missing:
        logger.warning("%d ids of the data have no prediction; they count as empty predictions", len(missing))
    if extra:
        logger.warning("%d predicted ids are not in the data; ignored", len(extra))
    if predictions.duplicates:
        logger.warning("%d duplicate ids in the predictions; the last line of each wins", len(predictions.duplicates))
    if predictions.malformed:
        logger.warning("%d malformed prediction lines (first: %s)", len(predictions.malformed), predictions.malformed[0])
    if bootstrap_samples:
        metrics["bootstrap"] = bootstrap(task, examples, preds, bootstrap_samples, seed)
    return metrics
