"""PubMedQA: the official split, both source settings, the parser and accuracy/macro-F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt.tasks import TaskDataError, get_task
from biogpt.tasks.base import Example, Prediction
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"
LEARNED = "learned1 learned2 learned3 learned4 learned5 learned6 learned7 learned8 learned9 "


@pytest.fixture(scope="module")
def qa():
    return get_task("pubmedqa")


def test_split_of_the_fixture(qa) -> None:
    examples = qa.load(FIX / "PubMedQA")
    # 12 questions (6 yes, 4 no, 2 maybe): the test half keeps the last floor(n/2) of each shuffled group
    assert [e.gold for e in examples] == ["yes"] * 3 + ["no"] * 2 + ["maybe"]
    assert [e.id for e in examples] == ["21645374", "25432938", "23831910", "17208539", "17113061", "17940352"]
    with pytest.raises(TaskDataError, match="too few"):
        qa.load(FIX / "PubMedQA", "valid")


def test_sources_in_both_settings(qa) -> None:
    raw = json.loads((FIX / "PubMedQA" / "ori_pqal.json").read_text())
    e = qa.load(FIX / "PubMedQA")[0]
    rec = raw[e.id]
    assert e.source.startswith("question: " + rec["QUESTION"].strip() + " context: " + rec["CONTEXTS"][0].strip()[:40])
    assert e.source.endswith(" ") and "  " not in e.source.strip() and "\n" not in e.source
    assert e.target == "the answer to the question given the context is yes."
    free = qa.load(FIX / "PubMedQA" / "ori_pqal.json", setting="reasoning-free")[0]
    assert free.source == free.source.lower() and free.source.endswith(".")
    assert " answer: " + rec["LONG_ANSWER"].strip().lower()[:30] in free.source
    assert free.target == e.target
    with pytest.raises(TaskDataError, match="unknown setting"):
        qa.load(FIX / "PubMedQA", setting="bogus")


def test_parser(qa) -> None:
    base = "the answer to the question given the context is "
    assert qa.parse(LEARNED + base + "yes.").value == "yes"
    assert qa.parse("we can conclude that " + base + "maybe").value == "maybe"
    assert qa.parse("blah " + base + "no .").value == "no"
    assert qa.parse(base + "yes, probably.").value == "yes, probably"  # wrong, not failed
    bad = qa.parse("the answer is yes")
    assert bad.failed and bad.value == "failed"


def test_metric_hand_computed(qa) -> None:
    gold = ["yes", "yes", "no", "maybe"]
    pred = ["yes", "no", "no", "failed"]
    exs = [Example(str(i), "", "", g) for i, g in enumerate(gold)]
    preds = [Prediction(str(i), p, failed=p == "failed") for i, p in enumerate(pred)]
    m = qa.score(exs, preds)
    # accuracy 2/4. F1: yes P 1/1 R 1/2 -> 2/3; no P 1/2 R 1 -> 2/3; maybe 0 -> macro 4/9
    assert m["accuracy"] == 0.5 and m["macro_f1"] == pytest.approx(4 / 9)
    assert qa.bootstrap_statistic(exs, preds)([0, 1, 2, 3]) == pytest.approx({"accuracy": 0.5, "macro_f1": 4 / 9})


def test_official_split_on_real_data(shared_data: Path, qa) -> None:
    truth = json.loads((shared_data / "PubMedQA" / "test_ground_truth.json").read_text())
    test = qa.load(shared_data / "PubMedQA")
    assert len(test) == 500 and {e.id for e in test} == set(truth)
    assert all(truth[e.id] == e.gold for e in test)
    train = qa.load(shared_data / "PubMedQA", "train")
    valid = qa.load(shared_data / "PubMedQA", "valid")
    assert (len(train), len(valid)) == (450, 50)
    ids = [e.id for e in train + valid + test]
    assert len(set(ids)) == 1000
    for setting in ("reasoning-required", "reasoning-free"):
        examples = qa.load(shared_data / "PubMedQA", setting=setting)
        m = qa.score(examples, [qa.parse(e.target, e) for e in examples])
        assert (m["accuracy"], m["macro_f1"]) == (1.0, 1.0)
