"""`biogpt average-checkpoints`: the exact parameter average of several checkpoints.

    biogpt average-checkpoints run/checkpoints/step-100 run/checkpoints/step-200 -o averaged
    biogpt average-checkpoints --last 5 run -o averaged      # the 5 newest checkpoints of a run

Every floating-point tensor is summed in float64 and divided once, then cast back to its dtype;
other tensors (none in our models) are taken from the first checkpoint. The output is a
loadable model directory: the config, tokenizer and other files of the first checkpoint, with
the averaged weights in one model.safetensors (the fairseq recipe averages the last 5 epoch
checkpoints of the relation-extraction runs).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

import typer

from .._common import UserError

logger = logging.getLogger(__name__)

WEIGHT_INDEX = "model.safetensors.index.json"
SKIP = ("trainer_state.pt", WEIGHT_INDEX)


def _weight_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise UserError(f"{directory}: no model*.safetensors (not a model or checkpoint directory)")
    return files


def load_weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    state: dict = {}
    for path in _weight_files(directory):
        state.update(load_file(str(path)))
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
            raise UserError(f"checkpoint {i} does not have the same tensors as the first (e.g. {diff[:3]})")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise UserError(f"checkpoint {i}: {key} has shape {tuple(tensor.shape)}, the first {tuple(first[key].shape)}")
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
    """Average `dirs` into `output` (a loadable model directory); returns `output`."""
    from safetensors.torch import save_file

    if not dirs:
        raise UserError("no checkpoints to average")
    dirs = [Path(d) for d in dirs]
    states = [load_weights(d) for d in dirs]
    averaged = average_state_dicts(states)
    output = Path(output)
    tmp = output.with_name(f".tmp-{output.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(dirs[0], tmp, ignore=lambda _d, names: [n for n in names if n in SKIP or (n.startswith("model") and n.endswith(".safetensors"))])
    save_file(averaged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "averaged_from.txt").write_text("".join(f"{d}\n" for d in dirs), encoding="utf-8")
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    return output


def average_command(
    inputs: list[Path] = typer.Argument(..., help="Checkpoint/model directories, or one run directory with --last."),
    output: Path = typer.Option(..., "--output", "-o", help="The averaged model directory."),
    last: Optional[int] = typer.Option(None, "--last", min=1, help="Average the K newest checkpoints of the run directory given."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output."),
) -> None:
    """Average the parameters of several checkpoints into one loadable model (exact: float64 sums).

    Example: biogpt average-checkpoints --last 5 re-run/ -o re-run/model-average
    """
    if last is not None:
        if len(inputs) != 1:
            raise UserError("--last K takes one run directory (with checkpoints/step-N inside)")
        dirs = newest_checkpoints(inputs[0], last)
        if not dirs:
            raise UserError(f"{inputs[0]}: no checkpoints under {inputs[0] / 'checkpoints'}")
        if len(dirs) < last:
            logger.warning("only %d checkpoints in %s (asked for %d)", len(dirs), inputs[0], last)
    else:
        dirs = list(inputs)
    for d in dirs:
        if not Path(d).is_dir():
            raise UserError(f"{d}: not a directory")
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to replace it")
    average_checkpoints(dirs, output)
    typer.echo(f"averaged {len(dirs)} checkpoints into {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("average-checkpoints")(average_command)
