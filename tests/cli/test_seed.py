"""`--seed` makes every `biogpt train` command reproducible (issue 27, item 7).

Two runs with the same seed on the same CPU (one thread) give bit-identical weights — the new
head a pretrained language model gets when it becomes a classifier or tagger included — and a
different seed gives different ones. Between the runs the process's global generators are
disturbed on purpose: a run must not depend on what was drawn before it (a head drawn before
the seed was set used to). Under torchrun (slow) two gloo ranks equal one process at the same
global batch, the head included.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from safetensors.torch import load_file

from biogpt.training.seeding import seed_everything
from tests.helpers import FIXTURES, ROOT, invoke

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = FIXTURES / "tasks"
NER = FIXTURES / "ner" / "bc5cdr_titles.jsonl"
TEMPLATE = "the relation between {head} and {tail} is {relation}"


def _disturb_rngs() -> None:
    """Advance every global generator, as whatever ran earlier in a process would."""
    random.random()
    torch.rand(1000)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model-last" / "model.safetensors"))


def _bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The names whose tensors differ in any bit (NaN-safe: compares the raw bytes)."""
    assert set(a) == set(b)
    return [k for k in a if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
            or not torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8))]


# ------------------------------------------------------------------ the data of each command
def _classify_file(tmp: Path) -> Path:
    f = tmp / "classify.jsonl"
    rows = [{"text": f"cisplatin caused nephrotoxicity in case {i}", "label": "adverse"} for i in range(4)]
    rows += [{"text": f"the weather was sunny on day {i}", "label": "other"} for i in range(4)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _corpus(tmp: Path) -> Path:
    f = tmp / "corpus.txt"
    f.write_text("Naloxone reverses the antihypertensive effect of clonidine.\nLidocaine caused cardiac asystole.\n" * 6)
    return f


def _custom_file(tmp: Path) -> Path:
    f = tmp / "custom.jsonl"
    rows = [{"text": f"Drug{i} treats disease{i}.", "relations": [{"head": f"drug{i}", "tail": f"disease{i}", "relation": "treats"}]}
            for i in range(4)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _pqa_file(tmp: Path) -> Path:
    f = tmp / "pqa.json"  # not ori_pqal.json: used whole as the split
    f.write_text((TASKS / "PubMedQA" / "ori_pqal.json").read_text())
    return f


# every `biogpt train` command: its arguments after `train` (the data made in tmp by the function)
COMMANDS: dict[str, Any] = {
    "ner": lambda tmp: ["ner", NER],
    "classify": lambda tmp: ["classify", _classify_file(tmp)],
    "lm": lambda tmp: ["lm", _corpus(tmp), "--block-size", "16"],
    "re": lambda tmp: ["re", "--task", "ddi", TASKS / "DDI", "--dev-limit", "0"],
    # the official recipe adds 9 learned prompt rows to the embeddings: drawn too
    "qa": lambda tmp: ["qa", "--task", "pubmedqa", _pqa_file(tmp), "--recipe", "official", "--dev-limit", "0", "--max-tokens", "512"],
    "re-custom": lambda tmp: ["re", "--data", _custom_file(tmp), "--template", TEMPLATE, "--dev-limit", "0"],
    "classify-generative": lambda tmp: ["classify", TASKS / "HoC", "--task", "hoc", "--generative", "--recipe", "official", "--dev-limit", "0"],
}
# dropout stays at the tiny preset's 0.1: its masks must follow from the seed as well
COMMON = ["--max-steps", "2", "-b", "2", "--device", "cpu", "--no-cuda-graph"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_same_seed_same_weights_from_scratch(train_cli: typer.Typer, tmp_path: Path, command: str) -> None:
    args = COMMANDS[command](tmp_path)
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        _disturb_rngs()
        invoke(train_cli, "train", *args, "--from-scratch", "tiny", "--seed", seed, *COMMON, "-o", tmp_path / name)
        runs[name] = _weights(tmp_path / name)
    assert _bit_identical(runs["a"], runs["b"]) == []
    differ = _bit_identical(runs["a"], runs["c"])
    assert differ, "another seed gave the same weights"


@pytest.mark.parametrize("kind, head", [("classify", "score.weight"), ("ner", "classifier.weight")])
def test_a_new_head_on_a_pretrained_model_follows_the_seed(train_cli: typer.Typer, tmp_path: Path, model_dir: Path, kind: str, head: str) -> None:
    """A tiny pretrained language model fine-tuned into a classifier or tagger: its head is not in
    the checkpoint, so it is drawn; with the same seed it is drawn the same."""
    assert head not in load_file(str(model_dir / "model.safetensors"))
    data = _classify_file(tmp_path) if kind == "classify" else NER
    runs = {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        _disturb_rngs()
        invoke(train_cli, "train", kind, data, "-m", model_dir, "--seed", seed, *COMMON, "-o", tmp_path / name)
        runs[name] = _weights(tmp_path / name)
    assert head in runs["a"]
    assert _bit_identical(runs["a"], runs["b"]) == []
    assert head in _bit_identical(runs["a"], runs["c"])


def test_the_seed_and_determinism_are_recorded(train_cli: typer.Typer, tmp_path: Path) -> None:
    invoke(train_cli, "train", "classify", _classify_file(tmp_path), "--from-scratch", "tiny", "--seed", "5", *COMMON, "-o", tmp_path / "r")
    config = json.loads((tmp_path / "r" / "model-last" / "training_config.json").read_text())
    assert config["seed"] == 5 and config["deterministic"] is False


def test_seed_everything_seeds_python_torch_and_an_imported_numpy() -> None:
    import numpy

    draws = []
    for _ in range(2):
        seed_everything(3)
        draws.append((random.random(), torch.rand(3).tolist(), numpy.random.rand(2).tolist()))
    assert draws[0] == draws[1]
    seed_everything(2**40)  # beyond numpy's 32-bit seeds: still accepted


def test_deterministic_switches_torch_to_deterministic_algorithms(monkeypatch) -> None:
    from biogpt.training import seeding

    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: calls.append(flag))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seeding.seed_everything(1, deterministic=True)
    assert calls == [True] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == seeding.CUBLAS_WORKSPACE
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True


# ------------------------------------------------------------------ torchrun
def _run(cmd: list[Any], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_new_head_included(tmp_path: Path, model_dir: Path) -> None:
    """`biogpt train classify -m LM` under torchrun (2 CPU ranks, gloo, -b 2 each) against one
    process with -b 4, dropout 0: every row is one loss term, so the two ranks' mean gradient is
    the single process's (8 documents: no shard is padded). Equal within float rounding, not bit
    for bit: the all-reduce adds the ranks' gradients in another order than one backward does.

    Excluded: `k_proj.bias`. Its gradient is zero in exact arithmetic (softmax ignores a constant
    added to every score of a query), so what each run computes for it is rounding noise, and
    Adam divides that noise by its own magnitude: the parameter moves by about ±lr per step in
    directions that depend on the order of the sums, in either run. No other parameter is exempt."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    data = _classify_file(tmp_path)
    common = ["train", "classify", data, "-m", model_dir, "--seed", "3", "--dropout", "0", "--max-steps", "2",
              "--lr", "1e-3", "--device", "cpu", "--no-cuda-graph"]
    _run([sys.executable, "-m", "biogpt", *common, "-b", "4", "-o", tmp_path / "one"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "biogpt",
          *common, "-b", "2", "-o", tmp_path / "two"], tmp_path)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert set(one) == set(two) and "score.weight" in one
    base = load_file(str(model_dir / "model.safetensors"))
    for key in one:
        if key.endswith("k_proj.bias"):
            continue
        assert torch.allclose(one[key], two[key], atol=1e-6, rtol=1e-5), key
    # and the run did move the weights (a comparison of two untrained models would prove nothing)
    assert not torch.equal(one["biogpt.layers.0.fc1.weight"], base["biogpt.layers.0.fc1.weight"])
