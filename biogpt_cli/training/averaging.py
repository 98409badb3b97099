"""Checkpoint averaging: the exact parameter average of several checkpoints (the fairseq recipe
averages the last 5 epoch checkpoints of the relation-extraction runs).

Every floating-point tensor is summed in float64 and divided once, then cast back to its dtype;
other tensors (none in our models) are taken from the first checkpoint. The output is a
loadable model directory: the config, tokenizer and other files of the first checkpoint, with
the averaged weights in one model.safetensors. It is written under a temporary name and
appears only with all its files (`model_directory`): a full disk leaves nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import TrainingError

WEIGHT_INDEX = "model.safetensors.index.json"
SKIP = ("trainer_state.pt", WEIGHT_INDEX)


def _weight_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise TrainingError(f"{directory}: no model*.safetensors (not a model or checkpoint directory)")
    return files


def load_weights(directory: Path) -> dict:
    """Every tensor of a folder's safetensors files; a corrupt file is a CheckpointError naming it."""
    from biogpt.model.checkpoint import read_safetensors

    state: dict = {}
    for path in _weight_files(directory):
        state.update(read_safetensors(path))
    return state


def newest_checkpoints(run_dir: Path, k: int) -> list[Path]:
    """The `k` newest (highest step) checkpoints under RUNDIR/checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    found = sorted(
        (p for p in root.glob("step-*") if p.name[5:].isdigit() and any(p.glob("model*.safetensors"))),
        key=lambda p: int(p.name[5:]),
    )
    return found[-k:]


def average_state_dicts(states: list[dict]) -> dict:
    import torch

    first = states[0]
    for i, state in enumerate(states[1:], 2):
        if set(state) != set(first):
            diff = sorted(set(state) ^ set(first))
            raise TrainingError(f"checkpoint {i} does not have the same tensors as the first (e.g. {diff[:3]})")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise TrainingError(f"checkpoint {i}: {key} has shape {tuple(tensor.shape)}, the first {tuple(first[key].shape)}")
    out = {}
    for key, tensor in first.items():
        if not tensor.is_floating_point():
            out[key] = tensor.clone()
            continue
        total = torch.zeros(tensor.shape, dtype=torch.float64)
        for state in states:
            total += state[key].to(torch.float64)
        out[key] = (total / len(states)).to(tensor.dtype).contiguous()
    return out


def average_checkpoints(dirs: list[Path], output: Path) -> Path:
    """Average `dirs` into `output` (a loadable model directory); returns `output`. An existing
    `output` gets the new files (its stale weight files removed, other files kept)."""
    from biogpt.model.checkpoint import SAFE_WEIGHTS, model_directory, save_safetensors

    if not dirs:
        raise TrainingError("no checkpoints to average")
    dirs = [Path(d) for d in dirs]
    states = [load_weights(d) for d in dirs]
    averaged = average_state_dicts(states)
    output = Path(output)
    with model_directory(output) as tmp:
        for item in dirs[0].iterdir():  # config, tokenizer, recipe: the first checkpoint's
            if item.name in SKIP or (item.name.startswith("model") and item.name.endswith(".safetensors")):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            elif item.is_file():
                shutil.copyfile(item, tmp / item.name)
        save_safetensors(averaged, tmp / SAFE_WEIGHTS)
        (tmp / "averaged_from.txt").write_text("".join(f"{d}\n" for d in dirs), encoding="utf-8")
    return output
