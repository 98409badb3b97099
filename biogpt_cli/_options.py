"""Typer options shared by the batch commands: one definition (flag, default, help) each, so
every command spells and documents them the same way."""

from __future__ import annotations

import typer

DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
DTYPE = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")
FORCE = typer.Option(False, "--force", help="Overwrite an existing --output file.")
KEEP_GOING = typer.Option(False, "--keep-going", help="Skip failing documents instead of stopping; count them.")
ERRORS = typer.Option(None, "--errors", help="With --keep-going: write failures here as JSONL.")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted run with -o FILE (same input and options).")
SHARD = typer.Option(
    None, "--shard", help="i/N: process only input items k with k % N == i, into FILE.part-i-of-N (then `biogpt merge`)."
)
