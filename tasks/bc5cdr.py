"""BC5CDR chemical-induced disease (CID) relation extraction, BioGPT's "relis" format.

source: title and abstract joined (" " when the title ends in a non-word character, else ". "),
lower-cased. target: `the relation between {chemical} and {disease} exists` per gold relation in
file order, joined by "; ", ending with ".", where each MeSH id is named by its longest surface
name in the document's own chemical2id/disease2id (first seen wins a tie).

Metric: BioCreative V document-level CID evaluation: the set of (pmid, chemical MeSH, disease
MeSH) predicted over the split against the gold CID lines of the split's PubTator file (the
JSON relations when that file is absent); generated names are mapped to MeSH through the
split's `<split>.entities.json`, unknown names to "-1" (which can only be a false positive).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import (
    COPY,
    Decoding,
    Example,
    Prediction,
    Recipe,
    Task,
    TaskDataError,
    clean_line,
    match_clauses,
    micro_prf_statistic,
    prf,
    read_json,
    require_mapping,
    resolve_split_file,
    strip_prefix,
)
from .pubtator import PUBTATOR_FILES, read_pubtator

logger = logging.getLogger(__name__)

CLAUSE = re.compile(r"the relation between (.*) and (.*) exists")


def official_source_join(title: str, abstract: str) -> str:
    """Title and abstract joined by the official BC5CDR/KD-DTI recipe (before lower-casing): ". "
    unless the title ends in a non-word character. Not the readers' one-space join
    (biogpt.io.document_text): a fine-tuned model was trained on exactly this text."""
    if re.search(r"\W$", title):
        return title + " " + abstract
    return title + ". " + abstract


def longest_names(name2id: dict[str, str]) -> dict[str, str]:
    """MeSH id → its longest surface name; on a tie the first name seen stays."""
    id2name: dict[str, str] = {}
    for name, mesh in name2id.items():
        if mesh not in id2name or len(name) > len(id2name[mesh]):
            id2name[mesh] = name
    return id2name


class BC5CDRTask(Task):
    name = "bc5cdr"
    aliases = ("bc5cdr", "bc5cdr-re", "cdr")
    kind = "generative"
    headline = ("precision", "recall", "f1")
    relation_roles = ("Chemical", "Disease")
    decoding = Decoding(num_beams=1, max_new_tokens=256)
    recipe = Recipe(lr=1e-5, warmup_updates=100, max_source_positions=640, prompt_length=9, max_epochs=100)
    prefixes = (r"(learned[0-9]+ )+", "in conclusion ,", "we can conclude that", "we have that")
    clause_template = ("the relation between", COPY, "and", COPY, "exists")
    clause_separator = ";"

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        if title is not None and abstract is not None:
            return official_source_join(title, abstract).lower()
        return text.lower()

    def relations(self, prediction: Prediction) -> list[dict[str, Any]]:
        return [
            {"head": chem, "tail": dis, "relation": "CID", "head_id": c, "tail_id": d}
            for chem, dis, c, d in prediction.value
        ]

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        """Read `<split>.json`, its `<split>.entities.json` (names → MeSH for parsing) and, when
        present in the same folder, the split's PubTator file (the gold of the metric)."""
        path, split = resolve_split_file("bc5cdr", data, split, lambda s: f"{s}.json")
        raw = require_mapping(read_json(path), path, "documents keyed by pmid")
        entities_path = path.with_name(f"{path.stem}.entities.json")
        entities: dict[str, dict[str, str]] | None = None
        if entities_path.is_file():
            obj = require_mapping(read_json(entities_path), entities_path, "name-to-MeSH maps")
            if not isinstance(obj.get("chemical2id"), dict) or not isinstance(obj.get("disease2id"), dict):
                raise TaskDataError(f"{entities_path}: expected keys chemical2id and disease2id (name → MeSH maps)")
            entities = {"chemical2id": obj["chemical2id"], "disease2id": obj["disease2id"]}
        else:
            logger.warning("%s is missing: generated names cannot be mapped to MeSH ids", entities_path)
        pubtator_path = path.parent / PUBTATOR_FILES.get(split, "")
        pubtator = read_pubtator(pubtator_path) if split in PUBTATOR_FILES and pubtator_path.is_file() else None
        if pubtator is None:
            logger.info("%s: no PubTator file for split %s; the gold relations come from the JSON", path, split)

        examples: list[Example] = []
        dropped = 0
        for pmid, doc in raw.items():
            if not isinstance(doc, dict) or not all(k in doc for k in ("title", "abstract", "relations")):
                raise TaskDataError(f"{path}: record {pmid!r} lacks title, abstract or relations")
            relations = doc["relations"] or []
            if not relations:  # the official preprocessing drops them: never scored
                dropped += 1
                continue
            id2chem = longest_names(doc.get("chemical2id") or {})
            id2dis = longest_names(doc.get("disease2id") or {})
            clauses = []
            for rel in relations:
                try:
                    chem, dis = id2chem[rel["chemical"]], id2dis[rel["disease"]]
                except KeyError as exc:
                    raise TaskDataError(
                        f"{path}: record {pmid!r}: relation {rel} names {exc} which is not in its chemical2id/disease2id"
                    ) from None
                clauses.append(f"the relation between {chem} and {dis} exists")
            json_gold = frozenset((r["chemical"], r["disease"]) for r in relations)
            if pubtator is not None:
                gold = frozenset(pubtator[str(pmid)].cid_pairs()) if str(pmid) in pubtator else frozenset()
            else:
                gold = json_gold
            examples.append(
                Example(
                    id=str(pmid),
                    source=official_source_join(doc["title"], doc["abstract"]).lower(),
                    target="; ".join(clauses) + ".",
                    gold=gold,
                    title=doc["title"],
                    abstract=doc["abstract"],
                    meta={"entities": entities, "entities_path": str(entities_path)},
                )
            )
        if pubtator is not None:
            known = {e.id for e in examples}
            extra = [p for p, d in pubtator.items() if p not in known and d.cid_pairs()]
            if extra:
                # The BioCreative tool would count their CID relations as false negatives; keep
                # them as examples with an empty source so that the metric stays the tool's.
                logger.warning("%s: %d documents with CID relations are not in %s", pubtator_path, len(extra), path.name)
                for p in extra:
                    d = pubtator[p]
                    examples.append(
                        Example(p, official_source_join(d.title, d.abstract).lower(), "", frozenset(d.cid_pairs()),
                                title=d.title, abstract=d.abstract, meta={"entities": entities, "gold_only": True})
                    )
        if dropped:
            logger.info("%s: dropped %d documents without gold relations (as the official preprocessing)", path, dropped)
        return examples

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        """Clauses → (chemical name, disease name, chemical MeSH, disease MeSH); no clause = failed."""
        line = strip_prefix(clean_line(output), self.prefixes)
        entities = example.meta.get("entities") if example is not None else None
        clauses, malformed = match_clauses(line, ";", CLAUSE.match)
        if clauses and entities is None:
            missing = example.meta.get("entities_path", "<split>.entities.json") if example else "<split>.entities.json"
            raise TaskDataError(f"bc5cdr: cannot map names to MeSH: {missing} is missing")
        pairs: list[tuple[str, str, str, str]] = []
        for match in clauses:
            chem, dis = match.group(1).strip(), match.group(2).strip()
            pairs.append((chem, dis, str(entities["chemical2id"].get(chem, "-1")), str(entities["disease2id"].get(dis, "-1"))))
        return Prediction(
            id=example.id if example is not None else "",
            value=pairs,
            failed=not pairs,
            output=output,
            malformed_clauses=malformed,
        )

    def _sets(self, example: Example, prediction: Prediction) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        return {(c, d) for _, _, c, d in prediction.value}, set(example.gold)

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        tp = n_pred = n_gold = 0
        unknown = 0
        for ex, pred in zip(examples, predictions, strict=True):
            p, g = self._sets(ex, pred)
            tp, n_pred, n_gold = tp + len(p & g), n_pred + len(p), n_gold + len(g)
            unknown += sum(1 for c, d in p if c == "-1" or d == "-1")
        precision, recall, f1 = prf(tp, n_pred, n_gold)
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "counts": {
                "documents": len(examples),
                "gold_items": n_gold,
                "predicted_items": n_pred,
                "true_positives": tp,
                "false_positives": n_pred - tp,
                "false_negatives": n_gold - tp,
                "unknown_entity_pairs": unknown,
                "failed_parses": sum(1 for p in predictions if p.failed and not p.missing),
                "malformed_clauses": sum(p.malformed_clauses for p in predictions),
            },
        }

    def bootstrap_statistic(
        self, examples: Sequence[Example], predictions: Sequence[Prediction]
    ) -> Callable[[Sequence[int]], dict[str, float]]:
        """Sets are keyed by pmid, so the corpus counts are sums of per-document counts."""
        per_doc = []
        for ex, pred in zip(examples, predictions, strict=True):
            p, g = self._sets(ex, pred)
            per_doc.append((len(p & g), len(p), len(g)))
        return micro_prf_statistic(per_doc)
