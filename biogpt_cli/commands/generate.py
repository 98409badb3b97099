"""`biogpt generate`: text continuation from prompts given as flags, a file, or stdin.

Data goes to stdout (or -o FILE), logs and progress to stderr. With one prompt and a terminal
on stdout, text is streamed as it is generated.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from .. import __version__
from .._common import DEFAULT_MODEL, UserError, load_causal_lm, open_output
from ..io import ReadOptions, Record, read_records

logger = logging.getLogger(__name__)


@dataclass
class DecodingOptions:
    max_new_tokens: int = 64
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_return_sequences: int = 1

    def as_kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


def truncate_prompt(ids: list[int], limit: int) -> list[int]:
    """Keep the leading </s> and the last tokens: a continuation depends on the nearest context."""
    if len(ids) <= limit:
        return ids
    return ids[:1] + ids[len(ids) - (limit - 1) :]


def generate_records(
    records: Iterable[Record],
    *,
    model,
    tokenizer,
    options: DecodingOptions,
    batch_size: int = 8,
    streamer=None,
) -> Iterator[dict[str, Any]]:
    """Generate for each record, in input order; yields one output dict per returned sequence."""
    import torch

    limit = model.config.max_position_embeddings - options.max_new_tokens
    if limit < 2:
        raise UserError(
            f"--max-new-tokens {options.max_new_tokens} leaves no room for a prompt "
            f"(max_position_embeddings {model.config.max_position_embeddings})"
        )
    batch: list[Record] = []

    def run(batch: list[Record]) -> Iterator[dict[str, Any]]:
        encoded = []
        for rec in batch:
            ids = tokenizer(rec.text)["input_ids"]
            if len(ids) > limit:
                logger.warning(
                    "%s: prompt of %d tokens truncated to its last %d so that %d new tokens fit in %d positions",
                    rec.id, len(ids), limit, options.max_new_tokens, model.config.max_position_embeddings,
                )
                ids = truncate_prompt(ids, limit)
            encoded.append(ids)
        width = max(len(ids) for ids in encoded)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=model.device)
        start = time.perf_counter()
        out = model.generate(input_ids, attention_mask=mask, streamer=streamer, **options.as_kwargs())
        seconds = time.perf_counter() - start
        new = out[:, width:]
        n = options.num_return_sequences
        eos = model.config.eos_token_id
        for i, row in enumerate(new.tolist()):
            rec = batch[i // n]
            tokens = row
            for j, t in enumerate(row):
                if t == eos:
                    tokens = row[: j + 1]
                    break
            else:
                tokens = [t for t in row if t != pad] if pad in row else row
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            yield {
                "id": rec.id,
                "sequence": i % n,
                "prompt": rec.text,
                "generated": text,
                "text": tokenizer.decode(encoded[i // n] + tokens, skip_special_tokens=True),
                "new_tokens": len(tokens),
                "tokens_per_second": round(len(tokens) / seconds, 2) if seconds > 0 else None,
            }

    for rec in records:
        batch.append(rec)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def generate(
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="A prompt (repeatable)."),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="File of prompts (one per line, or JSONL); - for stdin."),
    input_format: str = typer.Option("auto", "--input-format", help="auto, lines or jsonl."),
    text_key: str = typer.Option("text", "--text-key", help="JSONL field holding the prompt."),
    id_key: Optional[str] = typer.Option(None, "--id-key", help="JSONL field holding the record id."),
    model_name: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local directory, hub id, or fairseq directory."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=0, help="Tokens to generate per prompt."),
    min_new_tokens: Optional[int] = typer.Option(None, "--min-new-tokens", min=0, help="Forbid EOS before this many new tokens."),
    num_beams: int = typer.Option(1, "--num-beams", min=1, help="Beam search width (1: greedy or sampling)."),
    do_sample: bool = typer.Option(False, "--do-sample", help="Sample instead of picking the most likely token."),
    top_k: int = typer.Option(50, "--top-k", min=0, help="Sampling: keep the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Sampling: nucleus probability mass."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="Sampling temperature (> 0)."),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", min=0.0, help="Penalty for tokens already present."),
    no_repeat_ngram_size: int = typer.Option(0, "--no-repeat-ngram-size", min=0, help="Never repeat an n-gram of this size."),
    num_return_sequences: int = typer.Option(1, "--num-return-sequences", min=1, help="Outputs per prompt (≤ beams, or with sampling)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (sampling is reproducible with it)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Prompts per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (one output per line) or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Stream text as it is generated (default: one prompt to a terminal)."),
) -> None:
    """Continue biomedical text, e.g. biogpt generate --prompt "COVID-19 is"."""
    import torch

    if output_format not in ("text", "jsonl"):
        raise UserError(f"--format {output_format}: expected text or jsonl")
    if not prompt and input is None:
        if sys.stdin.isatty():
            raise UserError("nothing to do: give --prompt TEXT or --input FILE (- for stdin)")
        input = "-"
    if prompt and input is not None:
        raise UserError("give either --prompt or --input, not both")
    if do_sample and temperature <= 0:
        raise UserError("--temperature must be > 0 when sampling")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise UserError(f"--num-return-sequences ({num_return_sequences}) must be at most --num-beams ({num_beams})")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise UserError("--num-return-sequences > 1 needs --do-sample or --num-beams")
    if seed is not None:
        torch.manual_seed(seed)
    options = DecodingOptions(
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=do_sample,
        num_beams=num_beams,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        num_return_sequences=num_return_sequences,
    )
    sink = open_output(output, force=force)
    if prompt:
        records: Iterable[Record] = [Record(f"prompt:{i}", p) for i, p in enumerate(prompt, 1)]
    else:
        assert input is not None
        records = read_records(input, input_format=input_format, options=ReadOptions(text_key=text_key, id_key=id_key))
    model, tokenizer = load_causal_lm(model_name, device=device, dtype=dtype)

    streaming = stream
    if streaming is None:
        streaming = bool(prompt) and len(prompt) == 1 and sink is sys.stdout and sys.stdout.isatty()
    streaming = streaming and output_format == "text" and num_beams == 1 and num_return_sequences == 1
    streamer = None
    if streaming:
        from model.generation import TextStreamer

        if not prompt or len(prompt) != 1:
            raise UserError("--stream works with a single --prompt")

        def show(piece: str) -> None:
            sink.write(piece)
            sink.flush()

        streamer = TextStreamer(tokenizer, show, skip_prompt=False)

    provenance = {"tool": f"biogpt-cli {__version__}", "model": model_name, "options": options.as_kwargs(), "seed": seed}
    try:
        for result in generate_records(
            records, model=model, tokenizer=tokenizer, options=options, batch_size=1 if streamer else batch_size, streamer=streamer
        ):
            if streamer is not None:
                sink.write("\n")
            elif output_format == "jsonl":
                sink.write(json.dumps({**result, "provenance": provenance}, ensure_ascii=False) + "\n")
            else:
                sink.write(result["text"] + "\n")
            sink.flush()
    finally:
        if sink is not sys.stdout:
            sink.close()


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
