"""Chemical and disease named-entity recognition on the BC5CDR PubTator files (our addition).

Examples are PubTator documents: `source`/`text` is `title + " " + abstract` (the text the
PubTator offsets index), `gold` the mention spans `{"start", "end", "label"}` (label: Chemical or
Disease), `target` is empty (NER is trained as token classification, not generation).

Predictions are spans too (`{"id", "entities": [{"start", "end", "label"}]}`). The metric is
seqeval's entity-level precision/recall/F1 in strict IOB2 mode, per type and micro: each
document is cut into tokens (`\\w+` runs and single other characters) that are further split at
every gold and predicted span boundary, so that a span is exactly the tokens it covers and
seqeval's strict match is exact span-and-type match. Predicted spans that overlap an earlier one
cannot be written in IOB2: they are dropped and counted; malformed spans likewise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import Decoding, Example, Prediction, Task, micro_prf_statistic, resolve_split_file
from .pubtator import PUBTATOR_FILES, read_pubtator

_TOKEN = re.compile(r"\w+|[^\w\s]")

Span = tuple[int, int, str]


def _valid_span(entity: Any, length: int) -> Span | None:
    if not isinstance(entity, dict):
        return None
    start, end, label = entity.get("start"), entity.get("end"), entity.get("label")
    if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
        return None
    if not isinstance(label, str) or not label.strip() or not 0 <= start < end <= length:
        return None
    return start, end, label.strip()


def tokens_for(text: str, spans: Sequence[Span]) -> list[tuple[int, int]]:
    """Regex tokens of the text, cut at every span boundary that falls inside one."""
    cuts = sorted({b for s, e, _ in spans for b in (s, e)})
    out: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(text):
        s, e = match.span()
        inner = [b for b in cuts if s < b < e]
        for b in inner:
            out.append((s, b))
            s = b
        out.append((s, e))
    return out


def iob2(tokens: Sequence[tuple[int, int]], spans: Sequence[Span]) -> tuple[list[str], int]:
    """IOB2 tags of `spans` over `tokens`; returns (tags, number of spans that could not be written)."""
    tags = ["O"] * len(tokens)
    dropped = 0
    for start, end, label in sorted(spans, key=lambda x: (x[0], -x[1])):
        inside = [i for i, (s, e) in enumerate(tokens) if s >= start and e <= end]
        if not inside or any(tags[i] != "O" for i in inside):
            dropped += 1
            continue
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return tags, dropped


class NERTask(Task):
    name = "ner"
    aliases = ("ner", "bc5cdr-ner", "tag")
    kind = "ner"
    headline = ("precision", "recall", "f1")
    decoding = Decoding(num_beams=1, max_new_tokens=0)
    recipe = None

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        """`data`: a BC5CDR PubTator file, or the folder holding CDR_{Training,Development,Test}Set.
        Mentions whose offsets do not fit the text are skipped and counted by the PubTator reader
        (its one rule for bad offsets); the gold is the rest."""
        path, split = resolve_split_file("ner", data, split, lambda s: PUBTATOR_FILES[s])
        docs = read_pubtator(path)
        examples = []
        for pmid, doc in docs.items():
            text = doc.text
            gold = [{"start": m.start, "end": m.end, "label": m.type} for m in doc.mentions]
            examples.append(Example(id=pmid, source=text, target="", gold=gold, text=text, title=doc.title, abstract=doc.abstract))
        return examples

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        """`output` is a JSON list of spans (what a tagger writes); anything else is failed."""
        try:
            entities = json.loads(output) if output.strip() else None
        except json.JSONDecodeError:
            entities = None
        return self._from_entities(entities, example, output)

    def prediction_from_record(self, record: dict[str, Any], example: Example) -> Prediction:
        """`entities` (a list of spans); a record carrying only an `output` JSON text is parsed."""
        if "entities" not in record and isinstance(record.get("output"), str):
            return self.parse(record["output"], example)
        return self._from_entities(record.get("entities"), example, None)

    def empty_prediction(self, example: Example) -> Prediction:
        return Prediction(id=example.id, value=[], failed=True, missing=True)

    def _from_entities(self, entities: Any, example: Example | None, output: str | None) -> Prediction:
        length = len(example.text or example.source) if example is not None else 10**12
        if not isinstance(entities, list):
            return Prediction(id=example.id if example else "", value=[], failed=True, output=output)
        spans, malformed = [], 0
        for entity in entities:
            span = _valid_span(entity, length)
            if span is None:
                malformed += 1
            else:
                spans.append({"start": span[0], "end": span[1], "label": span[2]})
        return Prediction(id=example.id if example else "", value=spans, output=output, malformed_clauses=malformed)

    @staticmethod
    def _tags(example: Example, prediction: Prediction) -> tuple[list[str], list[str], int]:
        text = example.text or example.source
        gold = [(e["start"], e["end"], e["label"]) for e in example.gold]
        pred = [(e["start"], e["end"], e["label"]) for e in prediction.value]
        tokens = tokens_for(text, gold + pred)
        gold_tags, _ = iob2(tokens, gold)
        pred_tags, dropped = iob2(tokens, pred)
        return gold_tags, pred_tags, dropped

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        from seqeval.metrics import classification_report
        from seqeval.scheme import IOB2

        y_true, y_pred, dropped = [], [], 0
        for ex, pred in zip(examples, predictions, strict=True):
            g, p, d = self._tags(ex, pred)
            y_true.append(g)
            y_pred.append(p)
            dropped += d
        n_gold = sum(1 for tags in y_true for t in tags if t.startswith("B-"))
        n_pred = sum(1 for tags in y_pred for t in tags if t.startswith("B-"))
        per_type: dict[str, dict[str, float]] = {}
        micro = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        if n_gold or n_pred:
            report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
            for name, row in report.items():
                entry = {"precision": float(row["precision"]), "recall": float(row["recall"]), "f1": float(row["f1-score"]), "support": int(row["support"])}
                if name == "micro avg":
                    micro = entry
                elif not name.endswith(" avg"):
                    per_type[name] = entry
        return {
            "precision": micro["precision"],
            "recall": micro["recall"],
            "f1": micro["f1"],
            "per_type": per_type,
            "counts": {
                "documents": len(examples),
                "gold_items": n_gold,
                "predicted_items": n_pred,
                "failed_parses": sum(1 for p in predictions if p.failed and not p.missing),
                "malformed_entities": sum(p.malformed_clauses for p in predictions),
                "overlapping_entities_dropped": dropped,
            },
        }

    def bootstrap_statistic(
        self, examples: Sequence[Example], predictions: Sequence[Prediction]
    ) -> Callable[[Sequence[int]], dict[str, float]]:
        """Strict entity matches counted per document once (seqeval's entity extraction)."""
        from seqeval.scheme import IOB2, Entities

        per_doc = []
        for ex, pred in zip(examples, predictions, strict=True):
            g, p, _ = self._tags(ex, pred)
            ge = set(Entities([g], IOB2).entities[0]) if g else set()
            pe = set(Entities([p], IOB2).entities[0]) if p else set()
            per_doc.append((len({e.to_tuple() for e in ge} & {e.to_tuple() for e in pe}), len(pe), len(ge)))
        return micro_prf_statistic(per_doc)
