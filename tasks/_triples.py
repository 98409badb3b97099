"""What KD-DTI and DDI share: the "relis" interaction target, its parser and the hard-match score."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import COPY, Example, Prediction, Task, TaskDataError, clean_line, match_clauses, read_json, require_mapping, resolve_split_file, strip_prefix
from .hard_match import score_triples

CLAUSE = re.compile(r"the interaction between (.*) and (.*) is (.*)")


def sort_triples(triples: list[dict[str, str]], source: str) -> list[dict[str, str]]:
    """Stable sort by where the drug, *as annotated*, first occurs in the lower-cased source
    (a capitalised drug is "not found", -1, and sorts first: the official quirk)."""
    return sorted(triples, key=lambda t: source.find(t["drug"]))


def build_target(triples: list[dict[str, str]]) -> str:
    clauses = [
        f"the interaction between {t['drug'].lower()} and {t['target'].lower()} is {t['interaction'].lower()}"
        for t in triples
    ]
    return "; ".join(clauses) + "."


class TripleTask(Task):
    """Base of KD-DTI and DDI; subclasses define `source_of`."""

    kind = "generative"
    headline = ("precision", "recall", "f1")
    clause_template: tuple[Any, ...] | None = ("the interaction between", COPY, "and", COPY, "is", None)

    def relations(self, prediction: Prediction) -> list[dict[str, Any]]:
        return [{"head": d, "tail": t, "relation": i} for d, t, i in prediction.value]

    def source_of(self, record: dict[str, Any]) -> str:
        raise NotImplementedError

    def required_fields(self) -> tuple[str, ...]:
        return ("abstract", "triples")

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        path, split = resolve_split_file(self.name, data, split, lambda s: f"{s}.json")
        raw = require_mapping(read_json(path), path, "documents keyed by id")
        examples = []
        for doc_id, doc in raw.items():
            if not isinstance(doc, dict) or any(k not in doc for k in self.required_fields()):
                raise TaskDataError(f"{path}: record {doc_id!r} lacks one of {', '.join(self.required_fields())}")
            triples = doc["triples"] or []
            if not triples:  # dropped by the official preprocessing: never scored
                continue
            for t in triples:
                if not isinstance(t, dict) or any(not isinstance(t.get(k), str) for k in ("drug", "target", "interaction")):
                    raise TaskDataError(f"{path}: record {doc_id!r}: triple {t!r} lacks drug, target or interaction")
            source = self.source_of(doc)
            examples.append(
                Example(
                    id=str(doc_id),
                    source=source,
                    target=build_target(sort_triples(list(triples), source)),
                    gold=[(t["drug"], t["target"], t["interaction"]) for t in triples],
                    title=doc.get("title"),
                    abstract=doc["abstract"],
                    meta={"pmid": doc["pmid"]} if "pmid" in doc else {},
                )
            )
        return examples

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        """Split on "; " and match each (stripped) piece; no clause = failed (empty set)."""
        line = strip_prefix(clean_line(output), self.prefixes)
        clauses, malformed = match_clauses(line, "; ", CLAUSE.match)
        triples = [(m.group(1).strip(), m.group(2).strip(), m.group(3).strip()) for m in clauses]
        return Prediction(
            id=example.id if example is not None else "",
            value=triples,
            failed=not triples,
            output=output,
            malformed_clauses=malformed,
        )

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        return score_triples(examples, predictions)
