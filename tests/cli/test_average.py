"""`biogpt average-checkpoints`: exact float64 averaging into a loadable model directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer

from biogpt._common import UserError
from biogpt.commands import average
from biogpt.training import TrainingError, averaging
from biogpt.model import BioGptForCausalLM

from tests.helpers import invoke, tiny_lm


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    average.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep subcommand routing with one command
    return app


def _save(tmp: Path, name: str, seed: int) -> Path:
    model = tiny_lm(seed=seed)
    return model.save_pretrained(tmp / name)


def test_average_of_two_is_exact_and_loadable(app, tmp_path) -> None:
    a, b = _save(tmp_path, "a", 1), _save(tmp_path, "b", 2)
    invoke(app, "average-checkpoints", a, b, "-o", tmp_path / "avg")
    wa, wb, wavg = (averaging.load_weights(d) for d in (a, b, tmp_path / "avg"))
    assert set(wavg) == set(wa)
    for key in wa:
        expected = ((wa[key].double() + wb[key].double()) / 2).to(wa[key].dtype)
        assert torch.equal(wavg[key], expected), key
    model = BioGptForCausalLM.from_pretrained(tmp_path / "avg")
    ref = BioGptForCausalLM.from_pretrained(a)
    for (name, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert p.shape == q.shape, name
    # the first checkpoint's config travels with the average
    assert (tmp_path / "avg" / "config.json").read_text() == (a / "config.json").read_text()


def test_average_last_k_of_a_run_and_errors(app, tmp_path) -> None:
    run = tmp_path / "run"
    for step, seed in ((10, 1), (20, 2), (30, 3)):
        _save(run / "checkpoints", f"step-{step}", seed)
    assert [p.name for p in averaging.newest_checkpoints(run, 2)] == ["step-20", "step-30"]
    invoke(app, "average-checkpoints", "--last", "2", run, "-o", tmp_path / "avg")
    w2, w3, wavg = (averaging.load_weights(d) for d in (run / "checkpoints" / "step-20", run / "checkpoints" / "step-30", tmp_path / "avg"))
    for key in w2:
        assert torch.equal(wavg[key], ((w2[key].double() + w3[key].double()) / 2).to(w2[key].dtype))
    with pytest.raises(UserError, match="exists"):
        invoke(app, "average-checkpoints", "--last", "2", run, "-o", tmp_path / "avg")
    invoke(app, "average-checkpoints", "--last", "2", run, "-o", tmp_path / "avg", "--force")
    other = tiny_lm(seed=0, num_hidden_layers=1).save_pretrained(tmp_path / "other")
    with pytest.raises(TrainingError, match="same tensors"):
        invoke(app, "average-checkpoints", run / "checkpoints" / "step-10", other, "-o", tmp_path / "bad")


def test_average_on_a_full_disk_and_from_a_corrupt_checkpoint(app, tmp_path) -> None:
    """A full disk: one line naming the output, no folder and no .tmp-avg/ left; a corrupt input:
    "corrupt or unsafe checkpoint"; the average's files get ordinary modes."""
    import os
    import stat

    from biogpt.model.errors import CheckpointError

    from tests.faults import run_with_file_size_limit, temporaries

    a, b = _save(tmp_path, "a", 1), _save(tmp_path, "b", 2)
    out = tmp_path / "avg"
    result = run_with_file_size_limit(["average-checkpoints", str(a), str(b), "-o", str(out)], 100_000)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"biogpt: error: {out}: file too large"]
    assert not out.exists() and temporaries(tmp_path) == []
    old = os.umask(0o022)
    try:
        invoke(app, "average-checkpoints", a, b, "-o", out)
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    (b / "model.safetensors").write_bytes(os.urandom(3000))
    with pytest.raises(CheckpointError, match=rf"^{b / 'model.safetensors'}: corrupt or unsafe checkpoint \("):
        invoke(app, "average-checkpoints", a, b, "-o", tmp_path / "avg2")
    assert not (tmp_path / "avg2").exists() and temporaries(tmp_path) == []
