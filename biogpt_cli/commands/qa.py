"""`biogpt qa`: yes / no / maybe answers to biomedical questions (PubMedQA's format).

The answer comes from scoring the three candidate target continuations with the model in one
batched forward pass (a probability for each answer, summing to 1) — more robust than parsing
free text; `--generate` adds the raw greedy output too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import _options as opts
from .._options import RunFlags
from .._common import UserError, provenance
from .._taskrun import get_task, load_task_model

if TYPE_CHECKING:
    from ..documents import BadRecord
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


@dataclass(frozen=True)
class UnitInput:
    """One unit's model input (the prompt before the answer), as `heads.run_documents` carries
    a reading: a unit is read in one input."""

    input_ids: list[int]

    def inputs(self) -> list[list[int]]:
        return [self.input_ids]


@dataclass(frozen=True)
class QuestionPlan:
    """What one question needs from the model: a reading per unit of its context."""

    record: Any
    units: list[Any]
    readings: list[UnitInput]


def plan_question(
    task: Any, tokenizer: Any, recipe: Any, record: Record, *, positions: int, context_key: str, long_answer_key: str,
    setting: str | None, long_documents: str = "auto",
) -> QuestionPlan:
    """The units of a question's context (--long-documents) and their prompts. ValueError when
    the record has no context."""
    from biogpt.tasks.runner import encode_source, source_cap

    from ..longdocs import Budget, plan_units

    context = record.fields.get(context_key, record.fields.get("CONTEXTS"))
    if context is None:
        raise ValueError(f"no {context_key!r} field")
    long_answer = str(record.fields.get(long_answer_key, record.fields.get("LONG_ANSWER", "")) or "")

    def source_of(part: str | list[Any]) -> str:
        return task.source_for_question(record.text, part, long_answer=long_answer, setting=setting or recipe.setting)

    def tokens(source: str) -> int:
        return len(tokenizer(source, add_special_tokens=False)["input_ids"])

    room = positions - 24
    cap = source_cap(recipe, limit=room) or room
    around = tokens(source_of(""))  # the question, the long answer and the prompt's words
    text, passages = context_document(context)
    budget = Budget(max(cap - around, 8), lambda part: tokens(source_of(part)) - around)
    # an empty context has no passage to read: today's input, whatever the mode
    units = plan_units(text, passages, mode=long_documents if passages else "truncate", budget=budget, fits=lambda: tokens(source_of(context)) <= cap)
    readings = [UnitInput(encode_source(tokenizer, source_of(context if unit.kind == "document" else unit.text), recipe, limit=room))
                for unit in units]
    return QuestionPlan(record, units, readings)


def answer_of(
    task: Any, model: Any, tokenizer: Any, plan: QuestionPlan, answers: Sequence[Sequence[list[float]]], *, generate: bool
) -> dict[str, Any]:
    """The record of a question from its units' answer probabilities (one list per reading,
    in the order of `task.answer_candidates()`): the most confident unit decides
    (longdocs.pick_answer), `evidence` says where it stands in the context and `units` how many
    were read. `generate` adds the greedy output of the deciding unit's prompt."""
    from biogpt.tasks.runner import generate_outputs

    from ..longdocs import pick_answer

    labels = [label for label, _ in task.answer_candidates()]
    per_unit = [dict(zip(labels, probs[0])) for probs in answers]
    chosen = pick_answer(per_unit)
    probs = per_unit[chosen]
    record, units = plan.record, plan.units
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
        generated = generate_outputs(model, tokenizer, [plan.readings[chosen].input_ids], task=task, decoding={})[0]
        parsed = task.parse(generated.output)
        out["output"] = generated.output
        out["generated_answer"] = None if parsed.failed else parsed.value
    return out


def answer_question(
    task: Any, model: Any, tokenizer: Any, recipe: Any, record: Record, *, context_key: str, long_answer_key: str,
    setting: str | None, generate: bool, long_documents: str = "auto",
) -> dict[str, Any]:
    """The answer, with a probability per label. A context too long for the model is read in
    units (--long-documents), scored together; each unit answers on its own and the most
    confident one decides (see `answer_of`)."""
    from biogpt.tasks.runner import candidate_probabilities_batch

    plan = plan_question(task, tokenizer, recipe, record, positions=model.config.max_position_embeddings, context_key=context_key,
                         long_answer_key=long_answer_key, setting=setting, long_documents=long_documents)
    targets = [target for _, target in task.answer_candidates()]
    scores = candidate_probabilities_batch(model, tokenizer, [r.input_ids for r in plan.readings], targets)
    return answer_of(task, model, tokenizer, plan, [[s] for s in scores], generate=generate)


def answer_questions(
    task: Any, model: Any, tokenizer: Any, recipe: Any, items: Iterable[Any], *, context_key: str, long_answer_key: str,
    setting: str | None, generate: bool, long_documents: str = "auto", batch_size: int = 8, max_tokens: int | None = None,
) -> Iterator[tuple[Record, dict[str, Any]] | BadRecord]:
    """(record, answer record) per question in input order, as `answer_question` answers each,
    the units of many questions sharing length-sorted batches of `batch_size` prompts (a row per
    prompt and candidate answer) and at most `max_tokens` padded prompt tokens. A record without
    a context, and BadRecords, come out as BadRecords in their place."""
    from biogpt.tasks.runner import candidate_probabilities_batch

    from ..documents import BadRecord
    from ..heads import run_documents

    targets = [target for _, target in task.answer_candidates()]
    positions = model.config.max_position_embeddings

    def planned() -> Iterator[tuple[Record, QuestionPlan] | BadRecord]:
        for item in items:
            if isinstance(item, BadRecord):
                yield item
                continue
            try:
                yield item, plan_question(task, tokenizer, recipe, item, positions=positions, context_key=context_key,
                                          long_answer_key=long_answer_key, setting=setting, long_documents=long_documents)
            except ValueError as exc:
                yield BadRecord(item.location or item.id, f"{exc}; pass --context-key", item.id)

    for result in run_documents(planned(), plan=lambda pair: pair[1],
                                run_batch=lambda inputs: candidate_probabilities_batch(model, tokenizer, inputs, targets),
                                combine=lambda plan, answers: answer_of(task, model, tokenizer, plan, answers, generate=generate),
                                batch_size=batch_size, max_tokens=max_tokens):
        yield result if isinstance(result, BadRecord) else (result[0][0], result[1])


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
    batch_size: int = opts.BATCH_SIZE,
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Answer yes/no/maybe questions about an abstract, with a probability for each answer.

    A context too long for the model (--long-documents) is read in units; each unit answers and
    the most confident one (the highest probability of its best label) gives the answer and the
    probabilities, its place in the context under `evidence`. The prompts (questions, units) of
    many questions share length-sorted batches: -b prompts, each scored with the three answers.

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

    def checked(items: Iterable[Record | BadRecord]) -> Iterator[Record | BadRecord]:
        nonlocal warn_missing_long_answer
        for item in items:
            if isinstance(item, BadRecord):  # the reader's: a malformed line
                yield item
                continue
            if not item.text.strip():
                yield BadRecord(item.location or item.id, "empty question", item.id)
                continue
            if warn_missing_long_answer and not (item.fields.get(long_answer_key) or item.fields.get("LONG_ANSWER")):
                logger.warning("%s: no long answer (--long-answer, or the %r field) in the reasoning-free setting, "
                               "whose model was fine-tuned with one; answers without it are less reliable", item.location or item.id, long_answer_key)
                warn_missing_long_answer = False
            yield item

    def render(answered: tuple[Record, dict[str, Any]]) -> list[dict[str, Any]]:
        _, result = answered
        if output_format == "tsv":
            kept = {k: v for k, v in result.items() if k not in ("probabilities", "evidence", "units")}
            return [kept | {f"p_{k}": v for k, v in result["probabilities"].items()}]
        return [{**result, "provenance": meta}]

    job.write_all(answer_questions(task, model, tokenizer, recipe, checked(items), context_key=context_key, long_answer_key=long_answer_key,
                                   setting=setting, generate=generate, long_documents=long_documents, batch_size=batch_size,
                                   max_tokens=max_tokens), render)


def register(app: typer.Typer) -> None:
    app.command("qa")(qa)
