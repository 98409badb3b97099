"""BC5CDR: recipe text, the parser (prefixes, MeSH mapping, -1 names) and the CID metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt.tasks import TaskDataError, get_task
from biogpt.tasks.bc5cdr import official_source_join, longest_names
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"
LEARNED = "learned1 learned2 learned3 learned4 learned5 learned6 learned7 learned8 learned9 "


@pytest.fixture(scope="module")
def task():
    return get_task("bc5cdr")


@pytest.fixture(scope="module")
def examples(task):
    return {e.id: e for e in task.load(FIX / "BC5CDR")}


def test_join_and_longest_names() -> None:
    assert official_source_join("A title.", "Body") == "A title. Body"
    assert official_source_join("A title", "Body") == "A title. Body"
    assert official_source_join("Is it?", "Body") == "Is it? Body"
    # longest surface name per id; a tie keeps the first one seen
    assert longest_names({"ab": "X", "abcd": "X", "wxyz": "X", "q": "Y"}) == {"X": "abcd", "Y": "q"}


def test_source_target_and_gold(examples) -> None:
    e = examples["8701013"]
    assert e.source == "famotidine-associated delirium. a series of six cases. famotidine is a histamine h2-receptor antagonist " + e.source[104:]
    assert e.source == e.source.lower()
    assert e.target == "the relation between famotidine and delirium exists."
    assert e.gold == {("D015738", "D003693")}
    three = examples["23433219"].target
    assert three.count("; ") == 2 and three.endswith("exists.")


def test_parser_prefixes_and_mapping(task, examples) -> None:
    e = examples["8701013"]
    for out in (
        LEARNED + "the relation between famotidine and delirium exists.",
        "in conclusion , the relation between famotidine and delirium exists",
        "we have that the relation between famotidine and delirium exists .",
        "the relation between famotidine and delirium exists;junk; ",
    ):
        assert task.parse(out, e).value == [("famotidine", "delirium", "D015738", "D003693")], out
    renamed = task.parse("the relation between famotidinex and delirium exists", e)
    assert renamed.value == [("famotidinex", "delirium", "-1", "D003693")]
    assert task.parse("the relation famotidine delirium", e).failed
    assert task.parse("", e).failed


def test_metric_hand_computed(task, examples) -> None:
    ids = ["8701013", "439781", "23872883"]
    exs = [examples[i] for i in ids]
    outs = [
        # correct + duplicated clause + an unknown name (-1: a false positive)
        "the relation between famotidine and delirium exists; the relation between famotidine and delirium exists; "
        "the relation between famotidine and ulcer disease exists.",
        "garbage",  # failed: its 1 gold relation is a false negative
        LEARNED + "the relation between isoproterenol and cardiotoxicity exists",
    ]
    m = task.score(exs, [task.parse(o, e) for o, e in zip(outs, exs)])
    # predicted set: (8701013, D015738, D003693), (8701013, D015738, -1), (23872883, D007545, D066126) = 3
    # gold: 3 relations; TP = 2 -> P = 2/3, R = 2/3, F1 = 2/3
    assert m["counts"]["predicted_items"] == 3 and m["counts"]["gold_items"] == 3 and m["counts"]["true_positives"] == 2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["counts"]["failed_parses"] == 1 and m["counts"]["unknown_entity_pairs"] == 1


def test_gold_targets_on_the_fixture(task, examples) -> None:
    exs = list(examples.values())
    m = task.score(exs, [task.parse(e.target, e) for e in exs])
    # 7 gold CID relations. Two cannot come back through the official pipeline:
    #  - 23433219 names D011605 "psychotic symptoms", which test.entities.json maps to D011618;
    #  - 24588023's "generalised and focal seizures" splits at its last " and " (greedy regex),
    #    so the chemical "tranexamic acid and generalised" is unknown (-1).
    # -> 7 predicted, 5 true positives: P = R = F1 = 5/7
    assert m["counts"]["true_positives"] == 5 and m["counts"]["predicted_items"] == 7
    assert m["f1"] == pytest.approx(5 / 7)


def test_pubtator_cid_lines_are_the_gold(tmp_path: Path, task) -> None:
    """Without the PubTator file the JSON relations are the gold; with it, its CID lines."""
    for name in ("test.json", "test.entities.json"):
        (tmp_path / name).write_bytes((FIX / "BC5CDR" / name).read_bytes())
    no_pubtator = {e.id: e.gold for e in task.load(tmp_path)}
    pub = (FIX / "BC5CDR" / "CDR_TestSet.PubTator.txt").read_text().replace("8701013\tCID\tD015738\tD003693", "8701013\tCID\tD000001\tD003693")
    (tmp_path / "CDR_TestSet.PubTator.txt").write_text(pub)
    with_pubtator = {e.id: e.gold for e in task.load(tmp_path)}
    assert no_pubtator["8701013"] == {("D015738", "D003693")}
    assert with_pubtator["8701013"] == {("D000001", "D003693")}


def test_missing_entities_file_is_reported_when_needed(tmp_path: Path, task) -> None:
    (tmp_path / "test.json").write_bytes((FIX / "BC5CDR" / "test.json").read_bytes())
    e = task.load(tmp_path)[0]
    with pytest.raises(TaskDataError, match="entities.json"):
        task.parse(e.target, e)


def test_gold_targets_on_real_data(shared_data: Path, task) -> None:
    examples = task.load(shared_data / "BC5CDR", "test")
    assert len(examples) == 500
    # test.json's relations equal the test PubTator file's CID lines
    raw = json.loads((shared_data / "BC5CDR" / "test.json").read_text())
    assert all(e.gold == {(r["chemical"], r["disease"]) for r in raw[e.id]["relations"]} for e in examples)
    m = task.score(examples, [task.parse(e.target, e) for e in examples])
    # The official pipeline cannot return its own gold exactly (names shared by several MeSH ids in
    # test.entities.json, names containing " and "): 1,066 gold, 1,065 predicted, 1,045 correct.
    assert (m["counts"]["gold_items"], m["counts"]["predicted_items"], m["counts"]["true_positives"]) == (1066, 1065, 1045)
    assert m["precision"] == pytest.approx(1045 / 1065) and m["recall"] == pytest.approx(1045 / 1066)
    assert round(m["f1"], 4) == 0.9808
    # the gold as structured pairs scores exactly 1
    from biogpt.tasks.base import Prediction

    exact = [Prediction(e.id, [("", "", c, d) for c, d in e.gold]) for e in examples]
    assert task.score(examples, exact)["f1"] == 1.0


def test_valid_split_uses_the_development_file(shared_data: Path, task) -> None:
    examples = task.load(shared_data / "BC5CDR", "valid")
    raw = json.loads((shared_data / "BC5CDR" / "valid.json").read_text())
    differ = [e.id for e in examples if e.gold != {(r["chemical"], r["disease"]) for r in raw[e.id]["relations"]}]
    assert len(differ) == 2  # as docs/TASK_FORMATS.md says
