"""`biogpt average-checkpoints`: the exact parameter average of several checkpoints
(biogpt.training.averaging).

    biogpt average-checkpoints run/checkpoints/step-100 run/checkpoints/step-200 -o averaged
    biogpt average-checkpoints --last 5 run -o averaged      # the 5 newest checkpoints of a run
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from .._common import UserError
from ..training.averaging import average_checkpoints, newest_checkpoints

logger = logging.getLogger(__name__)


def average_command(
    inputs: list[Path] = typer.Argument(..., help="Checkpoint/model directories, or one run directory with --last."),
    output: Path = typer.Option(..., "--output", "-o", help="The averaged model directory."),
    last: Optional[int] = typer.Option(None, "--last", min=1, help="Average the K newest checkpoints of the run directory given (default: the directories given, all of them)."),
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
