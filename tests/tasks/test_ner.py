"""NER on the BC5CDR PubTator files: spans, IOB2 conversion and seqeval's strict metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from biogpt.tasks import get_task
from biogpt.tasks.base import Example
from biogpt.tasks.ner import iob2, tokens_for
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"


@pytest.fixture(scope="module")
def ner():
    return get_task("ner")


def test_loader(ner) -> None:
    examples = ner.load(FIX / "BC5CDR")
    assert len(examples) == 5 and examples[0].id == "8701013"
    e = examples[0]
    assert e.gold[0] == {"start": 0, "end": 10, "label": "Chemical"} and e.text[0:10] == "Famotidine"
    assert all(e.text[g["start"] : g["end"]] for g in e.gold)
    assert len(ner.load(FIX / "BC5CDR" / "CDR_TestSet.PubTator.txt")) == 5


def test_tokens_are_cut_at_span_boundaries() -> None:
    text = "Famotidine-associated delirium."
    tokens = tokens_for(text, [(0, 10, "Chemical"), (22, 30, "Disease"), (0, 4, "X")])
    assert [text[s:e] for s, e in tokens] == ["Famo", "tidine", "-", "associated", "delirium", "."]
    tags, dropped = iob2(tokens, [(0, 10, "Chemical"), (0, 4, "X"), (22, 30, "Disease")])
    assert tags == ["B-Chemical", "I-Chemical", "O", "O", "B-Disease", "O"] and dropped == 1  # overlap dropped


def test_metric_hand_computed(ner) -> None:
    text = "Aspirin causes ulcers and cisplatin causes renal failure."
    gold = [
        {"start": 0, "end": 7, "label": "Chemical"},
        {"start": 15, "end": 21, "label": "Disease"},
        {"start": 26, "end": 35, "label": "Chemical"},
        {"start": 43, "end": 56, "label": "Disease"},
    ]
    e = Example("1", text, "", gold, text=text)
    record = {
        "id": "1",
        "entities": [
            {"start": 0, "end": 7, "label": "Chemical"},  # TP
            {"start": 15, "end": 21, "label": "Chemical"},  # wrong type: FP Chemical, FN Disease
            {"start": 43, "end": 48, "label": "Disease"},  # partial: FP + FN (strict)
            {"start": 26, "end": 35.5, "label": "Chemical"},  # malformed: dropped
            {"start": 50, "end": 999, "label": "Disease"},  # outside the text: dropped
        ],
    }
    pred = ner.prediction_from_record(record, e)
    assert pred.malformed_clauses == 2
    m = ner.score([e], [pred])
    # 3 predicted, 4 gold, 1 TP -> P 1/3, R 1/4, F1 = 2/7
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 4) and m["f1"] == pytest.approx(2 / 7)
    # Chemical: pred 2, TP 1, gold 2 -> P 1/2 R 1/2; Disease: pred 1, TP 0, gold 2
    assert m["per_type"]["Chemical"]["f1"] == pytest.approx(0.5) and m["per_type"]["Disease"]["f1"] == 0.0
    assert ner.bootstrap_statistic([e], [pred])([0]) == pytest.approx({"precision": 1 / 3, "recall": 1 / 4, "f1": 2 / 7})


def test_missing_and_text_output(ner) -> None:
    e = ner.load(FIX / "BC5CDR")[0]
    assert ner.score([e], [ner.empty_prediction(e)])["recall"] == 0.0
    assert ner.parse('[{"start": 0, "end": 10, "label": "Chemical"}]', e).value == [{"start": 0, "end": 10, "label": "Chemical"}]
    assert ner.parse("not json", e).failed


def test_gold_spans_score_one_on_real_data(shared_data: Path, ner) -> None:
    examples = ner.load(shared_data / "BC5CDR", "test")
    m = ner.score(examples, [ner.prediction_from_record({"entities": e.gold}, e) for e in examples])
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert set(m["per_type"]) == {"Chemical", "Disease"} and m["counts"]["gold_items"] == 9809
