"""BioGPT's hard-match triple evaluation (KD-DTI and DDI), exactly as docs/TASK_FORMATS.md's pseudo-code.

Triples are keyed by stripping, lower-casing and removing spaces; a prediction and a gold
triple match when they are equal after either the "abbreviation" or the "body" normalisation
(`aaa (bb)` → `bb` or `aaa`), each metric taking the better of the two on its own. The corpus
headline pools the triples of all documents as sets *without* document ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .base import Example, Prediction, f1_of, mean

Triple = tuple[str, str, str]

_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI", "7": "VII", "8": "VIII", "9": "IX"}
_NON_ALNUM = re.compile("[^a-zA-Z0-9]+")


def key(text: str) -> str:
    return text.strip().lower().replace(" ", "")


def key_triples(triples: Iterable[Sequence[str]]) -> set[Triple]:
    return {(key(d), key(t), key(i)) for d, t, i in triples}


def norm(s: str) -> str:
    """A trailing type number becomes a Roman numeral, "-type" goes, only [a-zA-Z0-9] stays."""
    s = s.strip()
    if len(s) > 2 and s[-1] in _ROMAN and not s[-2].isnumeric():
        s = s[:-1] + _ROMAN[s[-1]]
    s = s.replace("-type", "")
    return _NON_ALNUM.sub("", s)


def _bracketed(s: str) -> bool:
    return "(" in s and s.endswith(")")


def body(s: str) -> str:
    s = s.strip()
    return norm(s[: s.rfind("(")].strip()) if _bracketed(s) else norm(s)


def abbr(s: str) -> str:
    s = s.strip()
    return norm(s[s.rfind("(") + 1 : -1].strip()) if _bracketed(s) else norm(s)


def _apply(fn: Callable[[str], str], triples: set[Triple]) -> set[Triple]:
    return {(fn(d), fn(t), fn(i)) for d, t, i in triples}


def precision(a: set[Triple], g: set[Triple]) -> float:
    return len(a & g) / len(a) if a else float(a == g)


def recall(a: set[Triple], g: set[Triple]) -> float:
    return len(a & g) / len(g) if g else float(a == g)


def best(metric: Callable[[set[Triple], set[Triple]], float], a: set[Triple], g: set[Triple]) -> float:
    return max(metric(_apply(abbr, a), _apply(abbr, g)), metric(_apply(body, a), _apply(body, g)))


def hard_match_scores(golds: Sequence[set[Triple]], preds: Sequence[set[Triple]]) -> dict[str, Any]:
    """Corpus (headline) and per-document scores over keyed triple sets, in document order."""
    pooled_pred: set[Triple] = set().union(*preds) if preds else set()
    pooled_gold: set[Triple] = set().union(*golds) if golds else set()
    p = best(precision, pooled_pred, pooled_gold)
    r = best(recall, pooled_pred, pooled_gold)
    doc_p = [best(precision, a, g) for a, g in zip(preds, golds)]
    doc_r = [best(recall, a, g) for a, g in zip(preds, golds)]
    doc_f = [f1_of(x, y) for x, y in zip(doc_p, doc_r)]
    return {
        "precision": p,
        "recall": r,
        "f1": f1_of(p, r),
        "per_document": {"precision": mean(doc_p), "recall": mean(doc_r), "f1": mean(doc_f)},
        "pooled_gold": len(pooled_gold),
        "pooled_pred": len(pooled_pred),
    }


def score_triples(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    golds = [key_triples(ex.gold) for ex in examples]
    preds = [key_triples(p.value) for p in predictions]
    result = hard_match_scores(golds, preds)
    return {
        "precision": result["precision"],
        "recall": result["recall"],
        "f1": result["f1"],
        "per_document": result["per_document"],
        "counts": {
            "documents": len(examples),
            "gold_items": result["pooled_gold"],
            "predicted_items": result["pooled_pred"],
            "gold_triples_per_document": sum(len(g) for g in golds),
            "predicted_triples_per_document": sum(len(p) for p in preds),
            "failed_parses": sum(1 for p in predictions if p.failed and not p.missing),
            "malformed_clauses": sum(p.malformed_clauses for p in predictions),
        },
    }
