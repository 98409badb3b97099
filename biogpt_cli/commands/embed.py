"""`biogpt embed`: one vector per document, the mean of the model's last hidden states over the
document's tokens (biogpt.serve.embeddings, the vectors `biogpt serve` answers /v1/embeddings with).

JSONL (`{"id", "embedding", "provenance"}` per document, stdout or -o FILE) is a batch command's
output like any other: --resume, --shard and --keep-going apply. `-o FILE.npy` writes one float32
array (documents × hidden size), rows in input order; it has no ids, so every document must embed
(no --keep-going) and it is written at once (no --resume or --shard).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import DEFAULT_MODEL
from .. import _options as opts
from .._common import UserError, load_causal_lm, provenance
from .._options import RunFlags

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ..batchjob import Prepared
    from ..io import BadRecord, Item


def embed_items(items: Iterable[Item], *, model: Any, tokenizer: Any, batch_size: int = 8, max_tokens: int | None = None) -> Iterator[tuple[Any, Any] | BadRecord]:
    """Per input item, in input order: (the item, its float32 vector), or the BadRecord saying
    why there is none (unreadable, empty, longer than the model's positions). Documents run in
    length-sorted batches of at most `batch_size` documents and `max_tokens` padded tokens."""
    from biogpt.serve.embeddings import embed_ids

    from ..batchjob import prepare_all, run_prepared
    from ..io import BadRecord

    limit = model.config.max_position_embeddings

    def fitting(prepared: Iterable[Prepared | BadRecord]) -> Iterator[Prepared | BadRecord]:
        for p in prepared:
            if not isinstance(p, BadRecord) and len(p.input_ids) > limit:
                # an embedding of the first `limit` tokens would stand for a text it never saw
                yield BadRecord(p.item.location or p.item.id, f"{len(p.input_ids)} tokens, more than the model's {limit} positions", p.item.id)
            else:
                yield p

    def run(batch: list[Prepared]) -> list[tuple[Any, Any]]:
        vectors = embed_ids(model, [p.input_ids for p in batch])
        return [(p.item, vector) for p, vector in zip(batch, vectors)]

    prepared = fitting(prepare_all(items, lambda item: tokenizer(item.text)["input_ids"]))
    yield from run_prepared(prepared, static=run, continuous=None, batch_size=batch_size, max_tokens=max_tokens)


def check_npy_flags(flags: RunFlags) -> None:
    """The batch flags a .npy output cannot honour, refused before any model loads."""
    from ..runstate import shard_of

    if flags.keep_going or flags.errors is not None:
        raise UserError("-o FILE.npy has no ids, so a skipped document would shift every row after it: "
                        "write JSONL (-o FILE.jsonl) to use --keep-going")
    if flags.resume:
        raise UserError("--resume needs a JSONL output; a .npy file is written at once")
    if flags.shard is not None or shard_of(None) is not None:
        raise UserError("sharded runs (--shard or torchrun) need a JSONL output; a .npy file is written at once")


def write_npy(output: Path, results: Iterable[tuple[Any, Any] | BadRecord], *, hidden_size: int) -> int:
    """Every vector, in order, as one (n, hidden) float32 array in `output` (written atomically,
    so a stopped run leaves no half file); the first failed document stops the run."""
    import numpy as np
    import torch

    from biogpt.model.files import atomic_file

    from .._common import DocumentError
    from ..io import BadRecord

    rows = []
    for result in results:
        if isinstance(result, BadRecord):
            raise DocumentError(f"{result.location}: {result.message} (a .npy output needs every document; write JSONL with --keep-going to skip it)")
        rows.append(result[1])
    array = torch.stack(rows).numpy() if rows else np.zeros((0, hidden_size), dtype=np.float32)
    with atomic_file(output, binary=True) as fh:
        np.save(fh, array)
    return len(rows)


@opts.RUN_FLAGS()
def embed(
    inputs: Optional[list[str]] = opts.INPUTS,
    model_name: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local directory, hub id, or fairseq directory of a causal LM."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = opts.TEXT_KEY,
    id_key: Optional[str] = opts.ID_KEY,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE: FILE.npy is one float32 array (documents × hidden size, in input order), any other name JSONL (default: JSONL on stdout)."),
    force: bool = opts.FORCE,
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Documents embedded at once."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget of one batch, in padded tokens (default: no budget, -b decides)."),
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Embed documents: the mean of the last hidden states over each document's tokens.

    \b
    Example: biogpt embed abstracts.jsonl -o vectors.jsonl
    Example: biogpt embed sentences.txt -m microsoft/biogpt -o vectors.npy
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from .._common import check_output_path, inputs_or_stdin
    from ..batching import limited
    from ..batchjob import BatchJob
    from ..io import ReadOptions, read_inputs

    read_options = ReadOptions(text_key, id_key)
    if output is not None and output.suffix.lower() == ".npy":
        check_npy_flags(flags)
        check_output_path(output, force=force)
        inputs = inputs_or_stdin(inputs, command="embed")
        model, tokenizer = load_causal_lm(model_name, device=flags.device, dtype=flags.dtype)
        items = limited(read_inputs(inputs, input_format=input_format, options=read_options), limit)
        write_npy(output, embed_items(items, model=model, tokenizer=tokenizer, batch_size=batch_size, max_tokens=max_tokens),
                  hidden_size=model.config.hidden_size)
        return

    job = BatchJob.start("embed", flags, inputs=inputs, output=output, output_format="jsonl", force=force)
    model, tokenizer = load_causal_lm(model_name, device=job.device(), dtype=flags.dtype)
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=read_options), limit)
    job.open("jsonl")
    meta = provenance(model, model_name, dtype=str(model.dtype).removeprefix("torch."), pooling="mean")

    def render(result: tuple[Any, Any]) -> list[dict[str, Any]]:
        item, vector = result
        return [{"id": item.id, "embedding": vector.tolist(), "provenance": meta}]

    job.write_all(embed_items(items, model=model, tokenizer=tokenizer, batch_size=batch_size, max_tokens=max_tokens), render)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
