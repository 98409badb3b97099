"""`biogpt classify`: document labels.

Two kinds of model, told apart by the model's config: a fine-tuned causal LM with a generative
task (`--task hoc`: generate `the type of this document is ...` and parse it), or a
sequence-classification model (trained with `biogpt train classify`: its head's labels, with a
probability each). A document longer than the model's positions is classified in overlapping
windows whose probabilities are averaged (documented, never silent).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import typer

from .. import _options as opts
from .._options import RunFlags
from .._common import UserError, provenance
from .._taskrun import decoding_options, default_model, fine_tune_hint, generate_in_batches, get_task, load_task_model, model_card

logger = logging.getLogger(__name__)


CLASSIFY_TASKS = ("hoc",)


def generative_task(task_name: str | None, model_name: str | None, card: tuple[list[str], dict[str, Any]]) -> Any:
    """The generative task to run, or a UserError saying what to pass. Without --task a model
    must record a classify task: any other causal LM would quietly generate HoC gibberish."""
    architectures, recipe = card
    stored = str(recipe["task"]) if recipe.get("task") else None
    if "BioGptForTokenClassification" in architectures:
        raise UserError(f"-m {model_name}: a token-classification (NER) model; tag entities with `biogpt tag -m {model_name}`")
    if model_name is None:
        task = get_task(task_name or "hoc", CLASSIFY_TASKS, command="classify")
        default_model(task)  # none is published for hoc: one line saying what to pass as -m
        return task
    if task_name is not None:
        return get_task(task_name, CLASSIFY_TASKS, command="classify")
    if stored in CLASSIFY_TASKS:
        return get_task(stored, CLASSIFY_TASKS, command="classify")
    what = f"was fine-tuned for {stored}" if stored else "is not a classification model and records no task"
    raise UserError(f"-m {model_name} {what}: pass -m a model trained with `biogpt train classify`, "
                    f"or --task hoc with {fine_tune_hint('hoc')}")


@opts.RUN_FLAGS()
def classify(
    inputs: Optional[list[str]] = opts.INPUTS,
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="hoc: a generative fine-tuned causal LM (default: the task -m MODEL records)."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="A classification model (`biogpt train classify`) or a fine-tuned causal LM: directory, hub id or fairseq folder (no default)."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Multi-label heads: probability to assign a label."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = opts.TEXT_KEY,
    id_key: Optional[str] = opts.ID_KEY,
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl or tsv."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    num_beams: Optional[int] = opts.NUM_BEAMS,
    max_new_tokens: Optional[int] = opts.MAX_NEW_TOKENS,
    batch_size: int = opts.BATCH_SIZE,
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Label documents: --task hoc with a generative model, or a classification-head model.

    Example: biogpt classify --task hoc -m DC-HoC-BioGPT/ sentences.txt
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob, Prepared, prepare_all
    from ..heads import classify_with_head, load_head
    from ..io import BadRecord, ReadOptions, Record, read_inputs

    if model_name is None and task_name is None:
        raise UserError("pass -m MODEL (a classification model) or --task hoc with -m a fine-tuned causal LM")
    card = model_card(model_name)
    task = None if "BioGptForSequenceClassification" in card[0] else generative_task(task_name, model_name, card)
    job = BatchJob.start("classify", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    device, dtype = job.device(), flags.dtype
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=ReadOptions(text_key, id_key)), limit)

    def record(result: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
        if output_format == "tsv":
            return [{"id": result["id"], "labels": "|".join(result["labels"])}]
        return [{**result, "provenance": meta}]

    if task is None:  # a classification head: one forward pass per document (windows if long)
        from biogpt.model import BioGptForSequenceClassification

        model, tokenizer = load_head(BioGptForSequenceClassification, model_name, device=device, dtype=dtype)
        job.open(output_format, allowed=("jsonl", "tsv"))
        head_meta = provenance(model, model_name, threshold=threshold)

        def render_head(item: Record) -> list[dict[str, Any]] | BadRecord:
            if not item.text.strip():
                return BadRecord(item.location or item.id, "empty document", item.id)
            return record({"id": item.id, **classify_with_head(model, tokenizer, item.text, threshold=threshold)}, head_meta)

        job.write_all(items, render_head)
        return
    from biogpt.tasks.runner import SourceCuts, encode_source

    name, model, tokenizer, recipe = load_task_model(task, model_name, device=device, dtype=dtype)
    decoding = decoding_options(num_beams, max_new_tokens)
    room = model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens)
    job.open(output_format, allowed=("jsonl", "tsv"))
    meta = provenance(model, name, task=task.name, prompt=recipe.to_dict(), decoding=decoding)

    def render(result: tuple[Prepared, Any]) -> list[dict[str, Any]]:
        prepared, generated = result
        parsed = task.parse(generated.output)
        return record({"id": prepared.item.id, "labels": [] if parsed.failed else parsed.value, "output": generated.output, "failed": parsed.failed}, meta)

    def encode(item: Record) -> list[int]:
        return encode_source(tokenizer, task.source_for_document(text=item.text), recipe, limit=max(room, 8), cuts=cuts)

    cuts = SourceCuts()  # one warning for the run, not one per long document
    results = generate_in_batches(prepare_all(items, encode), model=model, tokenizer=tokenizer, task=task, decoding=decoding,
                                  batch_size=batch_size, max_tokens=max_tokens, constrained=False)
    job.write_all(results, render)
    cuts.report("documents")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
