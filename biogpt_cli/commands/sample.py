"""`biogpt data sample NAME -o DIR`: write a small data set shipped inside the package.

The samples live in `biogpt/samples/NAME/` (package data), so the README's quick start works on a
machine without a network. Each sample's README.md says what it holds and where it comes from,
and its LICENSE travels with the data.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import typer

from .. import _common
from .._common import UserError


def sample_files(name: str) -> list:
    """The files of the shipped sample `name` (importlib.resources traversables), sorted."""
    root = resources.files("biogpt") / "samples"
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if name not in available:
        raise UserError(f"unknown sample {name!r}; available: {', '.join(available) or 'none'}")
    return sorted((f for f in (root / name).iterdir() if f.is_file()), key=lambda f: f.name)


def sample(
    name: str = typer.Argument(..., help="Which sample: pubmedqa."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the files into (created if missing)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files of the same names in the folder."),
) -> None:
    """Write a small data set shipped with biogpt-cli into a folder (no network needed).

    pubmedqa: 188 labelled PubMedQA questions (MIT): train.json, valid.json, test.json.

    Example: biogpt data sample pubmedqa -o qs
    """
    files = sample_files(name)
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder")
    clashes = [output / f.name for f in files if (output / f.name).exists()]
    if clashes and not force:
        raise UserError(f"{clashes[0]} exists; pass --force to overwrite it")
    from biogpt.model.files import atomic_directory

    with atomic_directory(output) as folder:  # the folder (or each file in it) appears complete
        for f in files:
            (folder / f.name).write_bytes(f.read_bytes())
    if not _common.QUIET:
        print(f"wrote {', '.join(f.name for f in files)} to {output}/", file=sys.stderr)

