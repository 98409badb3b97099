"""`biogpt merge PART... -o OUTPUT`: join the parts of a run made by hand with `--shard i/N`.

Each part carries a journal with the global input index of every finished item (see
`biogpt.runstate`), so the parts are interleaved back into exact input order whatever the
output format; the result equals a single-process run's output. Parts are kept (delete them
yourself once you are happy with OUTPUT); under torchrun rank 0 does this automatically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from .._common import UserError

logger = logging.getLogger(__name__)


def merge(
    parts: list[Path] = typer.Argument(..., help="Every part FILE.part-i-of-N of one run (all N of them)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
) -> None:
    """Merge the parts of a sharded run (--shard i/N) into one output in input order.

    Example: biogpt merge out.jsonl.part-0-of-2 out.jsonl.part-1-of-2 -o out.jsonl
    """
    from ..runstate import merge_parts

    for p in parts:
        if not p.is_file():
            raise UserError(f"merge: {p}: no such file")
    if output is not None and output.resolve() in {p.resolve() for p in parts}:
        raise UserError("merge: the output must not be one of the parts")
    total = merge_parts(list(parts), output, force=force)
    logger.info("merged %d parts (%d input items) into %s", len(parts), total, output or "stdout")


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
