"""The task registry, the shared parsing helpers and the predictions-file bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt.model.errors import BioGptError, PathError
from biogpt.tasks import TASKS, Task, TaskDataError, get_task
from biogpt.tasks.base import clean_line, read_jsonl, resolve_split_file, strip_prefix
from biogpt.tasks.evaluate import _percentile, bootstrap, evaluate, read_predictions
from tests.helpers import FIXTURES, ROOT

FIX = FIXTURES / "tasks"
LEARNED = "learned1 learned2 learned3 learned4 learned5 learned6 learned7 learned8 learned9 "
RELATION_PREFIXES = get_task("ddi").prefixes


def test_registry_names_and_aliases() -> None:
    assert TASKS == ("bc5cdr", "kd-dti", "ddi", "pubmedqa", "hoc", "ner")
    assert get_task("kd_dti").name == "kd-dti" and get_task("KD-DTI").name == "kd-dti"
    for name in TASKS:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.decoding.num_beams == 1  # the official inference scripts decode greedily
    assert get_task("ner").kind == "ner"
    assert {get_task(n).kind for n in TASKS if n != "ner"} == {"generative"}
    assert get_task("hoc").recipe.prompt_length == 1 and get_task("hoc").recipe.max_source_positions == 900
    assert get_task("ddi").recipe.lr == 1e-4 and get_task("ddi").recipe.warmup_updates == 500
    assert get_task("kd-dti").recipe.max_epochs == 30


def test_unknown_task_is_a_typed_error() -> None:
    with pytest.raises(TaskDataError, match="known tasks"):
        get_task("nope")
    assert issubclass(TaskDataError, BioGptError)


def test_clean_line_drops_one_final_period() -> None:
    assert clean_line("  a b..  ") == "a b."
    assert clean_line("") == ""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (LEARNED + "the x", "the x"),
        ("learned3 learned4 the x learned5 the y", "the y"),  # text after the LAST occurrence
        ("we can conclude that the x", "the x"),
        ("foo we have that bar we have that the x", "the x"),
        ("in conclusion, the x", "the x"),
        # patterns are tried in order and only the first found counts
        (LEARNED + "we can conclude that the x", "we can conclude that the x"),
        ("nothing here", "nothing here"),
    ],
)
def test_strip_prefix(line: str, expected: str) -> None:
    assert strip_prefix(line, RELATION_PREFIXES) == expected


def test_resolve_split_file_names_the_splits_present(tmp_path: Path) -> None:
    (tmp_path / "valid.json").write_text("{}")
    with pytest.raises(TaskDataError, match=r"no test split .*splits present there: valid \(pass --data-split valid\)"):
        resolve_split_file("kd-dti", tmp_path, "test", lambda s: f"{s}.json")
    assert resolve_split_file("x", tmp_path / "valid.json", "test", lambda s: f"{s}.json")[1] == "valid"
    with pytest.raises(PathError, match="no such file"):  # a missing path is a usage error (exit 2)
        resolve_split_file("x", tmp_path / "nope.json", "test", lambda s: f"{s}.json")
    with pytest.raises(TaskDataError, match="no data given"):
        resolve_split_file("x", None, "test", lambda s: f"{s}.json")


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_text('{"a": ')
    with pytest.raises(TaskDataError, match=r"test\.json: not valid JSON at line 1"):
        get_task("ddi").load(tmp_path)


def test_read_predictions_never_crashes(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"id": "a", "output": "x"}',
                "",
                "not json",
                "[1, 2]",
                '{"output": "no id"}',
                '{"id": 7, "output": "int id"}',
                '{"id": "a", "output": "second a"}',
                '{"id": "b"}',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = read_predictions(path)
    assert result.lines == 7
    assert set(result.records) == {"a", "7", "b"}
    assert result.records["a"]["output"] == "second a"  # the last wins
    assert result.duplicates == ["a"]
    assert len(result.malformed) == 4 and result.malformed[0].startswith("line 3")


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("generative", "", r"p\.jsonl: no predictions in the file \(it is empty\)"),
        ("generative", "\n  \n", r"p\.jsonl: no predictions in the file"),
        ("generative", '{"id": "b", "title": "an abstract", "abstract": "..."}\nnot json\n',
         r"p\.jsonl: none of its 2 lines is a prediction \(first: line 1: id b: no 'output' \(fields: id, title, abstract\)\)"),
        ("ner", '{"id": "b", "text": "Aspirin", "entities": "Aspirin"}\n', r"none of its 1 lines is a prediction .*no 'entities'"),
    ],
)
def test_a_file_without_a_single_prediction_is_an_error(tmp_path: Path, kind: str, text: str, message: str) -> None:
    """An empty file, or another kind of file (abstracts, gold data), must not score as a silent 0;
    one good line among bad ones is scored (test_read_predictions_never_crashes)."""
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(TaskDataError, match=message):
        read_predictions(path, kind)


def test_evaluate_refuses_predictions_that_match_no_document(tmp_path: Path) -> None:
    task = get_task("ddi")
    examples = task.load(FIX / "DDI")
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "PMID-1", "output": examples[0].target}) + "\n")
    with pytest.raises(TaskDataError, match=rf"p\.jsonl: none of its 1 ids .*'PMID-1'.*{examples[0].id!r}"):
        evaluate(task, examples, read_predictions(path))
    path.write_text(json.dumps({"id": examples[0].id, "output": examples[0].target}) + "\n")  # one of them: scored
    assert evaluate(task, examples, read_predictions(path))["counts"]["missing_ids"] == len(examples) - 1


def test_evaluate_reports_missing_extra_duplicates(tmp_path: Path) -> None:
    task = get_task("ddi")
    examples = task.load(FIX / "DDI")
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"id": e.id, "output": e.target}) for e in examples[1:]]
    lines += [json.dumps({"id": "not-in-data", "output": "x"}), json.dumps({"id": examples[1].id, "output": examples[1].target})]
    lines += ['{"id": "%s"}' % examples[2].id]  # known id, no output: a failed parse
    path.write_text("\n".join(lines) + "\n")
    metrics = evaluate(task, examples, read_predictions(path))
    counts = metrics["counts"]
    assert counts["missing_ids"] == 1 and metrics["missing_ids"] == [examples[0].id]
    assert counts["extra_ids"] == 1 and metrics["extra_ids"] == ["not-in-data"]
    assert counts["duplicate_ids"] == 2 and counts["malformed_lines"] == 1
    assert counts["failed_parses"] == 1 and metrics["failed_ids"] == [examples[2].id]
    assert metrics["precision"] == 1.0 and metrics["recall"] < 1.0


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    task = get_task("hoc")
    examples = task.load(FIX / "HoC", "train")
    predictions = [task.parse(e.target if i % 3 else "the type of this document is empty", e) for i, e in enumerate(examples)]
    point = task.score(examples, predictions)["micro_f1"]
    first = bootstrap(task, examples, predictions, 300, seed=3)
    assert first == bootstrap(task, examples, predictions, 300, seed=3)
    low, high = first["ci95"]["micro_f1"]
    assert 0.0 <= low <= point <= high <= 1.0
    # the additive fast path equals a plain re-score of the same resample
    stat = task.bootstrap_statistic(examples, predictions)
    idx = [0, 0, 3, 7, 10, 10, 11, 19]
    assert stat(idx)["micro_f1"] == pytest.approx(Task.bootstrap_statistic(task, examples, predictions)(idx)["micro_f1"])


def test_percentile_interpolates_like_numpy() -> None:
    assert _percentile([0.0, 1.0, 2.0, 3.0], 50) == 1.5
    assert _percentile([5.0], 2.5) == 5.0


def test_the_task_formats_the_code_cites_ship_with_the_repository():
    """The package cites docs/TASK_FORMATS.md; nothing outside the repository (a fresh clone has no ../shared)."""
    doc = (ROOT / "docs" / "TASK_FORMATS.md").read_text(encoding="utf-8")
    for heading in ("## BC5CDR", "## KD-DTI and DDI", "## PubMedQA", "## HoC", "## Named-entity recognition", "## The PubTator format"):
        assert heading in doc
    for folder in ("tasks", "model", "biogpt_cli"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "../shared" not in path.read_text(encoding="utf-8"), path


def test_read_jsonl_is_strict_and_names_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (3, {"b": 2})]
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(TaskDataError, match=r"rows.jsonl:2: expected a JSON object, found list"):
        list(read_jsonl(path))
    path.write_text("{oops\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:1: malformed JSON"):
        list(read_jsonl(path, ValueError))  # the caller's own error type
