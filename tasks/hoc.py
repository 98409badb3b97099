"""HoC (Hallmarks of Cancer) multi-label document classification, BioGPT's format.

Data: `<split>.tsv`, one already Moses-tokenized sentence a line, `text<TAB>labels` (labels
joined by "|", `empty` for none). The data has no ids: an example's id is its 0-based index
among the file's non-blank lines, as a string ("0", "1", ...), which is also its line index
when the file has no blank lines (the shipped train.tsv has none).

source: the text, stripped, with "." appended when it does not end with one.
target: `the type of this document is {labels}.`
Metric: micro-F1 over the 11 classes (scikit-learn on MultiLabelBinarizer rows: labels outside
the 11 are ignored; a failed parse predicts no class), as BioGPT's DC-HoC evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from biogpt.model.files import text_lines

from .base import Decoding, Example, Prediction, Recipe, Task, TaskDataError, clean_line, micro_prf_statistic, resolve_split_file, strip_prefix

CLASSES: tuple[str, ...] = (
    "tumor promoting inflammation",
    "inducing angiogenesis",
    "evading growth suppressors",
    "resisting cell death",
    "cellular energetics",
    "empty",
    "genomic instability and mutation",
    "sustaining proliferative signaling",
    "avoiding immune destruction",
    "activating invasion and metastasis",
    "enabling replicative immortality",
)
ANSWER = re.compile(r"the type of this document is(.*)")


def split_labels(text: str) -> list[str]:
    return [w.strip() for w in text.strip().split("|")]


def binarize(labels: Sequence[str]) -> list[int]:
    present = set(labels)
    return [1 if c in present else 0 for c in CLASSES]


class HoCTask(Task):
    name = "hoc"
    aliases = ("hoc", "dc-hoc", "hallmarks")
    kind = "generative"
    headline = ("micro_f1",)
    decoding = Decoding(num_beams=1, max_new_tokens=64)
    recipe = Recipe(lr=1e-5, warmup_updates=1000, max_source_positions=900, prompt_length=1, max_updates=20000)

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        text = text.strip()
        return text if text.endswith(".") else text + "."

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        path, split = resolve_split_file("hoc", data, split, lambda s: f"{s}.tsv")
        examples: list[Example] = []
        for number, line in text_lines(path):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise TaskDataError(f"{path}:{number}: expected 'text<TAB>labels', found no tab")
            # the official recipe builds the target from the 2nd field and the evaluator reads the last
            text, labels, gold_labels = fields[0].strip(), fields[1].strip(), fields[-1].strip()
            if not text:
                raise TaskDataError(f"{path}:{number}: empty text")
            source = text if text.endswith(".") else text + "."
            examples.append(
                Example(
                    id=str(len(examples)),
                    source=source,
                    target=f"the type of this document is {labels}.",
                    gold=split_labels(gold_labels),
                    text=fields[0],
                    meta={"line": number},
                )
            )
        return examples

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        line = strip_prefix(clean_line(output), self.prefixes)
        match = ANSWER.search(line)
        labels = split_labels(match.group(1).strip()) if match is not None else ["failed"]
        unknown = sum(1 for label in labels if label not in CLASSES) if match is not None else 0
        return Prediction(
            id=example.id if example else "", value=labels, failed=match is None, output=output, malformed_clauses=unknown
        )

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        from sklearn.metrics import f1_score, precision_score, recall_score

        gold = [binarize(ex.gold) for ex in examples]
        pred = [binarize(p.value) for p in predictions]
        if not gold:
            micro = precision = recall = 0.0
        else:
            micro = float(f1_score(gold, pred, average="micro", zero_division=0))
            precision = float(precision_score(gold, pred, average="micro", zero_division=0))
            recall = float(recall_score(gold, pred, average="micro", zero_division=0))
        return {
            "micro_f1": micro,
            "precision": precision,
            "recall": recall,
            "counts": {
                "documents": len(examples),
                "gold_items": sum(map(sum, gold)),
                "predicted_items": sum(map(sum, pred)),
                "failed_parses": sum(1 for p in predictions if p.failed and not p.missing),
                "unknown_labels": sum(p.malformed_clauses for p in predictions),
            },
        }

    def bootstrap_statistic(
        self, examples: Sequence[Example], predictions: Sequence[Prediction]
    ) -> Callable[[Sequence[int]], dict[str, float]]:
        """Micro-F1 is additive in per-document true positives and row sums."""
        per_doc = []
        for ex, p in zip(examples, predictions, strict=True):
            g, q = binarize(ex.gold), binarize(p.value)
            per_doc.append((sum(a & b for a, b in zip(g, q)), sum(q), sum(g)))
        micro = micro_prf_statistic(per_doc)
        return lambda indices: {"micro_f1": micro(indices)["f1"]}
