"""`biogpt classify`: document labels.

Two kinds of model, told apart by the model's config: a fine-tuned causal LM with a generative
task (`--task hoc`: generate `the type of this document is ...` and parse it), or a
sequence-classification model (trained with `biogpt train classify`: its head's labels, with a
probability each).

A long document is read by --long-documents (biogpt_cli.longdocs): under `auto` a title/abstract
or plain-text document that fits the model is classified whole (today's record), anything else
by passages, each unit classified alone and the labels aggregated per document
(heads.aggregate_labels): multi-label heads and HoC assign a label when any unit assigns it,
single-label heads take the label with the highest mean probability; the record adds `units`
and `label_support` (and, with probabilities, `scores_mean` and `scores_max`).
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
    include: Optional[str] = opts.INCLUDE,
    sections: Optional[str] = opts.SECTIONS,
    long_documents: str = opts.LONG_DOCUMENTS,
    num_beams: Optional[int] = opts.NUM_BEAMS,
    max_new_tokens: Optional[int] = opts.MAX_NEW_TOKENS,
    batch_size: int = opts.BATCH_SIZE,
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Label documents: --task hoc with a generative model, or a classification-head model.

    --long-documents: auto classifies a title/abstract or plain-text document that fits the
    model whole, anything else by passages; passages classifies each unit (title + abstract,
    then each passage, a long one split at sentences) alone and aggregates: multi-label heads
    and hoc assign a label when any unit assigns it (scores: each label's highest unit
    probability), single-label heads take the label with the highest mean probability (scores:
    the means); the record adds units, label_support (units per label) and, for heads,
    scores_mean and scores_max. windows (heads: overlapping windows over the whole text,
    probabilities averaged; hoc: token windows aggregated as passages) and truncate (the first
    window; hoc: the official input cut with '...') read the whole text as one.

    \b
    Example: biogpt classify --task hoc -m DC-HoC-BioGPT/ sentences.txt
    Example: biogpt classify -m cls-run/model-best PMC/ --long-documents passages
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob, Prepared
    from ..documents import passage_options
    from ..heads import aggregate_labels, classify_documents, load_head
    from ..io import BadRecord, ReadOptions, Record, read_inputs
    from ..longdocs import MODES, TaskUnits, UnitItem, by_document

    if long_documents not in MODES:
        raise UserError(f"--long-documents {long_documents}: expected {', '.join(MODES)}")
    read_options = ReadOptions(text_key, id_key, **passage_options(include, sections))
    if model_name is None and task_name is None:
        raise UserError("pass -m MODEL (a classification model) or --task hoc with -m a fine-tuned causal LM")
    card = model_card(model_name)
    task = None if "BioGptForSequenceClassification" in card[0] else generative_task(task_name, model_name, card)
    job = BatchJob.start("classify", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    device, dtype = job.device(), flags.dtype
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=read_options), limit)

    def record(result: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
        if output_format == "tsv":
            return [{"id": result["id"], "labels": "|".join(result["labels"])}]
        return [{**result, "provenance": meta}]

    if task is None:  # a classification head: the inputs (units, windows) of many documents share batches
        from biogpt.model import BioGptForSequenceClassification

        model, tokenizer = load_head(BioGptForSequenceClassification, model_name, device=device, dtype=dtype)
        job.open(output_format, allowed=("jsonl", "tsv"))
        head_meta = provenance(model, model_name, threshold=threshold, long_documents=long_documents)

        def documents(stream: Any) -> Any:
            """The documents to classify; an empty one is a bad record (nothing to label)."""
            for item in stream:
                empty = not isinstance(item, BadRecord) and not item.text.strip()
                yield BadRecord(item.location or item.id, "empty document", item.id) if empty else item

        def render_head(result: tuple[Record, dict[str, Any]]) -> list[dict[str, Any]]:
            item, labels = result
            return record({"id": item.id, **labels}, head_meta)

        results = classify_documents(model, tokenizer, documents(items), mode=long_documents, threshold=threshold,
                                     batch_size=batch_size, max_tokens=max_tokens)
        job.write_all(results, render_head)
        return
    from biogpt.tasks.runner import SourceCuts, encode_source

    name, model, tokenizer, recipe = load_task_model(task, model_name, device=device, dtype=dtype)
    decoding = decoding_options(num_beams, max_new_tokens)
    room = max(model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens), 8)
    job.open(output_format, allowed=("jsonl", "tsv"))
    meta = provenance(model, name, task=task.name, prompt=recipe.to_dict(), decoding=decoding, long_documents=long_documents)

    reading = TaskUnits(task, tokenizer, recipe, room=room)

    def prepare(stream: Any) -> Any:
        """Every unit of every document, in order: the units of many documents share batches."""
        for item in stream:
            if isinstance(item, BadRecord):
                yield item
            elif not item.text.strip():
                yield BadRecord(item.location or item.id, "empty document", item.id)
            else:
                units = reading.plan(item, long_documents)
                for n, unit in enumerate(units):
                    source = reading.source(item, unit.kind, unit.text)
                    yield Prepared(UnitItem(item, unit, source, last=n == len(units) - 1),
                                   encode_source(tokenizer, source, recipe, limit=room, cuts=cuts))

    def parsed_of(generated: Any) -> dict[str, Any]:
        parsed = task.parse(generated.output)
        return {"labels": [] if parsed.failed else parsed.value, "output": generated.output, "failed": parsed.failed}

    def render(result: tuple[Record, list[tuple[Any, tuple[Prepared, Any]]]]) -> list[dict[str, Any]]:
        item, results = result
        if len(results) == 1 and results[0][0].kind == "document":  # today's record, unchanged
            return record({"id": item.id, **parsed_of(results[0][1][1])}, meta)
        per_unit = [parsed_of(generated) for _, (_, generated) in results]
        merged = aggregate_labels(per_unit, multi_label=True)  # HoC's hallmarks: a document may have several
        return record({"id": item.id, "labels": merged["labels"], "output": "\n".join(u["output"] for u in per_unit),
                       "failed": all(u["failed"] for u in per_unit), "units": merged["units"],
                       "label_support": merged["label_support"]}, meta)

    cuts = SourceCuts()  # one warning for the run, not one per long document
    results = generate_in_batches(prepare(items), model=model, tokenizer=tokenizer, task=task, decoding=decoding,
                                  batch_size=batch_size, max_tokens=max_tokens, constrained=False)
    unit_of = lambda result: None if isinstance(result, BadRecord) else result[0].item  # noqa: E731
    job.write_all(by_document(results, unit_of), render)
    cuts.report("model inputs")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
