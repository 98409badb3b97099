"""`biogpt generate`: text continuation from prompts given as flags, a file, or stdin.

Data goes to stdout (or -o FILE), logs and progress to stderr. With one prompt and a terminal
on stdout, text is streamed as it is generated.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import _options as opts

if TYPE_CHECKING:
    from biogpt.model.generation import GenerationConfig

from .. import _common
from .._common import DEFAULT_MODEL, UserError, load_causal_lm, progress, provenance
from ..batching import limited, run_in_batches, run_windows
from ..io import BadRecord, Item, ReadOptions, Record, make_writer, read_inputs
from ..runstate import RunState

logger = logging.getLogger(__name__)


def truncate_prompt(ids: list[int], limit: int) -> list[int]:
    """Keep the leading </s> and the last tokens: a continuation depends on the nearest context."""
    if len(ids) <= limit:
        return ids
    return ids[:1] + ids[len(ids) - (limit - 1) :]


@dataclass
class Prepared:
    record: Record
    ids: list[int]


def prepare(item: Item, tokenizer, limit: int, max_new_tokens: int, max_positions: int) -> Prepared | BadRecord:
    """Tokenize a prompt once; an over-long one keeps its last tokens, with a warning (never silent)."""
    if isinstance(item, BadRecord):
        return item
    if not item.text.strip():
        return BadRecord(item.location or item.id, "empty document", item.id)
    ids = tokenizer(item.text)["input_ids"]
    if len(ids) > limit:
        logger.warning(
            "%s: prompt of %d tokens truncated to its last %d so that %d new tokens fit in %d positions",
            item.id, len(ids), limit, max_new_tokens, max_positions,
        )
        ids = truncate_prompt(ids, limit)
    return Prepared(item, ids)


def generate_records(
    items: Iterable[Item],
    *,
    model,
    tokenizer,
    options: GenerationConfig,
    batch_size: int = 8,
    max_tokens: int | None = None,
    streamer=None,
) -> Iterator[list[dict[str, Any]] | BadRecord]:
    """Per input item, in input order: the list of its outputs (one per returned sequence), or
    the BadRecord that explains why there is none. Greedy decoding runs with continuous batching
    (`batch_size` rows, each refilled as it ends); other options in length-sorted batches."""
    import torch

    limit = model.config.max_position_embeddings - options.max_new_tokens
    if limit < 2:
        raise UserError(
            f"--max-new-tokens {options.max_new_tokens} leaves no room for a prompt "
            f"(max_position_embeddings {model.config.max_position_embeddings})"
        )
    pad = tokenizer.pad_token_id
    eos = model.config.eos_token_id
    n = options.num_return_sequences

    def record(prepared: Prepared, sequence: int, tokens: list[int], seconds: float) -> dict[str, Any]:
        return {
            "id": prepared.record.id,
            "sequence": sequence,
            "prompt": prepared.record.text,
            "generated": tokenizer.decode(tokens, skip_special_tokens=True),
            "text": tokenizer.decode(prepared.ids + tokens, skip_special_tokens=True),
            "new_tokens": len(tokens),
            "tokens_per_second": round(len(tokens) / seconds, 2) if seconds > 0 else None,
        }

    def run(batch: list[Prepared]) -> list[list[dict[str, Any]]]:
        width = max(len(p.ids) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p.ids)) + p.ids for p in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in batch], device=model.device)
        start = time.perf_counter()
        out = model.generate(input_ids, attention_mask=mask, streamer=streamer, generation_config=options)
        seconds = time.perf_counter() - start
        results: list[list[dict[str, Any]]] = [[] for _ in batch]
        for i, row in enumerate(out[:, width:].tolist()):
            tokens = row[: row.index(eos) + 1] if eos in row else [t for t in row if t != pad]
            results[i // n].append(record(batch[i // n], i % n, tokens, seconds))
        return results

    def run_window(window: list[Prepared]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Continuous batching: each row is refilled with the next prompt as soon as it ends."""
        from biogpt.model.continuous import generate_continuous

        for done in generate_continuous(
            model,
            [p.ids for p in window],
            rows=batch_size,
            max_new_tokens=options.max_new_tokens,
            min_new_tokens=options.min_new_tokens or 0,
            eos_token_id=options.eos_token_id,
            pad_token_id=pad,
            max_prefill_tokens=max_tokens,
        ):
            yield done.index, [record(window[done.index], 0, done.tokens, done.seconds)]

    prepared = (
        prepare(item, tokenizer, limit, options.max_new_tokens, model.config.max_position_embeddings) for item in items
    )
    passthrough = lambda p: p if isinstance(p, BadRecord) else None  # noqa: E731
    if streamer is None and continuous_applies(options):
        yield from run_windows(prepared, run_window, passthrough=passthrough, window=max(batch_size * 32, 256))
        return
    yield from run_in_batches(
        prepared,
        run,
        length=lambda p: len(p.ids),
        passthrough=passthrough,
        batch_size=batch_size,
        max_tokens=max_tokens,
    )


def continuous_applies(options: "GenerationConfig") -> bool:
    """Plain greedy decoding (no beams, sampling or history-dependent processors) runs with
    continuous batching; its outputs are those of static batches."""
    return (
        options.num_beams == 1
        and not options.do_sample
        and options.num_return_sequences == 1
        and options.repetition_penalty == 1.0
        and not options.no_repeat_ngram_size
        and options.bad_words_ids is None
        and (options.max_new_tokens or 0) >= 1
        # the refill engine attends over spans that change as it runs: a compiled step would
        # recompile for each; compiled steps decode in static batches
        and not options.compile_step
    )


def generate(
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="A prompt (repeatable)."),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i", help="File or folder of prompts (repeatable); - for stdin."),
    input_format: str = typer.Option("auto", "--input-format", help="auto, lines, paragraphs, jsonl, pubtator, bioc-json, bioc-xml, pubmed-xml."),
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
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Prompts decoded at once (greedy: rows refilled as each ends)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget of one batch or refill (padded prompt tokens)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N prompts (quick trials)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Skip failing documents instead of stopping; count them."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="With --keep-going: write failures here as JSONL."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: weight-only int8 linear layers (fast CPU decoding)."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (one output per line) or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Stream text as it is generated (default: one prompt to a terminal)."),
    compile_step: bool = typer.Option(False, "--compile", help="CUDA: compile the captured decode step (torch.compile): ~16% more tokens/s at batch 1 (H100), after a one-time compilation of 25-30 s per (rows, length) bucket. Prompts then decode in static batches. For long generations."),
    kernels: str = typer.Option("auto", "--kernels", help="CUDA, 1-4 rows: the captured decode step's kernels: auto (the fused Triton layer or torch's, whichever replays faster at the first call), torch or triton."),
    resume: bool = opts.RESUME,
    shard: Optional[str] = opts.SHARD,
) -> None:
    """Continue biomedical text, e.g. biogpt generate --prompt "COVID-19 is"."""
    import torch

    writer_format = output_format
    if output_format not in ("text", "jsonl"):
        raise UserError(f"--format {output_format}: expected text or jsonl")
    if not prompt and not input:
        if sys.stdin.isatty():
            raise UserError("nothing to do: give --prompt TEXT or --input FILE (- for stdin)")
        input = ["-"]
    if prompt and input:
        raise UserError("give either --prompt or --input, not both")
    if do_sample and temperature <= 0:
        raise UserError("--temperature must be > 0 when sampling")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise UserError(f"--num-return-sequences ({num_return_sequences}) must be at most --num-beams ({num_beams})")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise UserError("--num-return-sequences > 1 needs --do-sample or --num-beams")
    if errors is not None and not keep_going:
        raise UserError("--errors needs --keep-going")
    if kernels not in ("auto", "torch", "triton"):
        raise UserError(f"--kernels {kernels}: expected auto, torch or triton")
    if kernels == "triton" and compile_step:
        raise UserError("--kernels triton and --compile exclude each other (torch.compile fuses the step itself)")
    if seed is not None:
        torch.manual_seed(seed)
    from biogpt.model.generation import GenerationConfig

    options = GenerationConfig(
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
        compile_step=compile_step,
        decode_kernels=kernels,
    )
    if prompt:
        items: Iterable[Item] = [Record(f"prompt:{i}", p) for i, p in enumerate(prompt, 1)]
    else:
        items = read_inputs(input or [], input_format=input_format, options=ReadOptions(text_key=text_key, id_key=id_key))
    run = RunState.start(command="generate", output=output, output_format=output_format, inputs=input,
                         resume=resume, shard=shard, force=force, errors=errors)
    items = run.select(limited(items, limit))
    model, tokenizer = load_causal_lm(model_name, device=run.device(device), dtype=dtype, quantize=quantize)
    if compile_step and model.device.type != "cuda":
        logger.warning("--compile applies to the captured decode step on a CUDA device; ignored on %s", model.device.type)
        options.compile_step = False
    if kernels == "triton" and model.device.type != "cuda":
        logger.warning("--kernels triton applies to the captured decode step on a CUDA device; ignored on %s", model.device.type)
        options.decode_kernels = "auto"
    sink = run.open()
    failures = run.failure_log(keep_going=keep_going, errors=errors, force=force)

    streaming = stream
    if streaming is None:
        streaming = bool(prompt) and len(prompt) == 1 and sink is sys.stdout and sys.stdout.isatty()
    streaming = streaming and output_format == "text" and num_beams == 1 and num_return_sequences == 1
    streamer = None
    if streaming:
        from biogpt.model.generation import TextStreamer

        if not prompt or len(prompt) != 1:
            raise UserError("--stream works with a single --prompt")

        def show(piece: str) -> None:
            sink.write(piece)
            sink.flush()

        streamer = TextStreamer(tokenizer, show, skip_prompt=False)

    record_provenance = provenance(model, model_name, options=asdict(options), seed=seed, dtype=str(model.dtype).removeprefix("torch."), quantize=quantize)
    writer = run.adopt(make_writer(writer_format, sink))
    bar = progress(description="generate", quiet=_common.QUIET or streamer is not None)
    written = 0
    try:
        for result in run.track(generate_records(
            items, model=model, tokenizer=tokenizer, options=options,
            batch_size=1 if streamer else batch_size, max_tokens=max_tokens, streamer=streamer,
        )):
            if isinstance(result, BadRecord):
                failures.fail(result.location, result.message, result.id)
                continue
            for output_record in result:
                if streamer is not None:
                    sink.write("\n")
                    sink.flush()
                elif writer_format == "jsonl":
                    writer.write({**output_record, "provenance": record_provenance})
                else:
                    writer.write(output_record)
                written += 1
            bar.advance()
    finally:
        bar.close()
        failures.close()
        if sink is not sys.stdout:
            sink.close()
    run.finish()
    if failures.count:
        logger.warning("%d outputs written, %d documents failed", written, failures.count)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
