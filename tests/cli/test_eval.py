"""`biogpt eval TASK --predictions FILE`: the plain function and the Typer command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt.model.errors import PathError
import typer
from typer.testing import CliRunner

from biogpt import __version__
from biogpt._common import UserError
from biogpt.commands import eval as ev
from biogpt.tasks import TaskDataError, get_task
from tests.helpers import FIXTURES

FIX = FIXTURES / "tasks"
LEARNED = "learned1 learned2 learned3 learned4 learned5 learned6 learned7 learned8 learned9 "


def _app() -> typer.Typer:
    app = typer.Typer()
    ev.register(app)

    @app.callback()
    def _root() -> None:  # keeps "eval" a sub-command, as in the real app
        pass

    return app


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _gold_predictions(task_name: str, data: Path, path: Path, split: str = "test") -> Path:
    task = get_task(task_name)
    rows = []
    for e in task.load(data, split):
        rows.append({"id": e.id, "entities": e.gold} if task.kind == "ner" else {"id": e.id, "output": LEARNED + e.target})
    return _write(path, rows)


def test_score_predictions_with_provenance(tmp_path: Path) -> None:
    preds = _gold_predictions("ddi", FIX / "DDI", tmp_path / "p.jsonl")
    m = ev.score_predictions("ddi", FIX / "DDI", preds, bootstrap=50, seed=1)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert m["provenance"]["tool"] == f"biogpt-cli {__version__}"
    assert m["provenance"]["split"] == "test" and m["provenance"]["predictions"] == str(preds)
    assert m["bootstrap"]["n"] == 50 and m["bootstrap"]["ci95"]["f1"] == [1.0, 1.0]


def test_cli_writes_metrics_and_refuses_to_overwrite(tmp_path: Path) -> None:
    preds = _write(
        tmp_path / "p.jsonl",
        [
            {"id": "21645374", "output": LEARNED + "the answer to the question given the context is yes."},
            {"id": "25432938", "output": "we can conclude that the answer to the question given the context is no"},
            {"id": "17208539", "output": "I do not know"},
            {"id": "17208539", "output": "the answer to the question given the context is no."},
            {"id": "999", "output": "extra"},
            "{broken",
        ],
    )
    out = tmp_path / "metrics.json"
    args = ["eval", "pubmedqa", "--data", str(FIX / "PubMedQA"), "--predictions", str(preds), "--output", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    # 6 test questions: 2 right (21645374 yes, 17208539 no after the duplicate), 3 missing
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["counts"]["missing_ids"] == 3 and m["counts"]["extra_ids"] == 1
    assert m["counts"]["duplicate_ids"] == 1 and m["counts"]["malformed_lines"] == 1
    assert m["provenance"]["options"]["setting"] == "reasoning-required"
    assert 0.0 <= m["macro_f1"] <= 1.0
    again = CliRunner().invoke(_app(), args)
    assert isinstance(again.exception, UserError) and "--force" in str(again.exception)
    assert CliRunner().invoke(_app(), args + ["--force"]).exit_code == 0


def test_cli_prints_json_to_stdout_and_a_table_to_stderr(tmp_path: Path) -> None:
    preds = _gold_predictions("hoc", FIX / "HoC", tmp_path / "p.jsonl", "train")
    result = CliRunner().invoke(_app(), ["eval", "hoc", "--data", str(FIX / "HoC" / "train.tsv"), "--predictions", str(preds)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["micro_f1"] == 1.0 and metrics["task"] == "hoc"
    assert "micro_f1" in result.stderr and "biogpt eval hoc" in result.stderr


def test_cli_ner_and_bc5cdr(tmp_path: Path) -> None:
    preds = _gold_predictions("ner", FIX / "BC5CDR", tmp_path / "n.jsonl")
    result = CliRunner().invoke(_app(), ["eval", "ner", "--data", str(FIX / "BC5CDR"), "--predictions", str(preds)])
    assert result.exit_code == 0 and json.loads(result.stdout)["f1"] == 1.0
    preds = _gold_predictions("bc5cdr", FIX / "BC5CDR", tmp_path / "b.jsonl")
    result = CliRunner().invoke(_app(), ["eval", "bc5cdr", "--data", str(FIX / "BC5CDR" / "test.json"), "--predictions", str(preds), "--bootstrap", "20"])
    m = json.loads(result.stdout)
    assert m["f1"] == pytest.approx(5 / 7) and len(m["bootstrap"]["ci95"]["f1"]) == 2


def test_usage_errors(tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.jsonl", [{"id": "x", "output": ""}])
    with pytest.raises(UserError, match="--data"):
        ev.score_predictions("ddi", None, preds)
    with pytest.raises(UserError, match="no such file"):
        ev.score_predictions("ddi", FIX / "DDI", tmp_path / "absent.jsonl")
    with pytest.raises(UserError, match="--setting applies to pubmedqa"):
        ev.score_predictions("ddi", FIX / "DDI", preds, setting="reasoning-free")
    with pytest.raises(UserError, match="unknown task"):
        ev.score_predictions("nope", FIX / "DDI", preds)
    result = CliRunner().invoke(_app(), ["eval", "ddi", "--predictions", str(preds)])
    assert isinstance(result.exception, UserError) and "--data" in str(result.exception)
    result = CliRunner().invoke(_app(), ["eval", "ddi", "--data", str(FIX / "DDI"), "--predictions", str(preds), "--data-split", "dev"])
    assert isinstance(result.exception, UserError)


def test_data_errors_are_typed(tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.jsonl", [{"id": "x", "output": ""}])
    with pytest.raises(TaskDataError, match="splits present there: valid"):
        ev.score_predictions("kd-dti", FIX / "KD-DTI", preds)


def test_main_turns_errors_into_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the real entry point: one line and exit 2 (usage) or 1 (data)."""
    from biogpt.main import main

    preds = _write(tmp_path / "p.jsonl", [{"id": "x", "output": ""}])
    assert main(["eval", "ddi", "--predictions", str(preds)]) == 2
    assert main(["eval", "kd-dti", "--data", str(FIX / "KD-DTI"), "--predictions", str(preds)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("biogpt: error:") for line in err if "error" in line)


def test_a_file_that_is_not_predictions_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An abstracts file (or broken JSON throughout) is an error with exit 1, never a silent
    score of 0; one broken line among predictions is counted, not fatal."""
    from biogpt.main import main

    abstracts = _write(tmp_path / "abstracts.jsonl", [{"id": "8701013", "title": "Famotidine", "abstract": "..."}, "{broken"])
    with pytest.raises(TaskDataError, match=r"abstracts\.jsonl: none of its 2 lines is a prediction \(first: line 1: id 8701013: no 'output'"):
        ev.score_predictions("bc5cdr", FIX / "BC5CDR", abstracts)
    capsys.readouterr()
    assert main(["eval", "bc5cdr", "--data", str(FIX / "BC5CDR"), "--predictions", str(abstracts)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"biogpt: error: {abstracts}: none of its 2 lines")
    assert len(captured.err.strip().splitlines()) == 1


def test_empty_or_unmatched_predictions_are_errors_partial_ones_score(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(TaskDataError, match=r"empty\.jsonl: no predictions"):
        ev.score_predictions("bc5cdr", FIX / "BC5CDR", empty)
    other = _write(tmp_path / "other.jsonl", [{"id": "not-a-pmid", "output": "x"}])
    with pytest.raises(TaskDataError, match=r"other\.jsonl: none of its 1 ids is an id of the 5 documents"):
        ev.score_predictions("bc5cdr", FIX / "BC5CDR", other)
    gold = _gold_predictions("bc5cdr", FIX / "BC5CDR", tmp_path / "gold.jsonl")
    partial = _write(tmp_path / "partial.jsonl", gold.read_text().splitlines()[:1])  # missing = no triples
    m = ev.score_predictions("bc5cdr", FIX / "BC5CDR", partial)
    assert m["counts"]["missing_ids"] == 4 and m["counts"]["predictions_used"] == 1


def test_ner_predictions_score_against_ner_jsonl_data(tmp_path: Path) -> None:
    """The --data that works with -m works with --predictions (what `biogpt tag` writes)."""
    data = FIX.parent / "ner" / "bc5cdr_titles.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tagged = [{"id": r["id"], "entities": [{**e, "score": 0.9} for e in r["entities"]], "provenance": {}} for r in rows]
    preds = _write(tmp_path / "mentions.jsonl", tagged)
    result = CliRunner().invoke(_app(), ["eval", "ner", "--data", str(data), "--predictions", str(preds)])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["f1"] == 1.0 and m["counts"]["gold_items"] == sum(len(r["entities"]) for r in rows)
    result = CliRunner().invoke(_app(), ["eval", "ner", "--data", str(data)])
    assert isinstance(result.exception, UserError)
    assert "--predictions FILE" in str(result.exception) and "-m MODEL" in str(result.exception)


def test_ner_with_a_model_saves_predictions_that_score_the_same(tmp_path: Path) -> None:
    import torch

    from biogpt.model import BioGptConfig, BioGptForTokenClassification, BioGptTokenizer

    torch.manual_seed(0)
    labels = {0: "O", 1: "B-Chemical", 2: "I-Chemical", 3: "B-Disease", 4: "I-Disease"}
    BioGptForTokenClassification(BioGptConfig.from_preset("tiny", id2label=labels)).save_pretrained(
        tmp_path / "ner", tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    data, saved = str(FIX.parent / "ner" / "bc5cdr_titles.jsonl"), tmp_path / "saved.jsonl"
    first = CliRunner().invoke(_app(), ["eval", "ner", "--data", data, "-m", str(tmp_path / "ner"), "--save-predictions", str(saved)])
    assert first.exit_code == 0, first.output
    assert len(saved.read_text().splitlines()) == 10
    again = CliRunner().invoke(_app(), ["eval", "ner", "--data", data, "--predictions", str(saved)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["f1"] == json.loads(first.stdout)["f1"]


@pytest.mark.parametrize("task", ["bc5cdr", "ner"])
def test_save_predictions_is_checked_before_the_model_loads(tmp_path: Path, task: str) -> None:
    data = str(FIX / "BC5CDR")
    args = ["eval", task, "--data", data, "-m", str(tmp_path / "no-model"), "--save-predictions"]
    result = CliRunner().invoke(_app(), args + [str(tmp_path / "nodir" / "p.jsonl")])
    assert isinstance(result.exception, PathError), result.exception  # a usage error (exit 2)
    assert str(result.exception) == f"{tmp_path / 'nodir'}: no such directory for the output file p.jsonl"
    (tmp_path / "taken.jsonl").write_text("keep")
    result = CliRunner().invoke(_app(), args + [str(tmp_path / "taken.jsonl")])
    assert isinstance(result.exception, UserError) and "--force" in str(result.exception)
    # the model fails to load: the file opened up front is not left behind empty
    result = CliRunner().invoke(_app(), args + [str(tmp_path / "p.jsonl")])
    assert result.exit_code != 0 and "no-model" in str(result.exception)
    assert not (tmp_path / "p.jsonl").exists() and (tmp_path / "taken.jsonl").read_text() == "keep"


def test_unknown_task_lists_exactly_what_eval_accepts(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["eval", "foo", "--data", str(FIX / "DDI")])
    assert isinstance(result.exception, UserError)
    listed = str(result.exception).split("known tasks: ")[1].split(", ")
    assert "lm" in listed and listed == list(ev.EVAL_TASKS)
    for name in listed:  # each one gets past the task lookup, to the next check
        result = CliRunner().invoke(_app(), ["eval", name, "--data", str(tmp_path / "absent"), "--predictions", str(tmp_path / "p.jsonl")])
        assert isinstance(result.exception, UserError) and "unknown task" not in str(result.exception)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "folder", "split", "headline"),
    [
        ("ddi", "DDI", "test", {"f1": 1.0}),
        ("kd-dti", "KD-DTI", "valid", {"f1": 2161 / 2162}),
        ("pubmedqa", "PubMedQA", "test", {"accuracy": 1.0, "macro_f1": 1.0}),
        ("hoc", "HoC", "train", {"micro_f1": 1.0}),
        ("ner", "BC5CDR", "test", {"f1": 1.0}),
        ("bc5cdr", "BC5CDR", "test", {"precision": 1045 / 1065, "recall": 1045 / 1066}),
    ],
)
def test_gold_predictions_through_the_cli_on_real_data(shared_data: Path, tmp_path: Path, task: str, folder: str, split: str, headline: dict[str, float]) -> None:
    preds = _gold_predictions(task, shared_data / folder, tmp_path / "p.jsonl", split)
    out = tmp_path / "m.json"
    args = ["eval", task, "--data", str(shared_data / folder), "--data-split", split, "--predictions", str(preds), "--output", str(out), "--bootstrap", "100"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    for key, value in headline.items():
        assert m[key] == pytest.approx(value)
    assert m["counts"]["missing_ids"] == 0 and m["counts"]["failed_parses"] == 0
