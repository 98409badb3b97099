"""User-defined relation schemas: `{"text", "relations": [{"head", "tail", "relation"}]}` records
and a clause template such as `the relation between {head} and {tail} is {relation}`.

The target is one clause per relation (in the file's order) joined by `; ` and ending with `.`,
the shape of the official relation tasks; outputs are parsed back with a regex built from the
template. The metric: micro precision/recall/F1 over (document, head, tail, relation) triples,
compared case-insensitively with whitespace squeezed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Decoding, Example, Prediction, Task, TaskDataError, clean_line, match_clauses, prf, read_jsonl, resolve_split_file, strip_prefix

DEFAULT_TEMPLATE = "the relation between {head} and {tail} is {relation}"
FIELDS = ("head", "tail", "relation")


def check_template(template: str) -> str:
    names = re.findall(r"\{(\w*)\}", template)
    if "head" not in names or "tail" not in names:
        raise TaskDataError(f"template {template!r}: needs {{head}} and {{tail}} (and optionally {{relation}})")
    unknown = sorted(set(names) - set(FIELDS))
    if unknown or len(names) != len(set(names)):
        raise TaskDataError(f"template {template!r}: each of {{head}}, {{tail}}, {{relation}} at most once, nothing else")
    return template


def template_regex(template: str) -> re.Pattern[str]:
    """The template's literal text escaped (any run of spaces matching any whitespace), each slot a
    group; used with `fullmatch`, so the lazy groups still cover whole names."""
    parts = re.split(r"\{(head|tail|relation)\}", template)
    pattern = ""
    for i, part in enumerate(parts):
        if i % 2:
            pattern += f"(?P<{part}>.+?)"
        else:
            pattern += r"\s+".join(re.escape(word) for word in part.split(" ")) if part else ""
    return re.compile(pattern, flags=re.IGNORECASE)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


class CustomRelationTask(Task):
    name = "custom"
    aliases = ("custom", "user", "template")
    kind = "generative"
    headline = ("precision", "recall", "f1")
    decoding = Decoding(num_beams=1, max_new_tokens=256)
    recipe = None
    options = ("template",)

    def __init__(self, template: str | None = None) -> None:
        self.template = check_template(template or DEFAULT_TEMPLATE)
        self.pattern = template_regex(self.template)

    def clause(self, head: str, tail: str, relation: str) -> str:
        return self.template.format(head=head, tail=tail, relation=relation)

    def target(self, relations: Sequence[dict[str, str]]) -> str:
        return "; ".join(self.clause(r["head"], r["tail"], r.get("relation", "")) for r in relations) + "."

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        return text.strip()

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        """JSONL (or a folder with `<split>.jsonl`) of `{"text", "relations": [...]}` records;
        records without relations are dropped, as the official relation tasks drop them."""
        if options.get("template"):
            self.__init__(options["template"])  # type: ignore[misc]
        path, split = resolve_split_file(self.name, data, split, lambda s: f"{s}.jsonl")
        examples = []
        for number, row in read_jsonl(path):
            if not isinstance(row.get("text"), str) or not isinstance(row.get("relations", []), list):
                raise TaskDataError(f"{path}:{number}: expected {{'text', 'relations': [{{'head','tail','relation'}}]}}")
            relations = row.get("relations") or []
            for rel in relations:
                if not isinstance(rel, dict) or not all(isinstance(rel.get(k), str) for k in ("head", "tail")):
                    raise TaskDataError(f"{path}:{number}: relation {rel!r} needs string head and tail")
                if "{relation}" in self.template and not isinstance(rel.get("relation"), str):
                    raise TaskDataError(f"{path}:{number}: relation {rel!r} needs a string relation (the template uses it)")
            if not relations:
                continue
            gold = [(r["head"], r["tail"], r.get("relation", "")) for r in relations]
            examples.append(Example(id=str(row.get("id", number)), source=self.source_for_document(text=row["text"]),
                                    target=self.target(relations), gold=gold, text=row["text"]))
        if not examples:
            raise TaskDataError(f"{path}: no record with relations")
        return examples

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        line = strip_prefix(clean_line(output), self.prefixes)
        clauses, malformed = match_clauses(line, ";", self.pattern.fullmatch)
        triples = [
            (m.group("head").strip(), m.group("tail").strip(), (m.groupdict().get("relation") or "").strip()) for m in clauses
        ]
        return Prediction(id=example.id if example is not None else "", value=triples, failed=not triples,
                          output=output, malformed_clauses=malformed)

    def relations(self, prediction: Prediction) -> list[dict[str, Any]]:
        return [{"head": h, "tail": t, "relation": r} for h, t, r in prediction.value]

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        tp = n_pred = n_gold = 0
        for ex, pred in zip(examples, predictions, strict=True):
            p = {tuple(_key(x) for x in t) for t in pred.value}
            g = {tuple(_key(x) for x in t) for t in ex.gold}
            tp, n_pred, n_gold = tp + len(p & g), n_pred + len(p), n_gold + len(g)
        precision, recall, f1 = prf(tp, n_pred, n_gold)
        return {"precision": precision, "recall": recall, "f1": f1,
                "counts": {"documents": len(examples), "gold_items": n_gold, "predicted_items": n_pred, "true_positives": tp}}
