"""PubMedQA (PQA-L, the 1,000 expert-labelled questions), yes/no/maybe.

Splits are rebuilt from ori_pqal.json exactly as the PubMedQA authors' split script does (see
docs/TASK_FORMATS.md): `random.seed(0)` once; group pmids by final_decision (yes, no, maybe,
in that order, iterating the file in its own order), shuffle each group, the first ceil(n/2)
of each group form the cross-validation half, the rest the 500-question test split. The CV half
is split the same way into 10 parts with the random state continuing; when the last part is
smaller, one random pmid of each other part moves into it. BioGPT trains on fold 0:
valid = part 0, train = parts 1-9.

Two source formats (`setting`), both released by BioGPT:
  - "reasoning-required" (default): `question: {Q} context: {C} ` (original case)
  - "reasoning-free": `question: {Q} context: {C} answer: {LONG_ANSWER}`, lower-cased, with "."
    appended when missing (the hub's microsoft/BioGPT-Large-PubMedQA).
target: `the answer to the question given the context is {yes|no|maybe}.`
Metric: accuracy (headline) and macro-F1 over yes/no/maybe; a failed parse is wrong.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import (
    Decoding,
    Example,
    Prediction,
    Recipe,
    Task,
    TaskDataError,
    clean_line,
    read_json,
    require_mapping,
    strip_prefix,
)

logger = logging.getLogger(__name__)

LABELS = ("yes", "no", "maybe")
SETTINGS = ("reasoning-required", "reasoning-free")
_SETTING_ALIASES = {
    "reasoning-required": "reasoning-required",
    "reasoning_required": "reasoning-required",
    "required": "reasoning-required",
    "rr": "reasoning-required",
    "reasoning-free": "reasoning-free",
    "reasoning_free": "reasoning-free",
    "free": "reasoning-free",
    "rf": "reasoning-free",
}
ANSWER = re.compile(r"the answer to the question given the context is(.*)")
FAILED = "failed"


def normalize_setting(setting: str | None) -> str:
    if setting is None:
        return "reasoning-required"
    try:
        return _SETTING_ALIASES[setting.strip().lower()]
    except KeyError:
        raise TaskDataError(f"pubmedqa: unknown setting {setting!r}; expected {' or '.join(SETTINGS)}") from None


def _split(dataset: dict[str, Any], fold: int, rng: random.Random, path: Path) -> list[dict[str, Any]]:
    """The PubMedQA authors' label-stratified split into `fold` parts."""
    by_label: dict[str, list[str]] = {label: [] for label in LABELS}
    for pmid, info in dataset.items():
        label = info.get("final_decision") if isinstance(info, dict) else None
        if label not in by_label:
            raise TaskDataError(f"{path}: record {pmid!r}: final_decision {label!r} is not yes, no or maybe")
        by_label[label].append(pmid)
    parts_by_label = {}
    for label, pmids in by_label.items():
        rng.shuffle(pmids)
        size = math.ceil(len(pmids) / fold)
        parts_by_label[label] = [pmids[i * size : (i + 1) * size] if i < fold - 1 else pmids[i * size :] for i in range(fold)]
    output = [{p: dataset[p] for label in LABELS for p in parts_by_label[label][i]} for i in range(fold)]
    if len(output[-1]) != len(output[0]):
        if any(not part for part in output[:-1]):
            raise TaskDataError(f"{path}: {len(dataset)} questions are too few for the official {fold}-part split")
        for i in range(fold - 1):
            picked = rng.choice(list(output[i]))
            output[-1][picked] = output[i].pop(picked)
    return output


def official_splits(dataset: dict[str, Any], path: Path, *, folds: bool = True) -> dict[str, list[str]]:
    """pmids of test (500), fold-0 train (450) and fold-0 valid (50), in the split's own order.
    `folds=False` stops after the test half (the 10-part split needs enough questions)."""
    rng = random.Random(0)
    cv, test = _split(dataset, 2, rng, path)
    if not folds:
        return {"test": list(test), "cv": list(cv)}
    parts = _split(cv, 10, rng, path)
    return {
        "test": list(test),
        "valid": list(parts[0]),
        "train": [p for i in range(1, 10) for p in parts[i]],
    }


def build_source(record: dict[str, Any], setting: str) -> str:
    question = str(record["QUESTION"]).strip()
    context = " ".join(str(s).strip() for s in record["CONTEXTS"])
    context = re.sub(r"\n", " ", context)
    context = re.sub(r"\s+", " ", context).strip()
    if setting == "reasoning-free":
        source = f"question: {question} context: {context} answer: {str(record.get('LONG_ANSWER', '')).strip()}"
        source = source.replace("\n", "").strip().lower()
        return source if source.endswith(".") else source + "."
    return f"question: {question} context: {context} "


def build_target(label: str) -> str:
    return f"the answer to the question given the context is {label}."


class PubMedQATask(Task):
    name = "pubmedqa"
    aliases = ("pubmedqa", "pqa", "pqal", "qa-pubmedqa")
    kind = "generative"
    headline = ("accuracy", "macro_f1")
    decoding = Decoding(num_beams=1, max_new_tokens=32)
    recipe = Recipe(lr=1e-5, warmup_updates=100, max_source_positions=900, prompt_length=9, max_epochs=100)
    options = ("setting",)

    def source_for_question(self, question: str, context: str | list[str], *, long_answer: str = "", setting: str | None = None) -> str:
        """The model input for a user's question, by the recipe of the chosen setting."""
        contexts = [context] if isinstance(context, str) else list(context)
        record = {"QUESTION": question, "CONTEXTS": contexts, "LONG_ANSWER": long_answer}
        return build_source(record, normalize_setting(setting))

    def answer_candidates(self) -> list[tuple[str, str]]:
        return [(label, build_target(label)) for label in ("yes", "no", "maybe")]

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        """`data`: ori_pqal.json or its folder (the official split is rebuilt), or any JSON of
        the same shape (used whole, e.g. a saved pqal_test_set.json)."""
        setting = normalize_setting(options.get("setting"))
        if data is None:
            raise TaskDataError("pubmedqa: no data given; pass ori_pqal.json or the folder holding it")
        path = Path(data)
        if split not in ("train", "valid", "test"):
            raise TaskDataError(f"pubmedqa: unknown split {split!r}; expected train, valid or test")
        if path.is_dir():
            if not (path / "ori_pqal.json").is_file():
                raise TaskDataError(f"pubmedqa: {path} has no ori_pqal.json (the 1,000 labelled questions)")
            path = path / "ori_pqal.json"
        elif not path.is_file():
            raise TaskDataError(f"pubmedqa: {path}: no such file or directory")
        dataset = require_mapping(read_json(path), path, "questions keyed by pmid")
        for pmid, record in dataset.items():
            if not isinstance(record, dict) or any(k not in record for k in ("QUESTION", "CONTEXTS", "final_decision")):
                raise TaskDataError(f"{path}: record {pmid!r} lacks QUESTION, CONTEXTS or final_decision")
        if path.name == "ori_pqal.json":
            pmids = official_splits(dataset, path, folds=split != "test")[split]
            self._check_ground_truth(path, split, pmids, dataset)
        else:
            logger.info("%s is not ori_pqal.json: using all its %d questions as the %s split", path, len(dataset), split)
            pmids = list(dataset)
        examples = []
        for pmid in pmids:
            record = dataset[pmid]
            label = str(record["final_decision"]).strip().lower()
            examples.append(
                Example(
                    id=str(pmid),
                    source=build_source(record, setting),
                    target=build_target(label),
                    gold=label,
                    text=record.get("QUESTION"),
                    meta={"setting": setting},
                )
            )
        return examples

    @staticmethod
    def _check_ground_truth(path: Path, split: str, pmids: list[str], dataset: dict[str, Any]) -> None:
        """The rebuilt test half must be test_ground_truth.json's keys; a mismatch means a
        reordered or edited ori_pqal.json, so the scores would not be the official ones."""
        truth_path = path.with_name("test_ground_truth.json")
        if split != "test" or not truth_path.is_file():
            return
        truth = read_json(truth_path)
        if isinstance(truth, dict) and set(truth) != set(pmids):
            logger.warning("%s: the rebuilt test split differs from %s; is ori_pqal.json in its original order?", path, truth_path)
        elif isinstance(truth, dict):
            bad = [p for p in pmids if truth[p] != dataset[p]["final_decision"]]
            if bad:
                logger.warning("%s: %d labels differ from %s (e.g. %s)", path, len(bad), truth_path, bad[0])

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        """The text after `...given the context is`, stripped; anything else is failed (wrong)."""
        line = strip_prefix(clean_line(output), self.prefixes)
        match = ANSWER.search(line)
        answer = match.group(1).strip() if match is not None else FAILED
        return Prediction(id=example.id if example else "", value=answer, failed=match is None, output=output)

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        from sklearn.metrics import f1_score

        gold = [ex.gold for ex in examples]
        pred = [p.value for p in predictions]
        correct = sum(1 for g, p in zip(gold, pred, strict=True) if g == p)
        accuracy = correct / len(gold) if gold else 0.0
        macro = float(f1_score(gold, pred, labels=list(LABELS), average="macro", zero_division=0)) if gold else 0.0
        return {
            "accuracy": accuracy,
            "macro_f1": macro,
            "counts": {
                "documents": len(examples),
                "correct": correct,
                "gold_items": len(gold),
                "predicted_items": sum(1 for p in predictions if not p.failed),
                "failed_parses": sum(1 for p in predictions if p.failed and not p.missing),
                "invalid_answers": sum(1 for p in predictions if not p.failed and p.value not in LABELS),
                "gold_labels": {label: gold.count(label) for label in LABELS},
                "predicted_labels": {label: pred.count(label) for label in LABELS},
            },
        }

    def bootstrap_statistic(
        self, examples: Sequence[Example], predictions: Sequence[Prediction]
    ) -> Callable[[Sequence[int]], dict[str, float]]:
        """Accuracy and macro-F1 from the resampled confusion counts (equal to scikit-learn's)."""
        pairs = [(ex.gold, p.value) for ex, p in zip(examples, predictions, strict=True)]

        def stat(indices: Sequence[int]) -> dict[str, float]:
            tp = dict.fromkeys(LABELS, 0)
            n_pred = dict.fromkeys(LABELS, 0)
            n_gold = dict.fromkeys(LABELS, 0)
            for i in indices:
                g, p = pairs[i]
                if g in n_gold:
                    n_gold[g] += 1
                if p in n_pred:
                    n_pred[p] += 1
                if g == p and g in tp:
                    tp[g] += 1
            f1s = []
            for label in LABELS:
                denom = n_pred[label] + n_gold[label]
                f1s.append(2 * tp[label] / denom if denom else 0.0)
            correct = sum(1 for i in indices if pairs[i][0] == pairs[i][1])
            return {"accuracy": correct / len(indices) if indices else 0.0, "macro_f1": sum(f1s) / len(LABELS)}

        return stat
