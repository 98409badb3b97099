"""`biogpt train ner|classify|lm`, `biogpt tag`, `biogpt data ner-from-pubtator` on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from biogpt.model.errors import InputDataError, InvalidOptionError
from biogpt.heads import encode_words, merge_entities, tag_text, windows, word_tags
from biogpt.training import TrainingError
from biogpt.training.data import ner_documents
from biogpt.training.features import ner_features
from biogpt.training.jobs import ner_score
from biogpt.training.options import resolve_options
from tests.helpers import FIXTURES, ROOT, invoke

FIXTURE = FIXTURES / "ner" / "bc5cdr_titles.jsonl"


pytestmark = pytest.mark.usefixtures("one_thread")


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------ data
PUBTATOR = """111|t|Lidocaine-induced cardiac asystole.
111|a|Intravenous lidocaine was given.
111\t0\t9\tLidocaine\tChemical\tD008012
111\t18\t34\tcardiac asystole\tDisease\tD006323
111\t48\t57\tlidocaine\tChemical\tD008012

222|t|Sulpiride-induced tardive dystonia.
222|a|
222\t0\t9\tSulpiride\tChemical\tD013469
"""


def test_ner_from_pubtator(train_cli: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "x.PubTator.txt"
    src.write_text(PUBTATOR, encoding="utf-8")
    rows = _jsonl(invoke(train_cli, "data", "ner-from-pubtator", src))
    assert [r["id"] for r in rows] == ["111", "222"]
    for row in rows:
        assert row["entities"]
        for e in row["entities"]:
            assert row["text"][e["start"] : e["end"]] in ("Lidocaine", "lidocaine", "cardiac asystole", "Sulpiride")
    assert rows[0]["text"] == "Lidocaine-induced cardiac asystole. Intravenous lidocaine was given."
    out = tmp_path / "o.jsonl"
    invoke(train_cli, "data", "ner-from-pubtator", src, "-o", out, "--type", "Disease")
    assert [e["label"] for r in _jsonl(out.read_text()) for e in r["entities"]] == ["Disease"]


def test_ner_from_pubtator_on_bc5cdr(train_cli: typer.Typer, tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "train.jsonl"
    invoke(train_cli, "data", "ner-from-pubtator", shared_data / "BC5CDR" / "CDR_TrainingSet.PubTator.txt", "-o", out)
    rows = _jsonl(out.read_text())
    assert len(rows) == 500
    fixture = {r["id"]: r for r in _jsonl(FIXTURE.read_text())}
    for row in rows:
        if row["id"] in fixture:  # the fixture's title entities are a prefix of the document's
            title = fixture[row["id"]]
            assert row["text"].startswith(title["text"])
            assert row["entities"][: len(title["entities"])] == title["entities"]


# ------------------------------------------------------------------------------ encoding
def test_tokens_tags_format_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"tokens": ["Lidocaine", "causes", "cardiac", "asystole", "."], "tags": ["B-Chem", "O", "B-Dis", "I-Dis", "O"]}) + "\n")
    [(doc_id, text, spans)] = ner_documents(f)
    assert text == "Lidocaine causes cardiac asystole ."
    assert [text[s:e] for s, e, _ in spans] == ["Lidocaine", "cardiac asystole"]
    f.write_text(json.dumps({"tokens": ["a"], "tags": ["X-1"]}) + "\n")
    with pytest.raises(InputDataError, match="IOB2"):
        ner_documents(f)
    f.write_text(json.dumps({"text": "abc", "entities": [{"start": 0, "end": 9, "label": "X"}]}) + "\n")
    with pytest.raises(InputDataError, match="outside"):
        ner_documents(f)


def test_labels_on_first_piece_and_windows_cover_everything(tokenizer) -> None:
    text = "Naloxone reverses the antihypertensive effect of clonidine."
    ids, offsets, words = encode_words(tokenizer, text)
    spans = [(0, 8, "Chemical"), (49, 58, "Chemical")]
    label2id = {"O": 0, "B-Chemical": 1, "I-Chemical": 2}
    [feature] = ner_features(tokenizer, text, spans, label2id, 128)
    # "Naloxone" is two pieces: the label sits on the first only
    assert feature["labels"][:3] == [-100, 1, -100]
    assert sum(1 for x in feature["labels"] if x != -100) == len(words)
    tags = word_tags(text, words, spans)
    assert [e["text"] for e in merge_entities(text, words, tags, [1.0] * len(tags))] == ["Naloxone", "clonidine"]
    # windows: every piece lies in one, consecutive windows overlap by half
    for n, size in ((5, 8), (40, 8), (41, 16), (100, 128)):
        ws = windows(n, size)
        assert ws[0][0] == 1 and ws[-1][1] == n
        assert all(e - s <= size - 1 for s, e in ws)
        assert set(range(1, n)) == {i for s, e in ws for i in range(s, e)}
    small = ner_features(tokenizer, text, spans, label2id, 6)
    assert len(small) > 1 and all(len(f["input_ids"]) <= 6 and f["input_ids"][0] == 2 for f in small)


def test_config_file_and_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lr": 0.1, "epochs": 7, "seed": 5}))
    options = resolve_options(cfg, {"lr": 0.5, "epochs": None})
    assert options["lr"] == 0.5 and options["epochs"] == 7 and options["seed"] == 5 and options["batch_size"] == 8
    cfg.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(TrainingError, match="unknown keys"):
        resolve_options(cfg, {})


# ------------------------------------------------------------------------------ NER end to end
def test_train_ner_from_scratch_learns_bc5cdr_titles(train_cli: typer.Typer, tmp_path: Path) -> None:
    """Proof it learns: a tiny model from scratch reaches F1 1.0 on the sample it saw."""
    out = tmp_path / "run"
    invoke(train_cli, "train", "ner", FIXTURE, "--dev", FIXTURE, "-o", out, "--from-scratch", "tiny", "--epochs", "20",
           "--lr", "3e-3", "-b", "2", "--dropout", "0", "--warmup-steps", "10", "--patience", "5", "--device", "cpu")
    best = out / "model-best"
    config = json.loads((best / "config.json").read_text())
    assert config["architectures"] == ["BioGptForTokenClassification"]
    assert set(config["id2label"].values()) == {"O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"}
    assert json.loads((best / "training_config.json").read_text())["extra"]["task"] == "ner"
    assert (out / "model-last" / "model.safetensors").is_file()
    evals = [r["eval"] for r in _jsonl((out / "metrics.jsonl").read_text()) if "eval" in r]
    assert max(e["f1"] for e in evals) == 1.0

    gold = {r["id"]: r for r in _jsonl(FIXTURE.read_text())}
    tagged = _jsonl(invoke(train_cli, "tag", "-m", best, "--device", "cpu", FIXTURE))
    assert [r["id"] for r in tagged] == list(gold)
    for record in tagged:
        text = gold[record["id"]]["text"]
        assert [{k: e[k] for k in ("start", "end", "label")} for e in record["entities"]] == gold[record["id"]]["entities"]
        for e in record["entities"]:
            assert text[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1

    pubtator = invoke(train_cli, "tag", "-m", best, "--device", "cpu", "--format", "pubtator", FIXTURE)
    assert "227508\t0\t8\tNaloxone\tChemical" in pubtator

    # a long document (many times the model's 128 positions) is tagged in windows, nothing cut off
    from biogpt.model import BioGptForTokenClassification, BioGptTokenizer

    model = BioGptForTokenClassification.from_pretrained(best)
    tok = BioGptTokenizer.from_pretrained(best)
    long_text = " ".join(r["text"] for r in gold.values()) * 3
    assert len(tok(long_text)["input_ids"]) > 3 * 128
    found = tag_text(model, tok, long_text)
    assert sum(1 for e in found if e["text"] == "Myasthenia gravis") == 3
    assert found[-1]["text"] == "magnesium" and found[-1]["end"] > len(long_text) - 30
    docs = [(r["id"], r["text"], [(e["start"], e["end"], e["label"]) for e in r["entities"]]) for r in gold.values()]
    assert ner_score(model, tok, docs)["f1"] == 1.0


def test_train_ner_resume_and_existing_output(train_cli: typer.Typer, tmp_path: Path) -> None:
    base = ["train", "ner", FIXTURE, "--from-scratch", "tiny", "-b", "2", "--lr", "1e-3", "--device", "cpu", "--dropout", "0.1"]
    full = tmp_path / "full"
    invoke(train_cli, *base, "-o", full, "--max-steps", "6")
    part = tmp_path / "part"
    invoke(train_cli, *base, "-o", part, "--max-steps", "3", "--save-steps", "3")
    assert (part / "checkpoints" / "step-3" / "trainer_state.pt").is_file()
    with pytest.raises(TrainingError, match="--resume"):
        invoke(train_cli, *base, "-o", part, "--max-steps", "6")
    invoke(train_cli, *base, "-o", part, "--max-steps", "6", "--resume")

    def losses(d: Path) -> list[float]:
        return [r["loss"] for r in _jsonl((d / "metrics.jsonl").read_text()) if "loss" in r]

    # max-steps changes the schedule's length: compare with a resume that keeps the same total
    again = tmp_path / "again"
    # (epoch-end checkpoints are on by default and only the newest two are kept: keep step-3 here)
    invoke(train_cli, *base, "-o", again, "--max-steps", "6", "--save-steps", "3", "--save-total-limit", "10")
    invoke(train_cli, *base, "-o", again, "--max-steps", "6", "--resume-from", again / "checkpoints" / "step-3")
    assert losses(again) == losses(full)
    assert len(losses(part)) == 6


# ------------------------------------------------------------------------------ classify and lm
def test_train_classify_then_existing_classify_command(train_cli: typer.Typer, tmp_path: Path) -> None:
    train_file = tmp_path / "c.jsonl"
    rows = [{"text": f"cisplatin caused nephrotoxicity case {i}", "label": "adverse"} for i in range(6)]
    rows += [{"text": f"the weather was sunny on day {i}", "label": "other"} for i in range(6)]
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    invoke(train_cli, "train", "classify", train_file, "--dev", train_file, "-o", out, "--from-scratch", "tiny",
           "--epochs", "15", "--lr", "3e-3", "-b", "4", "--dropout", "0", "--device", "cpu")
    config = json.loads((out / "model-best" / "config.json").read_text())
    assert config["problem_type"] == "single_label_classification"
    evals = [r["eval"] for r in _jsonl((out / "metrics.jsonl").read_text()) if "eval" in r]
    assert {"accuracy", "f1_macro", "f1_micro"} <= set(evals[-1]) and max(e["accuracy"] for e in evals) == 1.0
    docs = tmp_path / "docs.txt"
    docs.write_text("cisplatin caused nephrotoxicity case 1\nthe weather was sunny on day 2\n")
    result = _jsonl(invoke(train_cli, "classify", "-m", out / "model-best", "--device", "cpu", "--input-format", "lines", docs))
    assert [r["labels"] for r in result] == [["adverse"], ["other"]]


def test_train_classify_multilabel(train_cli: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text("".join(json.dumps({"text": f"doc {i}", "labels": ["a", "b"][: 1 + i % 2]}) + "\n" for i in range(4)))
    out = tmp_path / "run"
    invoke(train_cli, "train", "classify", f, "--dev", f, "-o", out, "--from-scratch", "tiny", "--max-steps", "2", "--device", "cpu")
    assert json.loads((out / "model-last" / "config.json").read_text())["problem_type"] == "multi_label_classification"


def test_train_classify_multilabel_through_the_graph_branch(train_cli: typer.Typer, tmp_path: Path, monkeypatch) -> None:
    """The CLI's default on a GPU (captured steps; emulated here, tests/helpers.py), and --no-cuda-graph."""
    from tests.helpers import emulate_graph_trainer

    f = tmp_path / "m.jsonl"
    f.write_text("".join(json.dumps({"text": f"doc {i}", "labels": ["a", "b"][: 1 + i % 2]}) + "\n" for i in range(4)))
    with monkeypatch.context() as patch:
        steps = emulate_graph_trainer(patch)
        invoke(train_cli, "train", "classify", f, "-o", tmp_path / "g", "--from-scratch", "tiny", "--max-steps", "6", "--device", "cpu")
    (step,) = steps
    assert {shape for key in step.graphs for _, shape, _ in key[1:]} == {(4, 64), (4, 2)}  # ids/mask padded, the 2 labels not
    summary = [r["summary"] for r in _jsonl((tmp_path / "g" / "metrics.jsonl").read_text()) if "summary" in r][-1]
    assert summary["cuda_graph"]["replayed_batches"] == 3 and summary["cuda_graph"]["shapes"] == 1
    assert json.loads((tmp_path / "g" / "model-last" / "training_config.json").read_text())["cuda_graph"] is True
    invoke(train_cli, "train", "classify", f, "-o", tmp_path / "e", "--from-scratch", "tiny", "--max-steps", "1", "--device", "cpu", "--no-cuda-graph")
    assert json.loads((tmp_path / "e" / "model-last" / "training_config.json").read_text())["cuda_graph"] is False


def test_train_lm_then_generate(train_cli: typer.Typer, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Naloxone reverses the antihypertensive effect of clonidine.\n" * 20)
    out = tmp_path / "run"
    invoke(train_cli, "train", "lm", corpus, "--dev", corpus, "-o", out, "--from-scratch", "tiny", "--block-size", "32",
           "--epochs", "4", "--lr", "3e-3", "-b", "4", "--dropout", "0", "--device", "cpu")
    evals = [r["eval"] for r in _jsonl((out / "metrics.jsonl").read_text()) if "eval" in r]
    assert evals[-1]["perplexity"] < evals[0]["perplexity"]
    text = invoke(train_cli, "generate", "-m", out / "model-best", "--prompt", "Naloxone reverses", "--max-new-tokens", "5", "--device", "cpu")
    assert "Naloxone" in text


def test_fine_tune_ner_from_a_pretrained_directory(train_cli: typer.Typer, tmp_path: Path, tokenizer) -> None:
    """-m DIR: a causal LM's body with a freshly initialised token-classification head."""
    from biogpt.model import BioGptConfig, BioGptForCausalLM, BioGptForTokenClassification

    torch.manual_seed(0)
    BioGptForCausalLM(BioGptConfig.from_preset("tiny", vocab_size=len(tokenizer))).save_pretrained(tmp_path / "lm", tokenizer=tokenizer)
    out = tmp_path / "run"
    invoke(train_cli, "train", "ner", FIXTURE, "-o", out, "-m", tmp_path / "lm", "--max-steps", "3", "--device", "cpu")
    model = BioGptForTokenClassification.from_pretrained(out / "model-last")
    assert model.config.id2label[0] == "O" and model.config.num_labels == 5


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from biogpt import main
from biogpt.commands import train
train.register(main.app)
sys.exit(main.main(sys.argv[1:]))
"""


def test_sigterm_writes_checkpoint_then_resume_finishes(tmp_path: Path) -> None:
    """A real SIGTERM to a real `biogpt train ner` process: checkpoint, one line, exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-c", SCRIPT, "train", "ner", str(FIXTURE), "-o", str(out), "--from-scratch", "tiny",
            "-b", "2", "--max-steps", "100000", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("biogpt: interrupted (SIGTERM at step") and lines[0].endswith("rerun with --resume to continue")
    step = int(lines[-1].split("step ")[1].split(":")[0])
    assert (out / "checkpoints" / f"step-{step}" / "trainer_state.pt").is_file()
    done = subprocess.run(args[:-6] + ["-b", "2", "--max-steps", str(step + 2), "--device", "cpu", "--resume"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    steps = [r["step"] for r in _jsonl(metrics.read_text()) if "loss" in r]
    assert steps == list(range(1, step + 3))


def test_yaml_config_with_command_line_override(tmp_path):

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr: 0.001\nbatch-size: 4\nepochs: 2\n")
    options = resolve_options(cfg, {"epochs": 5, "lr": None})
    assert options["lr"] == 0.001 and options["batch_size"] == 4 and options["epochs"] == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense: 1\n")
    import pytest as _pytest

    with _pytest.raises(TrainingError, match="unknown keys nonsense"):
        resolve_options(bad, {})


@pytest.mark.parametrize(
    "given, message",
    [
        ({"lr": -1.0}, "--lr -1.0: expected a number > 0.0"),
        ({"lr": 0.0}, "--lr 0.0: expected a number > 0.0"),
        ({"batch_size": 0}, "--batch-size 0: expected a number >= 1"),
        ({"epochs": 0}, "--epochs 0: expected a number >= 1"),
        ({"warmup_steps": -5}, "--warmup-steps -5: expected a number >= 0"),
        ({"dropout": 1.0}, "--dropout 1.0: expected a probability below 1"),
    ],
)
def test_option_ranges_are_checked_before_anything_loads(tmp_path, given, message):
    """Out-of-range values (flags or --config) are one usage error up front, not an optimizer's
    exception after the data and model have loaded."""
    with pytest.raises(InvalidOptionError, match=message):
        resolve_options(None, given)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(given))
    with pytest.raises(InvalidOptionError, match=message):
        resolve_options(cfg, {})
    assert resolve_options(None, {"lr": 1e-4, "dropout": 0.0, "warmup_steps": 0})["lr"] == 1e-4


def test_train_output_that_is_a_file_is_refused(train_cli, tmp_path):
    data = tmp_path / "ner.jsonl"
    data.write_text(json.dumps({"tokens": ["Aspirin", "helps"], "tags": ["B-Chemical", "O"]}) + "\n")
    result = CliRunner().invoke(train_cli, ["train", "ner", str(data), "-o", str(data), "--from-scratch", "tiny", "--max-steps", "1", "--device", "cpu"])
    assert isinstance(result.exception, TrainingError) and "is a file; training writes a directory" in str(result.exception)
    assert data.read_text().startswith('{"tokens"')


def test_tokenized_features_are_cached_with_datasets(tmp_path):
    from biogpt.training.features import cached_features

    src = tmp_path / "train.jsonl"
    src.write_text('{"text": "a"}\n')
    calls = []

    def build():
        calls.append(1)
        return [{"input_ids": [2, 5, 6], "label": 1}, {"input_ids": [2, 7], "label": 0}]

    first = cached_features([src], {"kind": "t"}, build)
    second = cached_features([src], {"kind": "t"}, build)
    assert len(calls) == 1 and len(second) == 2 and second[0] == {"input_ids": [2, 5, 6], "label": 1}
    assert type(second).__name__ == "Dataset" and first[1] == second[1]
    src.write_text('{"text": "b"}\n')  # other content: tokenized again
    cached_features([src], {"kind": "t"}, build)
    assert len(calls) == 2


def test_from_scratch_defaults_yield_to_flags_and_config(tmp_path):

    scratch = resolve_options(None, {"from_scratch": "tiny", "lr": None, "epochs": None})
    assert scratch["lr"] == 1e-3 and scratch["epochs"] == 20
    assert resolve_options(None, {"from_scratch": "tiny", "lr": 5e-4})["lr"] == 5e-4
    cfg = tmp_path / "c.json"
    cfg.write_text('{"epochs": 2}')
    assert resolve_options(cfg, {"from_scratch": "tiny"})["epochs"] == 2
    assert resolve_options(None, {"model": "x"})["lr"] == 5e-5  # fine-tuning keeps its defaults


def test_a_hard_killed_run_resumes_from_its_last_epoch_checkpoint(train_cli: typer.Typer, tmp_path: Path) -> None:
    """No --save-steps: the default epoch-end checkpoints (newest two kept) are enough to resume."""
    out = tmp_path / "run"
    base = ["train", "ner", FIXTURE, "--from-scratch", "tiny", "-b", "4", "--device", "cpu", "-o", out]
    invoke(train_cli, *base, "--epochs", "3")
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(kept) == 2
    shutil.rmtree(out / "model-last")  # as if killed before the end
    invoke(train_cli, *base, "--epochs", "3", "--resume")


def test_train_on_a_full_disk_is_one_line_and_leaves_no_half_model(tmp_path: Path) -> None:
    """`biogpt train` whose weights cannot be written: one line naming the folder (never
    safetensors' own error text), exit 1, no model folder without weights, no temporary left."""
    from tests.faults import run_with_file_size_limit, temporaries

    out = tmp_path / "run"
    args = ["train", "ner", str(FIXTURE), "-o", str(out), "--from-scratch", "tiny", "-b", "4", "--max-steps", "2",
            "--device", "cpu"]
    result = run_with_file_size_limit(args, 1_000_000)  # the logs fit, 42k-row embeddings (5 MB) do not
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("biogpt: error: ") and lines[0].endswith(": file too large"), lines
    assert "Safetensor" not in lines[0] and "internal error" not in lines[0]
    written = lines[0].removeprefix("biogpt: error: ").removesuffix(": file too large")
    assert Path(written).parent == out or Path(written).parent.parent == out
    assert not Path(written).exists()
    for folder in [out, *out.glob("checkpoints/*"), *out.glob("model-*")]:
        if folder.is_dir() and (folder / "config.json").exists():
            assert (folder / "model.safetensors").is_file(), folder  # never a config without weights
    assert temporaries(tmp_path) == []
