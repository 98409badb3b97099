"""The shared training loop: schedules, checkpoints, exact resume, signals, early stopping."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from biogpt.model.errors import InvalidOptionError
from biogpt.training import Trainer, TrainingArgs, TrainingInterrupted, latest_checkpoint, lr_factor
from biogpt.model import BioGptConfig, BioGptForTokenClassification
from tests.helpers import collate


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0) -> BioGptForTokenClassification:
    torch.manual_seed(seed)
    # dropout on, so that resuming must restore the torch RNG to reproduce the losses
    config = BioGptConfig.from_preset("tiny", vocab_size=100, id2label={0: "O", 1: "B-X", 2: "I-X"}, hidden_dropout_prob=0.2)
    return BioGptForTokenClassification(config)


def _data(n: int = 24) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        length = 4 + i % 5
        ids = torch.randint(3, 100, (length,), generator=g).tolist()
        out.append({"input_ids": [2] + ids, "labels": [-100] + [t % 3 for t in ids]})
    return out




def _losses(out: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def _args(out: Path, **kw) -> TrainingArgs:
    base = dict(output_dir=str(out), epochs=2, lr=1e-3, batch_size=4, grad_accum=2, warmup_steps=2, scheduler="cosine", seed=3)
    return TrainingArgs(**{**base, **kw})


def test_lr_schedules() -> None:
    assert lr_factor(0, kind="linear", warmup=4, total=10) == pytest.approx(0.2)
    assert lr_factor(4, kind="linear", warmup=4, total=10) == pytest.approx(1.0)
    assert lr_factor(10, kind="linear", warmup=4, total=10) == pytest.approx(0.0)
    assert lr_factor(7, kind="cosine", warmup=4, total=10) == pytest.approx(0.5)
    assert lr_factor(16, kind="inverse_sqrt", warmup=4, total=10) == pytest.approx(0.5)
    assert lr_factor(9, kind="constant", warmup=0, total=10) == 1.0


def test_interrupted_and_resumed_run_has_identical_losses(tmp_path: Path) -> None:
    # uninterrupted: 24 examples, batch 4, accumulation 2 -> 3 steps per epoch, 2 epochs = 6 steps
    full = Trainer(_model(), _args(tmp_path / "a"), _data(), collate, quiet=True)
    full.train()
    expected = _losses(tmp_path / "a")
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]

    def kill_at_4(step: int, loss: float) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "b"
    first = Trainer(_model(), _args(out), _data(), collate, quiet=True, on_step=kill_at_4)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 4") as info:
        first.train()
    from biogpt._common import error_line
    from biogpt.main import exit_code

    assert exit_code(info.value) == 143 and "\n" not in error_line(info.value)  # 128 + SIGTERM, as a shell reports it
    assert signal.getsignal(signal.SIGTERM) != first._on_signal  # handlers restored
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == "step-4"
    assert {"model.safetensors", "config.json", "trainer_state.pt", "training_config.json"} <= {p.name for p in ckpt.iterdir()}
    # a different initial model: every weight must come from the checkpoint
    second = Trainer(_model(seed=99), _args(out), _data(), collate, quiet=True)
    second.train(resume=ckpt)
    assert _losses(out) == expected  # exact equality, not approximate
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name


def test_periodic_checkpoints_limit_and_resume(tmp_path: Path) -> None:
    full = Trainer(_model(), _args(tmp_path / "a", grad_accum=1, epochs=1), _data(), collate, quiet=True)
    full.train()
    out = tmp_path / "b"
    run = Trainer(_model(), _args(out, grad_accum=1, epochs=1, save_steps=2, save_total_limit=2), _data(), collate, quiet=True)
    run.train()
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-4", "step-6"]
    state = torch.load(out / "checkpoints" / "step-4" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and state["batch_index"] == 4 and state["epoch"] == 0
    resumed = Trainer(_model(seed=5), _args(out, grad_accum=1, epochs=1), _data(), collate, quiet=True)
    resumed.train(resume=out / "checkpoints" / "step-4")
    assert _losses(out) == _losses(tmp_path / "a")


def test_eval_best_last_and_early_stopping(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])

    def eval_fn(model: torch.nn.Module) -> dict[str, float]:
        assert not model.training
        return {"f1": next(scores)}

    args = _args(tmp_path, epochs=10, grad_accum=1, eval_steps=1, patience=3, metric="f1", greater_is_better=True)
    summary = Trainer(_model(), args, _data(), collate, eval_fn=eval_fn, quiet=True).train()
    assert summary["stopped_early"] and summary["step"] == 5 and summary["best"] == 0.7
    for sub in ("model-best", "model-last"):
        cfg = json.loads((tmp_path / sub / "training_config.json").read_text())
        assert cfg["metric"] == "f1" and cfg["patience"] == 3
        loaded = BioGptForTokenClassification.from_pretrained(tmp_path / sub)
        assert loaded.config.num_labels == 3
    assert json.loads((tmp_path / "model-best" / "training_config.json").read_text())["step"] == 2
    evals = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "eval" in x]
    assert [e["eval"]["f1"] for e in evals] == [0.5, 0.7, 0.6, 0.6, 0.6]


def test_bf16_autocast_runs(tmp_path: Path) -> None:
    summary = Trainer(_model(), _args(tmp_path, epochs=1, bf16=True), _data(8), collate, quiet=True).train()
    assert summary["step"] == 1
    assert (tmp_path / "model-last" / "model.safetensors").is_file()


def test_bad_args() -> None:
    with pytest.raises(InvalidOptionError, match="scheduler"):
        TrainingArgs(output_dir="x", scheduler="step")


# ------------------------------------------------------------------ the CUDA-graph branch
def test_graph_blockers(tmp_path: Path) -> None:
    trainer = Trainer(_model(), _args(tmp_path, grad_accum=1), _data(), collate, quiet=True)
    assert trainer.graph_blocker == "not on a CUDA device" and trainer.fast_step is None
    assert not trainer.optimizer.param_groups[0].get("capturable")
    trainer.args.cuda_graph = False
    assert trainer._graph_blocker() == "--no-cuda-graph"
    trainer.args.cuda_graph, trainer.device = True, torch.device("cuda")  # what it would say on a GPU
    assert trainer._graph_blocker() is None
    trainer.model.gradient_checkpointing_enable()
    assert "gradient-checkpointing" in trainer._graph_blocker()
    trainer.world = 2
    assert "distributed" in trainer._graph_blocker()


@pytest.fixture
def graph_branch_on_cpu(monkeypatch: pytest.MonkeyPatch) -> list:
    from tests.helpers import emulate_graph_trainer

    return emulate_graph_trainer(monkeypatch)


@pytest.mark.parametrize("accum", [1, 2])
def test_graph_branch_pads_batches_and_trains_like_the_plain_loop(tmp_path: Path, graph_branch_on_cpu, monkeypatch, accum) -> None:
    def dropless(seed: int = 0) -> BioGptForTokenClassification:
        # padding changes dropout's random draws (not the loss): compare without dropout
        torch.manual_seed(seed)
        config = BioGptConfig.from_preset("tiny", vocab_size=100, id2label={0: "O", 1: "B-X", 2: "I-X"}, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return BioGptForTokenClassification(config)

    args = dict(grad_accum=accum, epochs=2, max_grad_norm=0.5)
    graphed = Trainer(dropless(), _args(tmp_path / "g", **args), _data(), collate, quiet=True)
    assert graphed.fast_step is not None
    # the trainer leaves the model's modules as they are (fast paths build their own copies)
    assert not any(getattr(layer.self_attn, "qkv_fused", None) is not None for layer in graphed.model.biogpt.layers)
    summary = graphed.train()
    (step,) = graph_branch_on_cpu
    kind = "step" if accum == 1 else "accumulate"
    # padded to 64 tokens; the mask, right padding only, dropped (causal flash attention)
    shape = (("input_ids", (4, 64), torch.long), ("labels", (4, 64), torch.long))
    assert set(step.seen) == ({(kind, *shape)} if accum == 1 else {(kind, *shape), ("update",)})
    # 3 warm-up optimizer steps (3 or 6 batches) eager, then every batch replayed; with
    # accumulation the update is a graph of its own
    replayed = 12 - 3 * accum
    assert summary["cuda_graph"] == {"shapes": 1, "replayed_batches": replayed, "eager_batches": 12 - replayed,
                                     "capture_seconds": pytest.approx(0, abs=1), "capture_failed": None}
    assert ("update",) in step.graphs if accum > 1 else len(step.graphs) == 1
    monkeypatch.undo()
    plain = Trainer(dropless(), _args(tmp_path / "p", **args), _data(), collate, quiet=True)
    assert plain.fast_step is None
    plain.train()
    got, want = _losses(tmp_path / "g"), _losses(tmp_path / "p")
    assert sorted(got) == list(range(1, 12 // accum + 1)) and got == pytest.approx(want, rel=1e-5)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    assert all(isinstance(lr, float) for lr in lrs) and lrs == pytest.approx(
        [json.loads(x)["lr"] for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    )
    for name, value in plain.model.state_dict().items():
        assert torch.allclose(value, graphed.model.state_dict()[name], atol=1e-5), name


@pytest.mark.parametrize("accum", [1, 2])
def test_graph_branch_resumes_exactly(tmp_path: Path, graph_branch_on_cpu, accum) -> None:
    args = dict(grad_accum=accum, epochs=2 * accum)
    Trainer(_model(), _args(tmp_path / "a", **args), _data(), collate, quiet=True).train()
    out = tmp_path / "b"
    Trainer(_model(), _args(out, save_steps=4, **args), _data(), collate, quiet=True).train()
    resumed = Trainer(_model(seed=7), _args(out, **args), _data(), collate, quiet=True)
    summary = resumed.train(resume=out / "checkpoints" / "step-4")
    # 8 steps left: 3 warm-up steps, then every batch replayed
    assert summary["cuda_graph"]["replayed_batches"] == 5 * accum
    assert isinstance(resumed.optimizer.param_groups[0]["lr"], torch.Tensor)  # still a tensor after loading
    assert _losses(out) == _losses(tmp_path / "a")  # exact, dropout on


def test_training_is_a_library_without_the_cli(tmp_path: Path) -> None:
    """`biogpt.training` trains without the command line: none of typer, rich or the CLI's
    modules is imported, errors are library errors, and the dev metrics go to a display."""
    import subprocess
    import sys

    from tests.helpers import FIXTURES, ROOT

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from biogpt.training import TrainingError, train_ner\n"
        "shown = []\n"
        "class Show:\n"
        "    def progress(self, total):\n"
        "        from biogpt.progress import NoProgress\n"
        "        return NoProgress()\n"
        "    def evaluation(self, step, metrics):\n"
        "        shown.append(step)\n"
        f"data = Path({str(FIXTURES / 'ner' / 'bc5cdr_titles.jsonl')!r})\n"
        f"out = Path({str(tmp_path / 'run')!r})\n"
        "summary = train_ner(data, out, dev=str(data), from_scratch='tiny', max_steps=2, eval_steps=1, batch_size=4, device='cpu', display=Show())\n"
        "assert summary['step'] == 2 and shown == [1, 2] and (out / 'model-best' / 'config.json').is_file(), (summary, shown)\n"
        "try:\n"
        "    train_ner(data, out, from_scratch='tiny', max_steps=2, device='cpu')\n"
        "except TrainingError as exc:\n"
        "    assert 'already holds a training run' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('a second run into the same directory was not refused')\n"
        "cli = [m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click') or m.startswith(('biogpt.commands', 'biogpt._common', 'biogpt.main', 'biogpt.io'))]\n"
        "print(cli)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ faults: full disk, corrupt checkpoints
def test_a_full_disk_during_a_checkpoint_leaves_no_checkpoint_and_no_temporary(tmp_path: Path) -> None:
    from biogpt.model.errors import OutputError

    from tests.faults import file_size_limit, temporaries

    probe = tmp_path / "probe"
    Trainer(_model(), _args(probe, grad_accum=1, epochs=1, save_steps=2), _data(), collate, quiet=True).train()
    step2 = probe / "checkpoints" / "step-2"
    weights, state = (step2 / "model.safetensors").stat().st_size, (step2 / "trainer_state.pt").stat().st_size
    assert state > weights + 20_000  # Adam's two moments: the state is the larger file
    for limit, what in ((weights // 2, "the weights"), (weights + 10_000, "the optimizer state")):
        out = tmp_path / f"run-{limit}"
        trainer = Trainer(_model(), _args(out, grad_accum=1, epochs=1, save_steps=2), _data(), collate, quiet=True)
        with pytest.raises(OutputError) as info:
            with file_size_limit(limit):
                trainer.train()
        assert str(info.value) == f"{out / 'checkpoints' / 'step-2'}: file too large", what
        assert not (out / "checkpoints" / "step-2").exists() and latest_checkpoint(out) is None
        assert temporaries(out) == []


def test_run_files_have_ordinary_modes(tmp_path: Path) -> None:
    import stat

    old = os.umask(0o022)
    try:
        Trainer(_model(), _args(tmp_path, grad_accum=1, epochs=1, save_steps=3), _data(), collate, quiet=True).train()
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"model.safetensors", "trainer_state.pt", "config.json", "training_config.json", "metrics.jsonl"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


@pytest.mark.parametrize("damage", ["state-random", "state-cut", "state-evil", "state-not-a-state", "weights-random", "weights-missing"])
def test_resuming_from_a_corrupt_or_unsafe_checkpoint_is_one_checkpoint_error(tmp_path: Path, damage: str) -> None:
    from biogpt.model.errors import CheckpointError, UnsafeCheckpointError

    out = tmp_path / "run"
    Trainer(_model(), _args(out, grad_accum=1, epochs=1, save_steps=2), _data(), collate, quiet=True).train()
    ckpt = out / "checkpoints" / "step-2"
    state, weights = ckpt / "trainer_state.pt", ckpt / "model.safetensors"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    if damage == "state-random":
        state.write_bytes(os.urandom(5000))
    elif damage == "state-cut":
        state.write_bytes(state.read_bytes()[:3000])
    elif damage == "state-evil":
        torch.save({"step": 2, "optimizer": Evil()}, state)
    elif damage == "state-not-a-state":
        torch.save({"step": 2}, state)
    elif damage == "weights-random":
        weights.write_bytes(os.urandom(5000))
    else:
        weights.unlink()
    resumed = Trainer(_model(seed=4), _args(out, grad_accum=1, epochs=1), _data(), collate, quiet=True)
    before = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        resumed.train(resume=ckpt)
    message = str(info.value)
    assert ": corrupt or unsafe checkpoint (" in message and message.endswith(")")
    assert message.startswith(str(weights if damage == "weights-random" else ckpt))
    assert "weights_only" not in message and "\n" not in message and len(message) < 300
    assert isinstance(info.value, UnsafeCheckpointError) == (damage == "state-evil")
    assert not marker.exists()
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in before.items())  # nothing half-restored
    from biogpt.main import exit_code

    assert exit_code(info.value) == 1


def test_resume_drops_metric_lines_after_the_checkpoint_and_a_cut_last_line(tmp_path: Path) -> None:
    full = tmp_path / "a"
    Trainer(_model(), _args(full, grad_accum=1, epochs=1), _data(), collate, quiet=True).train()
    out = tmp_path / "b"
    Trainer(_model(), _args(out, grad_accum=1, epochs=1, save_steps=2), _data(), collate, quiet=True).train()
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 9, "loss": 0.')  # the line a SIGKILL cut
    Trainer(_model(seed=2), _args(out, grad_accum=1, epochs=1), _data(), collate, quiet=True).train(resume=out / "checkpoints" / "step-2")
    assert _losses(out) == _losses(full)
