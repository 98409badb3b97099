"""`biogpt classify`: which models and --task values it runs, and what it says when it will not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biogpt._common import UserError
from biogpt.commands.classify import generative_task, model_card
from biogpt.model import BioGptConfig

from tests.helpers import biogpt


def _model_dir(path: Path, **extra) -> str:
    """A model directory as far as `classify` looks before loading: its config.json."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**BioGptConfig.from_preset("tiny").to_dict(), **extra}))
    return str(path)


def _pick(task: str | None, model: str | None):
    return generative_task(task, model, model_card(model))


def test_token_classification_model_is_refused_naming_tag(tmp_path):
    ner = _model_dir(tmp_path / "ner", architectures=["BioGptForTokenClassification"])
    for task in (None, "hoc"):
        with pytest.raises(UserError, match="token-classification.*`biogpt tag -m "):
            _pick(task, ner)


def test_a_causal_lm_without_a_recorded_task_needs_task_hoc(tmp_path):
    plain = _model_dir(tmp_path / "plain", architectures=["BioGptForCausalLM"])
    with pytest.raises(UserError, match="records no task: pass -m a model trained with `biogpt train classify`, or --task hoc"):
        _pick(None, plain)
    other = _model_dir(tmp_path / "re", biogpt_task={"task": "bc5cdr"})
    with pytest.raises(UserError, match="fine-tuned for bc5cdr"):
        _pick(None, other)
    assert _pick("hoc", plain).name == "hoc"
    recorded = _model_dir(tmp_path / "hoc", biogpt_task={"task": "hoc"})
    assert _pick(None, recorded).name == "hoc"


@pytest.mark.parametrize("name", ["foo", "pubmedqa", "ner"])
def test_task_error_lists_only_hoc(tmp_path, name):
    with pytest.raises(UserError, match="expected one of hoc$"):
        _pick(name, _model_dir(tmp_path / "m"))


def test_hoc_without_a_model_names_the_training_command_that_makes_one():
    with pytest.raises(UserError, match=r"`biogpt train classify --task hoc --generative`") as err:
        _pick("hoc", None)
    assert "train re" not in str(err.value)


@pytest.mark.parametrize("kind, needle", [("ner", "`biogpt tag -m"), ("lm", "--task hoc")])
def test_cli_refuses_in_one_line_with_exit_code_2(tagger, model_dir, tmp_path, kind, needle):  # noqa: F811
    """Real model directories (both ran HoC generation with exit code 0 before they were refused)."""
    docs = tmp_path / "sentences.txt"
    docs.write_text("Tumour cells evade apoptosis.\n")
    model = tagger if kind == "ner" else model_dir
    result = biogpt("classify", "-m", str(model), str(docs), "--max-new-tokens", "2")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and needle in result.stderr and "Traceback" not in result.stderr
