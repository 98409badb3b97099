"""`biogpt classify`: document labels.

Two kinds of model, told apart by the model's config: a fine-tuned causal LM with a generative
task (`--task hoc`: generate `the type of this document is ...` and parse it), or a
sequence-classification model (trained with `biogpt train classify`: its head's labels, with a
probability each). A document longer than the model's positions is classified in overlapping
windows whose probabilities are averaged (documented, never silent).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .. import _options as opts

from .. import _common
from .._common import UserError, inputs_or_stdin, progress, provenance, resolve_device, resolve_dtype
from .._taskrun import (
    Prepared, decoding_options, default_model, fine_tune_hint, generate_in_batches, get_task, load_task_model, model_card,
)
from ..batching import limited
from ..io import BadRecord, Item, ReadOptions, make_writer, read_inputs
from ..runstate import RunState

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


def classify_with_head(model: Any, tokenizer: Any, text: str, *, threshold: float = 0.5) -> dict[str, Any]:
    import torch

    ids = tokenizer(text)["input_ids"]
    size = model.config.max_position_embeddings
    windows = [ids] if len(ids) <= size else [
        ids[:1] + ids[start : start + size - 1] for start in range(1, max(len(ids) - size + 2, 2), (size - 1) // 2)
    ]
    if len(windows) > 1:
        logger.warning("document of %d tokens classified in %d overlapping windows", len(ids), len(windows))
    probs = []
    with torch.inference_mode():
        for w in windows:
            logits = model(torch.tensor([w], device=model.device)).logits[0].float()
            multi = model.config.problem_type == "multi_label_classification"
            probs.append(torch.sigmoid(logits) if multi else torch.softmax(logits, -1))
    p = torch.stack(probs).mean(0)
    labels = model.config.id2label
    if model.config.problem_type == "multi_label_classification":
        chosen = [labels[i] for i in range(len(p)) if p[i] >= threshold]
    else:
        chosen = [labels[int(p.argmax())]]
    return {"labels": chosen, "scores": {labels[i]: round(float(p[i]), 6) for i in range(len(p))}}


def classify(
    inputs: Optional[list[str]] = typer.Argument(None, help="Files or folders of documents (default: stdin)."),
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="hoc: a generative fine-tuned causal LM (default: the task -m MODEL records)."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="A fine-tuned model directory, hub id or fairseq folder."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Multi-label heads: probability to assign a label."),
    input_format: str = typer.Option("auto", "--input-format"),
    text_key: str = typer.Option("text", "--text-key"),
    id_key: Optional[str] = typer.Option(None, "--id-key"),
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl or tsv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
    force: bool = opts.FORCE,
    num_beams: Optional[int] = typer.Option(None, "--num-beams", min=1),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Documents decoded at once (greedy: rows refilled as each ends)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget of one batch or refill (padded prompt tokens)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    keep_going: bool = opts.KEEP_GOING,
    errors: Optional[Path] = opts.ERRORS,
    device: str = opts.DEVICE,
    dtype: str = opts.DTYPE,
    resume: bool = opts.RESUME,
    shard: Optional[str] = opts.SHARD,
) -> None:
    """Label documents: --task hoc with a generative model, or a classification-head model.

    Example: biogpt classify --task hoc -m DC-HoC-BioGPT/ sentences.txt
    """
    if errors is not None and not keep_going:
        raise UserError("--errors needs --keep-going")
    if model_name is None and task_name is None:
        raise UserError("pass -m MODEL (a classification model) or --task hoc with -m a fine-tuned causal LM")
    card = model_card(model_name)
    task = None if "BioGptForSequenceClassification" in card[0] else generative_task(task_name, model_name, card)
    inputs = inputs_or_stdin(inputs, command="classify")
    run = RunState.start(command="classify", output=output, output_format=output_format, inputs=inputs,
                         resume=resume, shard=shard, force=force, errors=errors)
    device = run.device(device)
    items = run.select(limited(read_inputs(inputs, input_format=input_format, options=ReadOptions(text_key, id_key)), limit))
    sink = run.open()
    writer = run.adopt(make_writer(output_format, sink, allowed=("jsonl", "tsv")))
    failures = run.failure_log(keep_going=keep_going, errors=errors, force=force)
    bar = progress(description="classify", quiet=_common.QUIET)
    finished = False  # run.finish() only after the loop completed (its `return` passes the finally)

    def emit(result: dict[str, Any], meta: dict[str, Any]) -> None:
        if output_format == "tsv":
            writer.write({"id": result["id"], "labels": "|".join(result["labels"])})
        else:
            writer.write({**result, "provenance": meta})
        bar.advance()

    try:
        if task is None:
            from biogpt.model import BioGptForSequenceClassification, BioGptTokenizer

            dev = resolve_device(device)
            model = BioGptForSequenceClassification.from_pretrained(model_name, dtype=resolve_dtype(dtype, dev), device=dev)
            tokenizer = BioGptTokenizer.from_pretrained(model_name)
            meta = provenance(model, model_name, threshold=threshold)
            for item in run.track(items):
                if isinstance(item, BadRecord):
                    failures.fail(item.location, item.message, item.id)
                elif not item.text.strip():
                    failures.fail(item.location or item.id, "empty document", item.id)
                else:
                    emit({"id": item.id, **classify_with_head(model, tokenizer, item.text, threshold=threshold)}, meta)
            finished = True
            return
        from biogpt.tasks.runner import encode_source

        name, model, tokenizer, recipe = load_task_model(task, model_name, device=device, dtype=dtype)
        decoding = decoding_options(num_beams, max_new_tokens)
        room = model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens)
        meta = provenance(model, name, task=task.name, prompt=recipe.to_dict(), decoding=decoding)

        def prepare(item: Item) -> Prepared | BadRecord:
            if isinstance(item, BadRecord):
                return item
            if not item.text.strip():
                return BadRecord(item.location or item.id, "empty document", item.id)
            return Prepared(item, encode_source(tokenizer, task.source_for_document(text=item.text), recipe, limit=max(room, 8)))

        for result in run.track(generate_in_batches(
            (prepare(i) for i in items), model=model, tokenizer=tokenizer, task=task, decoding=decoding,
            batch_size=batch_size, max_tokens=max_tokens, constrained=False,
        )):
            if isinstance(result, BadRecord):
                failures.fail(result.location, result.message, result.id)
                continue
            prepared, generated = result
            parsed = task.parse(generated.output)
            emit({"id": prepared.item.id, "labels": [] if parsed.failed else parsed.value, "output": generated.output, "failed": parsed.failed}, meta)
        finished = True
    finally:
        bar.close()
        failures.close()
        if sink is not sys.stdout:
            sink.close()
        if finished:
            run.finish()


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
