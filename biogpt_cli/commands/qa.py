"""`biogpt qa`: yes / no / maybe answers to biomedical questions (PubMedQA's format).

The answer comes from scoring the three candidate target continuations with the model in one
batched forward pass (a probability for each answer, summing to 1) — more robust than parsing
free text; `--generate` adds the raw greedy output too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import _options as opts
from .._options import RunFlags
from .._common import UserError, provenance
from .._taskrun import get_task, load_task_model

if TYPE_CHECKING:
    from ..io import Record

logger = logging.getLogger(__name__)


def _is_reasoning_free(setting: str | None) -> bool:
    from biogpt.tasks.base import TaskDataError
    from biogpt.tasks.pubmedqa import normalize_setting

    try:
        return normalize_setting(setting) == "reasoning-free"
    except TaskDataError:  # an unknown setting is reported where the prompt is built
        return False


def context_document(context: str | list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A question's context as a document: its parts (a list context: PubMedQA's labelled
    abstract sections) joined by one space as the recipe joins them, each part a "text"
    passage at its offset."""
    parts = [context] if isinstance(context, str) else [str(part) for part in context]
    text, passages = "", []
    for part in (" ".join(str(part).split()) for part in parts):
        if not part:
            continue
        text += " " if text else ""
        passages.append({"type": "text", "section": "", "section_type": "other", "offset": len(text), "text": part})
        text += part
    return text, passages


def answer_question(
    task: Any, model: Any, tokenizer: Any, recipe: Any, record: Record, *, context_key: str, long_answer_key: str,
    setting: str | None, generate: bool, long_documents: str = "auto",
) -> dict[str, Any]:
    """The answer, with a probability per label. A context too long for the model is read in
    units (--long-documents): each unit answers on its own and the most confident one decides
    (longdocs.pick_answer): its label and probabilities are the record's, `evidence` says
    where it stands in the context and `units` how many were read."""
    from biogpt.tasks.runner import candidate_probabilities, encode_source, generate_outputs, source_cap

    from ..longdocs import Budget, pick_answer, plan_units

    context = record.fields.get(context_key, record.fields.get("CONTEXTS"))
    if context is None:
        raise ValueError(f"no {context_key!r} field")
    long_answer = str(record.fields.get(long_answer_key, record.fields.get("LONG_ANSWER", "")) or "")

    def source_of(part: str | list[Any]) -> str:
        return task.source_for_question(record.text, part, long_answer=long_answer, setting=setting or recipe.setting)

    def tokens(source: str) -> int:
        return len(tokenizer(source, add_special_tokens=False)["input_ids"])

    room = model.config.max_position_embeddings - 24
    cap = source_cap(recipe, limit=room) or room
    around = tokens(source_of(""))  # the question, the long answer and the prompt's words
    text, passages = context_document(context)
    budget = Budget(max(cap - around, 8), lambda part: tokens(source_of(part)) - around)
    # an empty context has no passage to read: today's input, whatever the mode
    units = plan_units(text, passages, mode=long_documents if passages else "truncate", budget=budget, fits=lambda: tokens(source_of(context)) <= cap)
    labels, targets = zip(*task.answer_candidates())
    answers, inputs = [], []
    for unit in units:
        input_ids = encode_source(tokenizer, source_of(context if unit.kind == "document" else unit.text), recipe, limit=room)
        answers.append(dict(zip(labels, candidate_probabilities(model, tokenizer, input_ids, targets))))
        inputs.append(input_ids)
    chosen = pick_answer(answers)
    probs = answers[chosen]
    out: dict[str, Any] = {
        "id": record.id,
        "question": record.text,
        "answer": max(labels, key=lambda label: probs[label]),
        "probabilities": {label: round(p, 6) for label, p in probs.items()},
    }
    if len(units) > 1 or units[0].kind != "document":
        out["evidence"] = units[chosen].describe()
        out["units"] = len(units)
    if generate:
        generated = generate_outputs(model, tokenizer, [inputs[chosen]], task=task, decoding={})[0]
        parsed = task.parse(generated.output)
        out["output"] = generated.output
        out["generated_answer"] = None if parsed.failed else parsed.value
    return out


@opts.RUN_FLAGS()
def qa(
    inputs: Optional[list[str]] = typer.Argument(None, show_default=False, help="JSONL files or folders with question and context fields, plain or gzip; - for stdin (default: stdin when piped)."),
    # no -q: that is --quiet, before any command (README, "Options")
    question: Optional[str] = typer.Option(None, "--question", help="One question, with --context, instead of INPUTS (default: read INPUTS)."),
    context: Optional[str] = typer.Option(None, "--context", "-c", help="The context (abstract) of --question (no default: required with it)."),
    long_answer: str = typer.Option("", "--long-answer", show_default=False, help="reasoning-free setting: the long answer of --question (default: none)."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="Default: microsoft/BioGPT-Large-PubMedQA (reasoning-free)."),
    setting: Optional[str] = typer.Option(None, "--setting", help="reasoning-required or reasoning-free (default: the model's recipe)."),
    generate: bool = typer.Option(False, "--generate", help="Also generate greedily and report the raw output."),
    question_key: str = typer.Option("question", "--question-key", help="JSONL field with the question."),
    context_key: str = typer.Option("context", "--context-key", help="JSONL field with the context (string or list)."),
    long_answer_key: str = typer.Option("long_answer", "--long-answer-key", help="JSONL field with the long answer."),
    id_key: Optional[str] = opts.ID_KEY,
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl or tsv."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    long_documents: str = opts.LONG_DOCUMENTS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Answer yes/no/maybe questions about an abstract, with a probability for each answer.

    A context too long for the model (--long-documents) is read in units; each unit answers and
    the most confident one (the highest probability of its best label) gives the answer and the
    probabilities, its place in the context under `evidence`.

    \b
    Example: biogpt qa --question "Do statins reduce mortality?" --context "..."
    Example: biogpt qa questions.jsonl -o answers.jsonl
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob
    from ..io import BadRecord, ReadOptions, Record, read_inputs

    from ..longdocs import MODES

    if long_documents not in MODES:
        raise UserError(f"--long-documents {long_documents}: expected {', '.join(MODES)}")
    task = get_task("pubmedqa")
    if setting is not None and setting not in ("reasoning-required", "reasoning-free"):
        raise UserError(f"--setting {setting}: expected reasoning-required or reasoning-free")
    if (question is None) != (context is None):
        raise UserError("--question and --context go together")
    if question is not None and inputs:
        raise UserError("give either --question/--context or input files, not both")
    job = BatchJob.start("qa", flags, inputs=None if question is not None else inputs, output=output, output_format=output_format,
                         force=force, stdin_hint=None if question is not None else ", or give --question and --context")
    if question is not None:
        items: Any = [Record("question:1", question, {context_key: context, long_answer_key: long_answer})]
    else:
        items = read_inputs(job.inputs, input_format="jsonl", options=ReadOptions(question_key, id_key, text_flag="--question-key"))
    items = job.select(items, limit)
    name, model, tokenizer, recipe = load_task_model(task, model_name, device=job.device(), dtype=flags.dtype)
    job.open(output_format, allowed=("jsonl", "tsv"))
    meta = provenance(model, name, task="pubmedqa", setting=setting or recipe.setting or "reasoning-required", prompt=recipe.to_dict(),
                      long_documents=long_documents)
    # reasoning-free models were fine-tuned with each question's long answer in the input;
    # without one the prompt ends "answer: ." and the answers degrade: said once per run
    warn_missing_long_answer = _is_reasoning_free(setting or recipe.setting)

    def render(item: Record) -> list[dict[str, Any]] | BadRecord:
        nonlocal warn_missing_long_answer
        if not item.text.strip():
            return BadRecord(item.location or item.id, "empty question", item.id)
        if warn_missing_long_answer and not (item.fields.get(long_answer_key) or item.fields.get("LONG_ANSWER")):
            logger.warning("%s: no long answer (--long-answer, or the %r field) in the reasoning-free setting, "
                           "whose model was fine-tuned with one; answers without it are less reliable", item.location or item.id, long_answer_key)
            warn_missing_long_answer = False
        try:
            result = answer_question(task, model, tokenizer, recipe, item, context_key=context_key,
                                     long_answer_key=long_answer_key, setting=setting, generate=generate, long_documents=long_documents)
        except ValueError as exc:
            return BadRecord(item.location or item.id, f"{exc}; pass --context-key", item.id)
        if output_format == "tsv":
            kept = {k: v for k, v in result.items() if k not in ("probabilities", "evidence", "units")}
            return [kept | {f"p_{k}": v for k, v in result["probabilities"].items()}]
        return [{**result, "provenance": meta}]

    job.write_all(items, render)


def register(app: typer.Typer) -> None:
    app.command("qa")(qa)
