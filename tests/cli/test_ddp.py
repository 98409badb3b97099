"""torchrun: 2 CPU processes (gloo) reach the same weights as one process with the same global
batch; only rank 0 writes. Each rank trains on its strided shard of the seeded epoch order."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT
from safetensors.torch import load_file

ROOT = ROOT

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from biogpt.training import Trainer, TrainingArgs, dist_info
    from biogpt.training.jobs import resolve_train_device
    from biogpt.model import BioGptConfig, BioGptForCausalLM

    out, batch_size = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    device = resolve_train_device("cpu")  # joins the gloo group under torchrun
    torch.manual_seed(0)
    config = BioGptConfig.from_preset("tiny", vocab_size=100, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BioGptForCausalLM(config)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": [2] + torch.randint(4, 100, (7,), generator=g).tolist()} for _ in range(16)]

    def collate(rows):
        ids = torch.tensor([r["input_ids"] for r in rows])
        return {"input_ids": ids, "labels": ids}

    args = TrainingArgs(output_dir=out, epochs=2, batch_size=batch_size, grad_accum=2, lr=1e-2, scheduler="constant",
                        save_steps=2, seed=3)
    summary = Trainer(model, args, data, collate, device=device, quiet=True).train()
    rank, world = dist_info()
    # one file per rank: two processes printing to one pipe can interleave their lines
    Path(out + f"-rank{rank}-of{world}").write_text(str(summary))
    """
)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _run([sys.executable, str(script), str(tmp_path / "single"), "4"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
                str(tmp_path / "ddp"), "2"], tmp_path)
    assert (tmp_path / "ddp-rank0-of2").exists() and (tmp_path / "ddp-rank1-of2").exists()
    one = load_file(str(tmp_path / "single" / "model-last" / "model.safetensors"))
    two = load_file(str(tmp_path / "ddp" / "model-last" / "model.safetensors"))
    assert set(one) == set(two)
    for key in one:
        if key.endswith("k_proj.bias"):
            # its gradient is zero in exact arithmetic (softmax ignores a per-query constant):
            # Adam normalises the rounding noise, which differs between the two reductions
            continue
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    # the same number of steps and checkpoints, written once (rank 0)
    single_ckpts = sorted(p.name for p in (tmp_path / "single" / "checkpoints").iterdir())
    ddp_ckpts = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert single_ckpts == ddp_ckpts == ["step-2", "step-4"]
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len([l for l in lines if '"loss"' in l]) == 4  # one writer: no duplicated lines


def test_train_command_under_torchrun(tmp_path: Path) -> None:
    """A train command joins the group itself (WORLD_SIZE from torchrun); rank 0 saves the model
    with its prompt recipe."""
    import json

    out = tmp_path / "re"
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "biogpt",
          "train", "re", "--task", "ddi", str(ROOT / "tests" / "fixtures" / "tasks" / "DDI"), "--dev-limit", "0",
          "--from-scratch", "tiny", "--max-steps", "2", "--batch-size", "1", "--device", "cpu", "-o", str(out)], tmp_path)
    stored = json.loads((out / "model-best" / "config.json").read_text())["biogpt_task"]
    assert stored["task"] == "ddi"
    assert len([l for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]) == 2
