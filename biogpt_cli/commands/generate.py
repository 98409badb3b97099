"""`biogpt generate`: text continuation from prompts given as flags, a file, or stdin.

Data goes to stdout (or -o FILE), logs and progress to stderr. With one prompt and a terminal
on stdout, text is streamed as it is generated.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import DEFAULT_MODEL
from .. import _options as opts
from .._common import UserError, load_causal_lm, provenance

if TYPE_CHECKING:  # the I/O machinery is imported where used: `biogpt --help` loads this module
    from biogpt.model.generation import GenerationConfig

    from ..batchjob import Prepared
    from ..io import BadRecord, Item, Record

logger = logging.getLogger(__name__)


def truncate_prompt(ids: list[int], limit: int) -> list[int]:
    """Keep the leading </s> and the last tokens: a continuation depends on the nearest context."""
    if len(ids) <= limit:
        return ids
    return ids[:1] + ids[len(ids) - (limit - 1) :]


def encode_prompt(item: Record, tokenizer, limit: int, max_new_tokens: int, max_positions: int) -> list[int]:
    """A prompt's ids; an over-long one keeps its last tokens, with a warning (never silent)."""
    ids = tokenizer(item.text)["input_ids"]
    if len(ids) > limit:
        logger.warning(
            "%s: prompt of %d tokens truncated to its last %d so that %d new tokens fit in %d positions",
            item.id, len(ids), limit, max_new_tokens, max_positions,
        )
        ids = truncate_prompt(ids, limit)
    return ids


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

    from ..batchjob import prepare_all, run_prepared

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
            "id": prepared.item.id,
            "sequence": sequence,
            "prompt": prepared.item.text,
            "generated": tokenizer.decode(tokens, skip_special_tokens=True),
            "text": tokenizer.decode(prepared.input_ids + tokens, skip_special_tokens=True),
            "new_tokens": len(tokens),
            "tokens_per_second": round(len(tokens) / seconds, 2) if seconds > 0 else None,
        }

    def run(batch: list[Prepared]) -> list[list[dict[str, Any]]]:
        width = max(len(p.input_ids) for p in batch)
        input_ids = torch.tensor([[pad] * (width - len(p.input_ids)) + p.input_ids for p in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in batch], device=model.device)
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
            [p.input_ids for p in window],
            rows=batch_size,
            max_new_tokens=options.max_new_tokens,
            min_new_tokens=options.min_new_tokens or 0,
            eos_token_id=options.eos_token_id,
            pad_token_id=pad,
            max_prefill_tokens=max_tokens,
        ):
            yield done.index, [record(window[done.index], 0, done.tokens, done.seconds)]

    positions = model.config.max_position_embeddings
    prepared = prepare_all(items, lambda item: encode_prompt(item, tokenizer, limit, options.max_new_tokens, positions))
    continuous = run_window if streamer is None and continuous_applies(options) else None
    yield from run_prepared(prepared, static=run, continuous=continuous, batch_size=batch_size, max_tokens=max_tokens)


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


def check_options(
    *, prompt: list[str] | None, input: list[str] | None, output_format: str, do_sample: bool, temperature: float,
    num_beams: int, num_return_sequences: int, kernels: str, compile_step: bool,
) -> list[str] | None:
    """The combinations of generate's options that cannot run, refused before any model loads;
    returns the inputs (stdin when neither prompts nor inputs are given and stdin is not a terminal)."""
    if output_format not in ("text", "jsonl"):
        raise UserError(f"--format {output_format}: expected text or jsonl")
    if not prompt and not input:
        if sys.stdin.isatty():
            raise UserError("nothing to do: give --prompt TEXT or input FILEs (- for stdin)")
        input = ["-"]
    if prompt and input:
        raise UserError("give either --prompt or input files, not both")
    if do_sample and temperature <= 0:
        raise UserError("--temperature must be > 0 when sampling")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise UserError(f"--num-return-sequences ({num_return_sequences}) must be at most --num-beams ({num_beams})")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise UserError("--num-return-sequences > 1 needs --do-sample or --num-beams")
    if kernels not in ("auto", "torch", "triton"):
        raise UserError(f"--kernels {kernels}: expected auto, torch or triton")
    if kernels == "triton" and compile_step:
        raise UserError("--kernels triton and --compile exclude each other (torch.compile fuses the step itself)")
    return input


@opts.RUN_FLAGS(after={name: "dtype" for name in ("quantize", "output_format", "output", "force", "stream", "compile_step", "kernels")})
def generate(
    inputs: Optional[list[str]] = typer.Argument(None, show_default=False, help="Files or folders of prompts, plain or gzip; - for stdin (default: stdin when piped)."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", show_default=False, help="A prompt given on the command line, repeatable (default: none, INPUTS are read)."),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i", show_default=False, help="Same as INPUTS, kept for older scripts: INPUTS is preferred (default: none)."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = typer.Option("text", "--text-key", help="JSONL: the field holding the prompt (if absent: title + abstract)."),
    id_key: Optional[str] = opts.ID_KEY,
    model_name: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Local directory, hub id, or fairseq directory."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=0, help="Tokens to generate per prompt."),
    min_new_tokens: Optional[int] = typer.Option(None, "--min-new-tokens", min=0, help="Forbid EOS before this many new tokens (default: 0)."),
    num_beams: int = typer.Option(1, "--num-beams", min=1, help="Beam search width (1: greedy or sampling)."),
    do_sample: bool = typer.Option(False, "--do-sample", help="Sample instead of picking the most likely token."),
    top_k: int = typer.Option(50, "--top-k", min=0, help="Sampling: keep the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Sampling: nucleus probability mass."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="Sampling temperature (> 0)."),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", min=0.0, help="Penalty for tokens already present."),
    no_repeat_ngram_size: int = typer.Option(0, "--no-repeat-ngram-size", min=0, help="Never repeat an n-gram of this size."),
    num_return_sequences: int = typer.Option(1, "--num-return-sequences", min=1, help="Outputs per prompt (≤ beams, or with sampling)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed: sampling is reproducible with it (default: none, torch's own)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Prompts decoded at once (greedy: rows refilled as each ends)."),
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N prompts, for quick trials (default: all)."),
    flags: opts.RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here, with these after --dtype:
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: weight-only int8 linear layers, fast CPU decoding (default: none)."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (one output per line) or jsonl."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Stream text as it is generated (default: one prompt to a terminal)."),
    compile_step: bool = typer.Option(False, "--compile", help="CUDA: compile the captured decode step (torch.compile): ~16% more tokens/s at batch 1 (H100), after a one-time compilation of 25-30 s per (rows, length) bucket. Prompts then decode in static batches. For long generations."),
    kernels: str = typer.Option("auto", "--kernels", help="CUDA, 1-4 rows: the captured decode step's kernels: auto (the fused Triton layer or torch's, whichever replays faster at the first call), torch or triton."),
) -> None:
    """Continue biomedical text: prompts from files, stdin or --prompt.

    \b
    Example: biogpt generate --prompt "COVID-19 is" --max-new-tokens 32
    Example: biogpt generate prompts.txt -o continuations.txt
    """
    import torch

    from ..batchjob import BatchJob
    from ..io import ReadOptions, Record, read_inputs

    input = check_options(prompt=prompt, input=[*(inputs or []), *(input or [])], output_format=output_format, do_sample=do_sample, temperature=temperature,
                          num_beams=num_beams, num_return_sequences=num_return_sequences, kernels=kernels, compile_step=compile_step)
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
    job = BatchJob.start("generate", flags, inputs=input, output=output, output_format=output_format, force=force, stdin_hint=None)
    items = job.select(items, limit)
    model, tokenizer = load_causal_lm(model_name, device=job.device(), dtype=flags.dtype, quantize=quantize)
    if compile_step and model.device.type != "cuda":
        logger.warning("--compile applies to the captured decode step on a CUDA device; ignored on %s", model.device.type)
        options.compile_step = False
    if kernels == "triton" and model.device.type != "cuda":
        logger.warning("--kernels triton applies to the captured decode step on a CUDA device; ignored on %s", model.device.type)
        options.decode_kernels = "auto"
    sink = job.open(output_format)

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
    written = 0

    def render(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal written
        written += len(outputs)
        if streamer is not None:  # the text is out already: end its line
            for _ in outputs:
                sink.write("\n")
                sink.flush()
            return []
        if output_format == "jsonl":
            return [{**r, "provenance": record_provenance} for r in outputs]
        return outputs

    results = generate_records(items, model=model, tokenizer=tokenizer, options=options,
                               batch_size=1 if streamer else batch_size, max_tokens=max_tokens, streamer=streamer)
    job.write_all(results, render, show_progress=streamer is None)  # it sums up the skipped documents


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
