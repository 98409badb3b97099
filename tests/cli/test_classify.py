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


# ---------------------------------------------------------------------------- long documents (issue 29)
PMC = Path(__file__).parents[1] / "fixtures" / "pmc" / "pntd.0002065.nxml"


@pytest.fixture(scope="module")
def heads_dir(tmp_path_factory) -> dict[str, Path]:
    """Tiny classification heads over the real vocabulary: multi-label (a, b, c) and single-label."""
    import torch

    from biogpt.model import BioGptForSequenceClassification, BioGptTokenizer

    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    torch.manual_seed(0)
    out = {}
    for name, extra in (("multi", {"id2label": {0: "a", 1: "b", 2: "c"}, "problem_type": "multi_label_classification"}),
                        ("single", {"id2label": {0: "neg", 1: "pos"}})):
        out[name] = tmp_path_factory.mktemp(name)
        BioGptForSequenceClassification(BioGptConfig.from_preset("tiny", **extra)).save_pretrained(out[name], tokenizer=tok)
    return out


def test_multi_label_any_unit_assigns_and_single_label_takes_the_highest_mean():
    from biogpt.heads import aggregate_labels

    units = [{"labels": ["a"], "scores": {"a": 0.9, "b": 0.1, "c": 0.2}},
             {"labels": [], "scores": {"a": 0.3, "b": 0.2, "c": 0.1}},
             {"labels": ["c"], "scores": {"a": 0.4, "b": 0.1, "c": 0.6}}]
    out = aggregate_labels(units, multi_label=True)
    assert out["labels"] == ["a", "c"] and out["label_support"] == {"a": 1, "c": 1} and out["units"] == 3
    assert out["scores"] == out["scores_max"] == {"a": 0.9, "b": 0.2, "c": 0.6}
    assert out["scores_mean"] == {"a": pytest.approx(1.6 / 3, abs=1e-6), "b": pytest.approx(0.4 / 3, abs=1e-6), "c": pytest.approx(0.3, abs=1e-6)}
    # single-label: one confident unit outweighs two lukewarm ones (the mean, not a vote)
    single = [{"labels": ["x"], "scores": {"x": 0.99, "y": 0.01}}] + [{"labels": ["y"], "scores": {"x": 0.45, "y": 0.55}}] * 2
    out = aggregate_labels(single, multi_label=False)
    assert out["labels"] == ["x"] and out["label_support"] == {"x": 1, "y": 2} and out["scores"] == out["scores_mean"]
    # a generative task (HoC): labels only, any unit's
    out = aggregate_labels([{"labels": ["p"]}, {"labels": []}, {"labels": ["q", "p"]}], multi_label=True)
    assert out == {"labels": ["p", "q"], "units": 3, "label_support": {"p": 2, "q": 1}}


def _article():
    from biogpt.documents import passages_of
    from biogpt.io import ReadOptions, read_inputs

    (record,) = list(read_inputs([str(PMC)], input_format="auto", options=ReadOptions()))
    return record, passages_of(record)


def test_a_label_only_one_late_passage_assigns_is_the_documents(heads_dir, monkeypatch):
    import biogpt.heads as heads

    from biogpt.model import BioGptForSequenceClassification

    model, tokenizer = heads.load_head(BioGptForSequenceClassification, str(heads_dir["multi"]), device="cpu")
    record, passages = _article()
    seen = []

    def constructed(model, reading, probs, *, threshold=0.5):
        seen.append(reading.text)
        late = passages[-1]["text"].startswith(reading.text)  # the last passage (its first piece, if split)
        return {"labels": ["c"] if late else ["b"], "scores": {"a": 0.1, "b": 0.6, "c": 0.9 if late else 0.2}}

    monkeypatch.setattr(heads, "classify_labels", constructed)
    out = heads.classify_document(model, tokenizer, record.text, passages, mode="auto")
    assert out["units"] == len(seen) > 10 and out["labels"] == ["b", "c"] and out["label_support"]["c"] == 1


def test_classify_reads_a_pmc_article_by_passages_and_a_short_text_as_today(heads_dir, tmp_path):
    result = biogpt("-q", "classify", "-m", str(heads_dir["multi"]), str(PMC))
    assert result.returncode == 0, result.stderr
    (out,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert out["units"] > 10 and out["provenance"]["long_documents"] == "auto"
    assert out["labels"] == [k for k, p in out["scores_max"].items() if p >= 0.5] == list(out["label_support"])
    fewer = biogpt("-q", "classify", "-m", str(heads_dir["multi"]), str(PMC), "--sections", "discussion")
    assert fewer.returncode == 0, fewer.stderr
    assert 1 < json.loads(fewer.stdout)["units"] < out["units"]  # title + abstract, then the discussion's passages
    docs = tmp_path / "short.txt"
    docs.write_text("Tumour cells evade apoptosis.\n")
    for model in heads_dir.values():
        result = biogpt("-q", "classify", "-m", str(model), str(docs))
        assert result.returncode == 0, result.stderr
        assert set(json.loads(result.stdout)) == {"id", "labels", "scores", "provenance"}  # today's record


def test_hoc_reads_a_pmc_article_by_passages(model_dir):
    result = biogpt("-q", "classify", "--task", "hoc", "-m", str(model_dir), str(PMC), "--max-new-tokens", "2")
    assert result.returncode == 0, result.stderr
    (out,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert out["units"] > 10 and len(out["output"].split("\n")) == out["units"] and isinstance(out["label_support"], dict)
    truncated = biogpt("-q", "classify", "--task", "hoc", "-m", str(model_dir), str(PMC), "--max-new-tokens", "2", "--long-documents", "truncate")
    assert truncated.returncode == 0, truncated.stderr
    assert "units" not in json.loads(truncated.stdout)


# ---------------------------------------------------------------------------- shared batches (issue 29)
SHORT = "Tumour cells evade apoptosis.\nAngiogenesis sustains the growth of solid tumours in mice.\nInvasion.\n"
# batched rows are padded (a masked attention pass): scores, rounded to 6 digits, may differ by float rounding
SCORE_TOLERANCE = 1e-5


def _same_labels(a: dict, b: dict) -> None:
    assert a["labels"] == b["labels"] and a.get("label_support") == b.get("label_support") and a.get("units") == b.get("units")
    for key in ("scores", "scores_mean", "scores_max"):
        assert (key in a) == (key in b)
        if key in a:
            assert list(a[key]) == list(b[key]) and list(a[key].values()) == pytest.approx(list(b[key].values()), abs=SCORE_TOLERANCE)


def _inputs(tmp_path) -> tuple[Path, list]:
    from biogpt.io import ReadOptions, read_inputs

    short = tmp_path / "short.txt"
    short.write_text(SHORT)
    return short, list(read_inputs([str(short), str(PMC)], input_format="auto", options=ReadOptions()))


@pytest.mark.parametrize("kind", ["multi", "single"])
def test_classify_in_shared_batches_equals_one_input_at_a_time_and_classify_document(heads_dir, tmp_path, kind):
    import biogpt.heads as heads
    from biogpt.documents import passages_of
    from biogpt.model import BioGptForSequenceClassification

    short, records = _inputs(tmp_path)
    runs = {}
    for b in ("1", "16"):
        result = biogpt("-q", "classify", "-m", str(heads_dir[kind]), str(short), str(PMC), "--long-documents", "passages", "-b", b)
        assert result.returncode == 0, result.stderr
        runs[b] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in runs["1"]] == [r["id"] for r in runs["16"]] == [r.id for r in records]  # input order
    assert runs["1"][-1]["units"] > 10
    model, tokenizer = heads.load_head(BioGptForSequenceClassification, str(heads_dir[kind]), device="cpu")
    for one, many, record in zip(runs["1"], runs["16"], records):
        _same_labels(one, many)
        _same_labels(one, heads.classify_document(model, tokenizer, record.text, passages_of(record), mode="passages"))


def test_classify_documents_runs_many_inputs_per_forward_pass(heads_dir, tmp_path, monkeypatch):
    import biogpt.heads as heads
    from biogpt.model import BioGptForSequenceClassification

    model, tokenizer = heads.load_head(BioGptForSequenceClassification, str(heads_dir["multi"]), device="cpu")
    _, records = _inputs(tmp_path)
    calls: list[int] = []
    real = heads.classify_batch

    def counted(model, inputs):
        calls.append(len(inputs))
        return real(model, inputs)

    monkeypatch.setattr(heads, "classify_batch", counted)
    alone = list(heads.classify_documents(model, tokenizer, records, mode="passages", batch_size=1))
    inputs = len(calls)
    assert set(calls) == {1} and inputs > 10
    calls.clear()
    shared = list(heads.classify_documents(model, tokenizer, records, mode="passages", batch_size=16))
    assert sum(calls) == inputs and len(calls) < inputs / 4 and max(calls) == 16
    assert [r.id for r, _ in shared] == [r.id for r, _ in alone] == [r.id for r in records]
    for (_, a), (_, b) in zip(alone, shared):
        _same_labels(a, b)
