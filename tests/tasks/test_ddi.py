"""DDI: the loader, the parser and BioGPT's hard-match metric (hand-computed values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt.tasks import get_task
from biogpt.tasks.base import Example, Prediction
from biogpt.tasks.hard_match import abbr, body, hard_match_scores, key_triples, norm
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"
LEARNED = "learned1 learned2 learned3 learned4 learned5 learned6 learned7 learned8 learned9 "


@pytest.fixture(scope="module")
def ddi():
    return get_task("ddi")


def test_source_and_target_follow_the_recipe(ddi) -> None:
    examples = ddi.load(FIX / "DDI")
    raw = json.loads((FIX / "DDI" / "test.json").read_text())
    first = examples[0]
    assert first.id == "DDI-DrugBank.d700"
    assert first.source == raw[first.id]["abstract"].strip().replace("\n", " ").lower()
    assert first.target.startswith("the interaction between myfortic and magnesium is mechanism; ")
    assert first.target.endswith(".") and not first.target.endswith("..")
    last = examples[-1]
    assert last.target == "the interaction between cylert and antiepileptic medications is effect."


def test_sort_is_stable_and_uses_the_annotated_case() -> None:
    from biogpt.tasks._triples import sort_triples

    source = "b then a then c"
    triples = [{"drug": "a"}, {"drug": "C"}, {"drug": "b"}, {"drug": "a"}]
    # "C" is capitalised: not found in the lower-cased source (-1), so it sorts first
    assert [t["drug"] for t in sort_triples(triples, source)] == ["C", "b", "a", "a"]


def test_documents_without_triples_are_dropped(ddi) -> None:
    raw = json.loads((FIX / "DDI" / "train.json").read_text())
    assert len(raw) == 5
    assert [e.id for e in ddi.load(FIX / "DDI", "train")] == [k for k, v in raw.items() if v["triples"]]


def test_parser(ddi) -> None:
    out = LEARNED + "the interaction between a and b is effect; junk; the interaction between c and d is int."
    pred = ddi.parse(out)
    assert pred.value == [("a", "b", "effect"), ("c", "d", "int")]
    assert pred.malformed_clauses == 1 and not pred.failed
    # greedy groups: the drug takes everything up to the last " and " before " is "
    assert ddi.parse("the interaction between a and b and c is d").value == [("a and b", "c", "d")]
    assert ddi.parse("we can conclude that the interaction between x and y is advise.").value == [("x", "y", "advise")]
    # "; " is the separator: a bare ";" does not split, and the greedy groups take the rest
    assert ddi.parse("the interaction between a and b is effect;the interaction between c and d is int").value == [
        ("a and b is effect;the interaction between c", "d", "int")
    ]
    failed = ddi.parse("nothing to see")
    assert failed.failed and failed.value == []
    assert ddi.parse("").failed


def test_norm_body_abbr() -> None:
    assert norm("cyp3a4") == "cyp3aIV"  # a trailing type number becomes a Roman numeral
    assert norm("il-2") == "ilII"
    assert norm("a12") == "a12"  # the one before is a digit: unchanged
    assert norm("ab") == "ab"
    assert norm("ace-type inhibitor") == "aceinhibitor"
    assert body("aspirin(asa)") == "aspirin" and abbr("aspirin(asa)") == "asa"
    assert body("x") == abbr("x") == "x"
    assert body("") == abbr("") == ""  # never an IndexError


def _ex(i: int, gold: list[tuple[str, str, str]]) -> Example:
    return Example(id=str(i), source="", target="", gold=gold)


def _pr(i: int, value: list[tuple[str, str, str]]) -> Prediction:
    return Prediction(id=str(i), value=value, failed=not value)


def test_metric_hand_computed(ddi) -> None:
    examples = [_ex(1, [("A", "B", "mechanism"), ("C", "D", "effect")]), _ex(2, [("E", "F", "advise")])]
    preds = [_pr(1, [("a", "b", "mechanism"), ("c", "x", "effect")]), _pr(2, [])]
    m = ddi.score(examples, preds)
    # pooled: 2 predicted, 3 gold, 1 shared -> P = 1/2, R = 1/3, F1 = 2 * 1/6 / (5/6) = 0.4
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(1 / 3) and m["f1"] == pytest.approx(0.4)
    # per document: doc 1 P = R = F = 1/2; doc 2 has no prediction: P = float({} == G) = 0, R = 0
    assert m["per_document"] == pytest.approx({"precision": 0.25, "recall": 0.25, "f1": 0.25})
    assert m["counts"]["gold_items"] == 3 and m["counts"]["predicted_items"] == 2


def test_metric_abbreviation_or_body_each_maximised() -> None:
    gold = [key_triples([("aspirin (asa)", "cox (ptgs)", "effect")])]
    assert hard_match_scores(gold, [key_triples([("asa", "ptgs", "effect")])])["f1"] == 1.0
    assert hard_match_scores(gold, [key_triples([("Aspirin", "COX", "effect")])])["f1"] == 1.0
    # abbreviation on one element and body on the other is no match
    assert hard_match_scores(gold, [key_triples([("asa", "cox", "effect")])])["f1"] == 0.0
    # precision and recall take their best normalisation independently:
    # gold {x (y)}, pred {y, x}: abbr view pred {y, x} gold {y} -> P 1/2 R 1; body view pred {y, x} gold {x} -> same
    s = hard_match_scores([key_triples([("x (y)", "t", "i")])], [key_triples([("y", "t", "i"), ("x", "t", "i")])])
    assert s["precision"] == 0.5 and s["recall"] == 1.0


def test_pooling_merges_equal_triples_of_different_documents(ddi) -> None:
    examples = [_ex(1, [("a", "b", "effect")]), _ex(2, [("a", "b", "effect")])]
    preds = [_pr(1, [("a", "b", "effect")]), _pr(2, [])]
    m = ddi.score(examples, preds)
    assert m["precision"] == m["recall"] == m["f1"] == 1.0  # pooled without document ids
    assert m["per_document"]["recall"] == 0.5


def test_both_empty_document_scores_one() -> None:
    assert hard_match_scores([set()], [set()])["per_document"]["f1"] == 1.0


def test_checker_style_perturbations(ddi) -> None:
    examples = ddi.load(FIX / "DDI")
    preds = []
    for i, e in enumerate(examples):
        clauses = e.target[:-1].split("; ")
        if i == 0:
            out = LEARNED + "; ".join(reversed(clauses + clauses[:1])) + "."  # reordered + duplicated
        elif i == 1:
            out = "we can conclude that " + "; ".join(clauses[1:])  # one missing, no final period
        elif i == 2:
            out = "; ".join(["the interaction between mystery and rosiglitazone is mechanism"] + clauses[1:]) + "."
        else:
            out = "the interaction between cylert and antiepileptic medications effect."  # malformed
        preds.append(ddi.parse(out, e))
    m = ddi.score(examples, preds)
    # gold keyed sets: 10 + 15 + 2 + 1 = 28 (no duplicates across documents in this sample)
    # predicted: 10 + 14 + 2 (one wrong) + 0 = 26, 25 correct
    assert m["counts"]["gold_items"] == 28 and m["counts"]["predicted_items"] == 26
    assert m["precision"] == pytest.approx(25 / 26) and m["recall"] == pytest.approx(25 / 28)
    assert m["counts"]["failed_parses"] == 1 and m["counts"]["malformed_clauses"] == 1


def test_gold_targets_score_one_on_real_data(shared_data: Path, ddi) -> None:
    for split, n in (("train", 664 - 195), ("valid", 50 - 9), ("test", 191)):
        examples = ddi.load(shared_data / "DDI", split)
        assert len(examples) == n
        m = ddi.score(examples, [ddi.parse(e.target, e) for e in examples])
        assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0), split
        assert m["per_document"]["f1"] == 1.0
