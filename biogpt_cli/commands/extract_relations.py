"""`biogpt extract-relations --task bc5cdr|kd-dti|ddi`: relation triples from documents.

    cat abstracts.jsonl | biogpt extract-relations --task bc5cdr -m MODEL > triples.jsonl

Each output record: the document id, its relations (head, tail, relation; each entity with its
character spans in the input text, found case-insensitively, and a `found` flag), a probability
per relation (the model's probability of the generated clause), and the raw output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import typer

from .. import _options as opts
from .._options import RunFlags
from .._common import UserError, provenance
from .._taskrun import decoding_options, generate_in_batches, get_task, load_task_model, model_card

logger = logging.getLogger(__name__)
RE_TASKS = ("bc5cdr", "kd-dti", "ddi", "custom")


def resolve_task(task_name: str | None, model_name: str | None) -> Any:
    """--task, else the task the model was fine-tuned for; `custom` models carry their template."""
    stored = model_card(model_name)[1]
    if task_name is None:
        if not stored.get("task"):
            raise UserError(f"--task is required ({', '.join(RE_TASKS)}): the model stores no task")
        if str(stored["task"]) not in RE_TASKS:
            raise UserError(f"-m {model_name} was fine-tuned for {stored['task']}, not relation extraction; "
                            f"pass --task ({', '.join(RE_TASKS)}) with a model fine-tuned for it")
        task_name = str(stored["task"])
    task = get_task(task_name, RE_TASKS, command="extract-relations")
    if task.name == "custom":
        from biogpt.tasks import TaskDataError
        from biogpt.tasks.custom import CustomRelationTask

        template = stored.get("template")
        if not template:
            raise UserError("--task custom needs -m MODEL trained with `biogpt train re --template ...`")
        try:
            task = CustomRelationTask(template)
        except TaskDataError as exc:
            raise UserError(f"{model_name}: {exc}") from None
    return task


def load_entities(path: Path | None) -> dict[str, dict[str, str]] | None:
    if path is None:
        return None
    from biogpt.tasks.base import read_json  # the one JSON file reader: gzip, the error names the file

    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("chemical2id", "disease2id")):
        raise UserError(f"--entities {path}: expected {{\"chemical2id\": {{name: MeSH}}, \"disease2id\": {{...}}}}")
    return {"chemical2id": data["chemical2id"], "disease2id": data["disease2id"]}


def relations_record(task: Any, record: Any, generated: Any, *, model: Any, tokenizer: Any, entities: dict | None) -> dict[str, Any]:
    """Parse one output into grounded, scored relations."""
    from biogpt.tasks import Example
    from biogpt.tasks.runner import clause_probabilities, ground

    def parse(text: str):
        if task.name == "bc5cdr":
            maps = entities or {"chemical2id": {}, "disease2id": {}}
            return task.parse(text, Example(record.id, "", "", frozenset(), meta={"entities": maps}))
        return task.parse(text)

    prediction = parse(generated.output)
    scores: dict[tuple, float] = {}
    for piece, probability in clause_probabilities(model, tokenizer, generated, separators=(";",)):
        for rel in task.relations(parse(piece)):
            scores.setdefault((rel["head"], rel["tail"], rel["relation"]), probability)
    relations = []
    for rel in task.relations(prediction):
        (head_text, head_spans), (tail_text, tail_spans) = ground(record.text, rel["head"]), ground(record.text, rel["tail"])
        # `text` is the document's surface form (text[start:end] for every span); `name` is what
        # the model generated (Moses-detokenized, lower-cased by the recipe)
        head = {"text": head_text, "name": rel["head"], "spans": head_spans, "found": bool(head_spans)}
        tail = {"text": tail_text, "name": rel["tail"], "spans": tail_spans, "found": bool(tail_spans)}
        if entities is not None and "head_id" in rel:
            head["id"], tail["id"] = rel["head_id"], rel["tail_id"]
        relations.append(
            {"head": head, "tail": tail, "relation": rel["relation"], "score": scores.get((rel["head"], rel["tail"], rel["relation"]))}
        )
    return {"id": record.id, "relations": relations, "output": generated.output, "failed": prediction.failed}


def pubtator_record(task: Any, record: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Mentions (every found span) and, for BC5CDR with --entities, CID lines: a CID line names
    MeSH ids, which only the --entities map gives (a relation with an unmapped name has none)."""
    from biogpt.tasks.pubtator import title_abstract_lines

    title, abstract, shift = title_abstract_lines(record.text, record.fields.get("title"), record.fields.get("abstract"))
    entities, relations, seen = [], [], set()
    head_role, tail_role = task.relation_roles
    for rel in result["relations"]:
        for ent, role in ((rel["head"], head_role), (rel["tail"], tail_role)):
            for start, end in ent["spans"]:
                if (start, end, role) not in seen:
                    seen.add((start, end, role))
                    entities.append({"start": start + shift, "end": end + shift, "text": record.text[start:end], "label": role, "id": ent.get("id", "")})
        if task.name == "bc5cdr" and rel["head"].get("id", "-1") != "-1" and rel["tail"].get("id", "-1") != "-1":
            relations.append({"type": "CID", "head": rel["head"]["id"], "tail": rel["tail"]["id"]})
    entities.sort(key=lambda e: (e["start"], e["end"]))
    return {"id": record.id, "title": title, "abstract": abstract, "entities": entities, "relations": relations}


@opts.RUN_FLAGS()
def extract_relations(
    inputs: Optional[list[str]] = opts.INPUTS,
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="bc5cdr, kd-dti, ddi or custom (default: the task -m MODEL was fine-tuned for)."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="A fine-tuned model: directory, hub id or fairseq folder (no default: none is published on the hub)."),
    entities_file: Optional[Path] = typer.Option(None, "--entities", help="BC5CDR: name→MeSH JSON (e.g. test.entities.json) for MeSH ids (default: none, no ids)."),
    constrained: bool = typer.Option(False, "--constrained", help="Entity names may only be copied from the document."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = opts.TEXT_KEY,
    id_key: Optional[str] = opts.ID_KEY,
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl, tsv or pubtator (bc5cdr: mention lines, and CID lines of MeSH ids with --entities)."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    num_beams: Optional[int] = opts.NUM_BEAMS,
    max_new_tokens: Optional[int] = opts.MAX_NEW_TOKENS,
    batch_size: int = opts.BATCH_SIZE,
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Extract relation triples (BC5CDR chemical-disease, KD-DTI drug-target, DDI drug-drug).

    Example: cat abstracts.jsonl | biogpt extract-relations --task bc5cdr -m RE-BC5CDR-BioGPT/ > triples.jsonl
    """
    from biogpt.tasks.runner import SourceCuts, encode_source

    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob, Prepared, prepare_all
    from ..io import ReadOptions, Record, read_inputs

    task = resolve_task(task_name, model_name)
    if output_format == "pubtator" and task.name != "bc5cdr":
        raise UserError("--format pubtator is for --task bc5cdr (CID relations)")
    entities = load_entities(entities_file)
    if entities is not None and task.name != "bc5cdr":
        raise UserError("--entities applies to --task bc5cdr")
    if output_format == "pubtator" and entities is None:
        logger.warning("--format pubtator without --entities: no CID lines (they name MeSH ids; pass --entities NAME2MESH.json)")
    job = BatchJob.start("extract-relations", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=ReadOptions(text_key, id_key)), limit)
    name, model, tokenizer, recipe = load_task_model(task, model_name, device=job.device(), dtype=flags.dtype)
    decoding = decoding_options(num_beams, max_new_tokens)
    room = model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens)

    def encode(item: Record) -> list[int]:
        source = task.source_for_document(text=item.text, title=item.fields.get("title"), abstract=item.fields.get("abstract"))
        return encode_source(tokenizer, source, recipe, limit=max(room, 8), cuts=cuts)

    cuts = SourceCuts()  # one warning for the run, not one per long document

    job.open(output_format, allowed=("jsonl", "tsv", "pubtator"))
    meta = provenance(model, name, task=task.name, constrained=constrained, decoding={**{"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens}, **decoding}, prompt=recipe.to_dict())
    unmapped = 0  # pubtator: relations left without a CID line (a name missing from --entities)

    def render(result: tuple[Prepared, Any]) -> list[dict[str, Any]]:
        nonlocal unmapped
        prepared, generated = result
        record = relations_record(task, prepared.item, generated, model=model, tokenizer=tokenizer, entities=entities)
        if output_format == "jsonl":
            return [{**record, "provenance": meta}]
        if output_format == "tsv":
            rows = [
                {"id": record["id"], "head": r["head"]["text"], "tail": r["tail"]["text"], "relation": r["relation"],
                 "score": r["score"], "head_found": r["head"]["found"], "tail_found": r["tail"]["found"]}
                for r in record["relations"]
            ]
            return [{"rows": rows}] if rows else []
        out = pubtator_record(task, prepared.item, record)
        if entities is not None:
            unmapped += len(record["relations"]) - len(out["relations"])
        return [out]

    results = generate_in_batches(prepare_all(items, encode), model=model, tokenizer=tokenizer, task=task, decoding=decoding,
                                  batch_size=batch_size, max_tokens=max_tokens, constrained=constrained)
    job.write_all(results, render)  # it sums up the skipped documents
    cuts.report("documents")
    if unmapped:
        logger.warning("%d relations have a name missing from --entities: no CID line for them", unmapped)


def register(app: typer.Typer) -> None:
    app.command("extract-relations")(extract_relations)
