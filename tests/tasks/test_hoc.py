"""HoC: line-index ids, recipe text, parser and micro-F1 (scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from biogpt.tasks import TaskDataError, get_task
from biogpt.tasks.base import Example, Prediction
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"


@pytest.fixture(scope="module")
def hoc():
    return get_task("hoc")


def test_loader(hoc) -> None:
    with pytest.raises(TaskDataError, match="splits present there: train"):
        hoc.load(FIX / "HoC")
    examples = hoc.load(FIX / "HoC", "train")
    assert [e.id for e in examples] == [str(i) for i in range(20)]
    e = examples[10]
    assert e.source.endswith(" .") and e.target == "the type of this document is resisting cell death|genomic instability and mutation."
    assert e.gold == ["resisting cell death", "genomic instability and mutation"]


def test_no_tab_names_the_line(tmp_path: Path, hoc) -> None:
    (tmp_path / "test.tsv").write_text("fine text\tempty\n\nno tab here\n")
    with pytest.raises(TaskDataError, match=r"test\.tsv:3"):
        hoc.load(tmp_path)


def test_parser(hoc) -> None:
    assert hoc.parse("learned1 the type of this document is empty.").value == ["empty"]
    assert hoc.parse("the type of this document is a | inducing angiogenesis").value == ["a", "inducing angiogenesis"]
    assert hoc.parse("no idea").failed


def test_metric_hand_computed(hoc) -> None:
    gold = [["empty"], ["resisting cell death", "inducing angiogenesis"], ["cellular energetics"]]
    pred = [["empty"], ["resisting cell death", "bogus"], ["failed"]]
    exs = [Example(str(i), "", "", g) for i, g in enumerate(gold)]
    preds = [Prediction(str(i), p, failed=p == ["failed"]) for i, p in enumerate(pred)]
    m = hoc.score(exs, preds)
    # unknown labels are ignored: TP 2, predicted 2, gold 4 -> P 1, R 1/2, micro-F1 2/3
    assert m["micro_f1"] == pytest.approx(2 / 3)
    assert hoc.bootstrap_statistic(exs, preds)([0, 1, 2])["micro_f1"] == pytest.approx(2 / 3)


def test_gold_targets_on_real_data(shared_data: Path, hoc) -> None:
    examples = hoc.load(shared_data / "HoC", "train")
    assert len(examples) == 9972
    assert hoc.score(examples, [hoc.parse(e.target, e) for e in examples])["micro_f1"] == 1.0
