"""The task endpoints: POST /v1/extract-relations, /v1/qa, /v1/tag, /v1/classify.

Each calls the CLI command's own function, so that a record here is the record the command
writes: extract-relations → commands.extract_relations.relations_record, qa →
commands.qa.answer_question, tag → heads.tag_document, classify → heads.classify_document or
the generative task's parse. An endpoint checks its request and states how one record is answered;
`_answer` runs the records, one at a time alone with the model, within the request's time limit.

`long_documents` (the CLI's --long-documents, biogpt_cli.longdocs) says how a document longer
than the model is read: the same units (`plan_units`), the same merge of relations
(`merge_relations` through the command's `merged_record`), the same QA rule (`pick_answer`
through `answer_question`), the same head rules (`heads.tag_document`, `classify_document`).
A generative document read in units gives the model back between its units.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import torch

from .context import Context
from .errors import ApiError
from .models import ServedModel
from .schemas import ClassifyRequest, Document, QaRequest, RelationsRequest, TagRequest

Answer = dict[str, Any]  # one record's answer, as the command writes it (less its provenance)
# how one record is answered: a function, or a generator function that yields after each unit
# of a long document (each stretch between yields runs alone with the model) and returns the answer
Run = Callable[[Any], Answer | Generator[None, None, Answer]]


async def extract_relations(ctx: Context, body: RelationsRequest) -> dict[str, Any]:
    from ..commands.extract_relations import merged_record, relations_record

    served = ctx.pick(body.model)
    _need_kind(served, "causal-lm", "/v1/extract-relations", "a causal LM fine-tuned for relation extraction")
    ctx.accepting()
    task = _relation_task(served, body.task)
    if body.entities is not None:
        if task.name != "bc5cdr":
            raise ApiError(400, "entities applies to task bc5cdr.", param="entities")
        if not all(isinstance(body.entities.get(k), dict) for k in ("chemical2id", "disease2id")):
            raise ApiError(400, 'entities: expected {"chemical2id": {name: MeSH}, "disease2id": {...}}.', param="entities")
    records = _records(body.input)
    generation = _Generation.of(served, task, num_beams=body.num_beams, max_new_tokens=body.max_new_tokens)

    reading = generation.units()

    def run(record: Any) -> Generator[None, None, Answer]:
        units = reading.plan(record, body.long_documents)
        results = yield from _each_unit(units, lambda unit: (unit, (None, generation.output(
            reading.source(record, unit.kind, unit.text), constrained=body.constrained))))
        with torch.inference_mode():
            if len(units) == 1 and units[0].kind == "document":  # today's record, unchanged
                return relations_record(task, record, results[0][1][1], model=served.model, tokenizer=served.tokenizer, entities=body.entities)
            return merged_record(task, record, results, model=served.model, tokenizer=served.tokenizer, entities=body.entities)

    decoding = {"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens, **generation.decoding}
    return await _answer(ctx, served, records, run, task=task.name, provenance={
        "task": task.name, "constrained": body.constrained, "decoding": decoding, "prompt": generation.recipe.to_dict(),
        "long_documents": body.long_documents})


async def answer_questions(ctx: Context, body: QaRequest) -> dict[str, Any]:
    from ..commands.qa import answer_question
    from ..io import Record

    served = ctx.pick(body.model)
    _need_kind(served, "causal-lm", "/v1/qa", "a causal LM fine-tuned for PubMedQA")
    ctx.accepting()
    task = _task(body.task or "pubmedqa", ("pubmedqa",), "/v1/qa")
    recipe = _recipe(served, task)
    questions = body.input if isinstance(body.input, list) else [body.input]
    if not questions:
        raise ApiError(400, "input is an empty list.", param="input")
    records = []
    for i, q in enumerate(questions):
        if not q.question.strip():
            raise ApiError(400, f"input {i}: empty question.", param="input")
        records.append(Record(q.id or f"input:{i + 1}", q.question, {"context": q.context, "long_answer": q.long_answer}))

    def run(record: Any) -> Answer:
        return answer_question(task, served.model, served.tokenizer, recipe, record, context_key="context",
                               long_answer_key="long_answer", setting=body.setting, generate=body.generate,
                               long_documents=body.long_documents)

    return await _answer(ctx, served, records, run, task=task.name, provenance={
        "task": "pubmedqa", "setting": body.setting or recipe.setting or "reasoning-required", "prompt": recipe.to_dict(),
        "long_documents": body.long_documents})


async def tag(ctx: Context, body: TagRequest) -> dict[str, Any]:
    from ..documents import passages_of
    from ..heads import tag_document

    served = ctx.pick(body.model)
    _need_kind(served, "token-classification", "/v1/tag", "trained with `biogpt train ner`")
    ctx.accepting()
    records = _records(body.input)

    def run(record: Any) -> Answer:
        entities = tag_document(served.model, served.tokenizer, record.text, passages_of(record), mode=body.long_documents)
        return {"id": record.id, "entities": entities}

    return await _answer(ctx, served, records, run, provenance={"long_documents": body.long_documents})


async def classify(ctx: Context, body: ClassifyRequest) -> dict[str, Any]:
    from ..commands.classify import CLASSIFY_TASKS

    served = ctx.pick(body.model)
    ctx.accepting()
    records = _records(body.input)
    if served.kind == "sequence-classification":
        return await _classify_with_head(ctx, served, records, body)
    name = body.task or served.task or _stored_recipe(served).get("task")
    if served.kind != "causal-lm" or name is None or str(name) not in CLASSIFY_TASKS and body.task is None:
        raise ApiError(400, f"/v1/classify needs a sequence-classification model (trained with `biogpt train classify`) or a causal "
                            f"LM fine-tuned for {', '.join(CLASSIFY_TASKS)} (pass task); {served.name} is a {served.kind} model"
                            + ("" if served.kind != "causal-lm" else " that records no classification task") + ".",
                       param="model", code="wrong_model_kind")
    return await _classify_generative(ctx, served, _task(str(name), CLASSIFY_TASKS, "/v1/classify"), records, body)


async def _classify_with_head(ctx: Context, served: ServedModel, records: list[Any], body: ClassifyRequest) -> dict[str, Any]:
    from ..documents import passages_of
    from ..heads import classify_document

    for param in ("task", "num_beams", "max_new_tokens"):
        if getattr(body, param) is not None:
            raise ApiError(400, f"{param} applies to a generative classifier; {served.name} is a classification head.", param=param)

    def run(record: Any) -> Answer:
        return {"id": record.id, **classify_document(served.model, served.tokenizer, record.text, passages_of(record),
                                                     mode=body.long_documents, threshold=body.threshold)}

    return await _answer(ctx, served, records, run, provenance={"threshold": body.threshold, "long_documents": body.long_documents})


async def _classify_generative(ctx: Context, served: ServedModel, task: Any, records: list[Any], body: ClassifyRequest) -> dict[str, Any]:
    """commands/classify.py's generative path: generate the task's sentence and parse it (a
    long document: per unit, labels aggregated by heads.aggregate_labels, any unit's label)."""
    from ..heads import aggregate_labels

    generation = _Generation.of(served, task, num_beams=body.num_beams, max_new_tokens=body.max_new_tokens)
    reading = generation.units()

    def parsed_of(record: Any, unit: Any) -> dict[str, Any]:
        generated = generation.output(reading.source(record, unit.kind, unit.text))
        parsed = task.parse(generated.output)
        return {"labels": [] if parsed.failed else parsed.value, "output": generated.output, "failed": parsed.failed}

    def run(record: Any) -> Generator[None, None, Answer]:
        units = reading.plan(record, body.long_documents)
        per_unit = yield from _each_unit(units, lambda unit: parsed_of(record, unit))
        if len(units) == 1 and units[0].kind == "document":  # today's record, unchanged
            return {"id": record.id, **per_unit[0]}
        merged = aggregate_labels(per_unit, multi_label=True)
        return {"id": record.id, "labels": merged["labels"], "output": "\n".join(u["output"] for u in per_unit),
                "failed": all(u["failed"] for u in per_unit), "units": merged["units"], "label_support": merged["label_support"]}

    return await _answer(ctx, served, records, run, task=task.name, provenance={
        "task": task.name, "prompt": generation.recipe.to_dict(), "decoding": generation.decoding, "long_documents": body.long_documents})


# ---------------------------------------------------------------------------- shared
async def _answer(ctx: Context, served: ServedModel, records: list[Any], run: Run, *,
                  provenance: dict[str, Any] | None = None, task: str | None = None) -> dict[str, Any]:
    """`run` on each record alone with the model, each answer with the model's provenance; the
    request's time limit bounds them all (a record, or a unit of a long one, not yet run when
    it passes never runs)."""
    from .._common import provenance as provenance_of

    async with ctx.time_limit():
        # the first call hashes the weight files (fixed at start): off the event loop
        meta = await ctx.run_model(served, lambda: provenance_of(served.model, served.name, **(provenance or {})))
        # one record (or unit) per turn: decode steps of the running completions go on between them
        data = [{**await _run_record(ctx, served, run, r), "provenance": meta} for r in records]
    return {"object": "list", "model": served.name, **({"task": task} if task is not None else {}), "data": data}


async def _run_record(ctx: Context, served: ServedModel, run: Run, record: Any) -> Answer:
    """One record's answer; a generator `run` runs one stretch (between its yields) per turn."""
    if not inspect.isgeneratorfunction(run):
        return await ctx.run_model(served, lambda: run(record))
    steps = run(record)  # makes the generator: nothing runs before the first turn
    while True:
        done, answer = await ctx.run_model(served, lambda: _step(steps))
        if done:
            return answer


def _each_unit(units: list[Any], run: Callable[[Any], Any]) -> Generator[None, None, list[Any]]:
    """`run` on each unit in order, yielding between units: the model goes back to the running
    completions between them (a `Run` generator's stretches, see `_run_record`)."""
    results: list[Any] = []
    for unit in units:
        if results:
            yield
        results.append(run(unit))
    return results


def _step(steps: Generator[None, None, Answer]) -> tuple[bool, Answer | None]:
    try:
        next(steps)
    except StopIteration as stop:
        return True, stop.value
    return False, None


@dataclass(frozen=True)
class _Generation:
    """A generative task's prompt recipe and decoding for one request (the CLI's, with the
    request's num_beams / max_new_tokens over the task's)."""

    served: ServedModel
    task: Any
    recipe: Any
    decoding: dict[str, Any]

    @classmethod
    def of(cls, served: ServedModel, task: Any, *, num_beams: int | None, max_new_tokens: int | None) -> _Generation:
        from .._taskrun import decoding_options

        return cls(served, task, _recipe(served, task), decoding_options(num_beams, max_new_tokens))

    @property
    def room(self) -> int:
        """The source tokens one input may hold: the model's positions less the generation's."""
        return max(self.served.max_positions - self.decoding.get("max_new_tokens", self.task.decoding.max_new_tokens), 8)

    def units(self) -> Any:
        """How this task reads a long document (longdocs.TaskUnits), as the commands read it."""
        from ..longdocs import TaskUnits

        return TaskUnits(self.task, self.served.tokenizer, self.recipe, room=self.room)

    def output(self, source: str, **options: Any) -> Any:
        """The task's generated output for `source` (call it alone with the model)."""
        from biogpt.tasks.runner import encode_source, generate_outputs

        model, tokenizer = self.served.model, self.served.tokenizer
        with torch.inference_mode():
            ids = encode_source(tokenizer, source, self.recipe, limit=self.room)
            return generate_outputs(model, tokenizer, [ids], task=self.task, decoding=self.decoding, **options)[0]


def _records(value: Any) -> list[Any]:
    """One document or a list as the CLI's Records (title + abstract joined as biogpt.io does)."""
    from ..io import Record, document_text

    items = value if isinstance(value, list) else [value]
    if not items:
        raise ApiError(400, "input is an empty list.", param="input")
    records = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            record = Record(f"input:{i + 1}", item)
        else:
            assert isinstance(item, Document)
            text = item.text if item.text is not None else document_text(item.title or "", item.abstract or "")
            fields: dict[str, Any] = {k: v for k, v in (("title", item.title), ("abstract", item.abstract)) if v is not None}
            if item.passages is not None:
                fields["passages"] = _passages(text, item.passages, f"input[{i}]" if isinstance(value, list) else "input")
            record = Record(item.id or f"input:{i + 1}", text, fields)
        if not record.text.strip():
            raise ApiError(400, f"input {i} has no text.", param="input")
        records.append(record)
    return records


def _passages(text: str, passages: list[Any], field: str) -> list[dict[str, Any]]:
    """A request document's passages as the readers give them, each checked against the text
    (in order, not overlapping, its text at its offset): a 400 names the first that is not."""
    out: list[dict[str, Any]] = []
    end = 0
    for j, passage in enumerate(passages):
        where = f"{field}.passages[{j}]"
        if passage.offset < end:
            raise ApiError(400, f"{where}.offset {passage.offset}: passages must be in order and not overlap "
                                f"(the previous one ends at {end}).", param="input")
        if text[passage.offset : passage.offset + len(passage.text)] != passage.text:
            raise ApiError(400, f"{where}.offset {passage.offset}: the document text there is not the passage's text "
                                f"(offsets count Unicode code points in the document's text).", param="input")
        out.append(passage.model_dump())
        end = passage.offset + len(passage.text)
    return out


def _need_kind(served: ServedModel, kind: str, endpoint: str, how: str) -> None:
    if served.kind != kind:
        raise ApiError(400, f"{endpoint} needs a {kind} model ({how}); {served.name} is a {served.kind} model.",
                       param="model", code="wrong_model_kind")


def _stored_recipe(served: ServedModel) -> dict[str, Any]:
    from biogpt.tasks.runner import RECIPE_KEY

    stored = (getattr(served.model.config, "extra", {}) or {}).get(RECIPE_KEY)
    return stored if isinstance(stored, dict) else {}


def _task(name: str, accepted: tuple[str, ...], endpoint: str) -> Any:
    from biogpt.tasks import TaskDataError, get_task

    try:
        task = get_task(name)
    except TaskDataError:
        task = None
    if task is None or task.name not in accepted:
        raise ApiError(400, f"task {name!r} is not a task of {endpoint}; expected one of {', '.join(accepted)}.", param="task")
    return task


def _recipe(served: ServedModel, task: Any) -> Any:
    """The prompt recipe as `_taskrun.load_task_model` reads it (the hub checkpoint's setting)."""
    from biogpt.tasks.runner import read_recipe

    from .._taskrun import HUB_CHECKPOINTS

    recipe = read_recipe(served.model, served.tokenizer, task)
    if recipe.setting is None and served.name in HUB_CHECKPOINTS.get(task.name, ())[:1]:
        recipe.setting = HUB_CHECKPOINTS[task.name][1]
    return recipe


def _relation_task(served: ServedModel, name: str | None) -> Any:
    """The request's task, else the model's recorded one (commands.extract_relations.resolve_task)."""
    from ..commands.extract_relations import RE_TASKS

    stored = _stored_recipe(served)
    name = name or served.task or (str(stored["task"]) if stored.get("task") else None)
    if not name:
        raise ApiError(400, f"task is required ({', '.join(RE_TASKS)}): {served.name} records no task.", param="task")
    task = _task(name, RE_TASKS, "/v1/extract-relations")
    if task.name == "custom":
        from biogpt.tasks import TaskDataError
        from biogpt.tasks.custom import CustomRelationTask

        template = stored.get("template")
        if not template:
            raise ApiError(400, f"task custom needs a model trained with `biogpt train re --template ...`; {served.name} has no template.",
                           param="task")
        try:
            task = CustomRelationTask(template)
        except TaskDataError as exc:
            raise ApiError(400, f"{served.name}: {exc}", param="task") from None
    return task
