"""`biogpt extract-relations --task bc5cdr|kd-dti|ddi`: relation triples from documents.

    cat abstracts.jsonl | biogpt extract-relations --task bc5cdr -m MODEL > triples.jsonl

Each output record: the document id, its relations (head, tail, relation; each entity with its
character spans in the input text, found case-insensitively, and a `found` flag), a probability
per relation (the model's probability of the generated clause), and the raw output.

A document read in several units (--long-documents, biogpt_cli.longdocs: a full-text article)
gives one merged triple per (head, relation, tail), with `support`, `score_mean` and the
`evidence` of every unit that found it; its record adds `units` (each unit's place and output).
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


def mentions_of(task: Any, record: Any, result: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[tuple[int, str]]]]:
    """Every found span of every relation's head and tail once, as {start, end, text, label, id}
    in document offsets sorted by position, and per relation the (mention index, role) of its
    head's and tail's mentions."""
    head_role, tail_role = task.relation_roles
    keys: list[tuple[int, int, str]] = []
    found: dict[tuple[int, int, str], dict[str, Any]] = {}
    for rel in result["relations"]:
        for ent, role in ((rel["head"], head_role), (rel["tail"], tail_role)):
            for start, end in ent["spans"]:
                if (start, end, role) not in found:
                    keys.append((start, end, role))
                    found[(start, end, role)] = {"start": start, "end": end, "text": record.text[start:end], "label": role, "id": ent.get("id", "")}
    order = sorted(keys)
    index = {key: i for i, key in enumerate(order)}
    nodes = [
        [(index[(s, e, role)], role) for ent, role in ((rel["head"], head_role), (rel["tail"], tail_role)) for s, e in ent["spans"]]
        for rel in result["relations"]
    ]
    return [found[key] for key in order], nodes


def pubtator_record(task: Any, record: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Mentions (every found span) and, for BC5CDR with --entities, CID lines: a CID line names
    MeSH ids, which only the --entities map gives (a relation with an unmapped name has none).
    A full-text document (passages after its title and abstract) is written as its title and
    abstract lines with mentions at their document offsets: PubTator has no passages, and the
    text rule puts the title and abstract first, so their offsets are PubTator's."""
    from biogpt.tasks.pubtator import title_abstract_lines

    from ..documents import passages_of
    from ..longdocs import whole_document

    text = record.text
    if not whole_document(passages_of(record)):
        text = text.split("\n\n", 1)[0]  # title + abstract: later passages follow a blank line
    title, abstract, shift = title_abstract_lines(text, record.fields.get("title"), record.fields.get("abstract"))
    mentions, _ = mentions_of(task, record, result)
    entities = [{**m, "start": m["start"] + shift, "end": m["end"] + shift} for m in mentions]
    relations = []
    for rel in result["relations"]:
        if task.name == "bc5cdr" and rel["head"].get("id", "-1") != "-1" and rel["tail"].get("id", "-1") != "-1":
            relations.append({"type": "CID", "head": rel["head"]["id"], "tail": rel["tail"]["id"]})
    entities.sort(key=lambda e: (e["start"], e["end"]))
    return {"id": record.id, "title": title, "abstract": abstract, "entities": entities, "relations": relations}


def bioc_record(task: Any, record: Any, result: dict[str, Any]) -> dict[str, Any]:
    """The document as BioC: its passages, the relations' mentions as annotations and each
    relation as a BioC relation (infons: relation, score, and the merge's score_mean and
    support when it has them) whose nodes are its head's and tail's annotations."""
    from ..bioc import bioc_document
    from ..documents import passages_of

    mentions, nodes = mentions_of(task, record, result)
    relations = []
    for rel, rel_nodes in zip(result["relations"], nodes):
        infons = {"head": rel["head"].get("id") or rel["head"]["name"], "tail": rel["tail"].get("id") or rel["tail"]["name"]}
        infons.update({key: rel[key] for key in ("score", "score_mean", "support") if rel.get(key) is not None})
        relations.append({"type": rel["relation"], "nodes": rel_nodes, "infons": infons})
    meta = record.fields.get("meta") if isinstance(record.fields.get("meta"), dict) else {}
    infons = {key: value for key, value in meta.items() if value is not None}
    return bioc_document(record.id, passages_of(record), mentions=mentions, relations=relations, infons=infons)


def merged_record(task: Any, record: Any, results: list[tuple[Any, Any]], *, model: Any, tokenizer: Any, entities: dict | None) -> dict[str, Any]:
    """A document read in several units: each unit's relations grounded in that unit's text
    (spans moved to document offsets), merged across units (longdocs.merge_relations)."""
    from ..io import Record
    from ..longdocs import merge_relations, shift_relations

    per_unit, units = [], []
    for unit, (_, generated) in results:
        found = relations_record(task, Record(record.id, unit.text, record.fields), generated, model=model, tokenizer=tokenizer, entities=entities)
        per_unit.append((unit, shift_relations(found["relations"], unit.offset)))
        units.append({**unit.describe(), "output": found["output"], "failed": found["failed"]})
    return {"id": record.id, "relations": merge_relations(per_unit), "output": "\n".join(u["output"] for u in units),
            "failed": all(u["failed"] for u in units), "units": units}


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
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl, tsv, pubtator (bc5cdr: mention lines, and CID lines of MeSH ids with --entities), bioc-json or bioc-xml (passages, mentions as annotations, relations)."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    long_documents: str = opts.LONG_DOCUMENTS,
    include: Optional[str] = opts.INCLUDE,
    sections: Optional[str] = opts.SECTIONS,
    min_support: int = opts.MIN_SUPPORT,
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
    from ..batchjob import BatchJob, Prepared
    from ..documents import passage_options
    from ..io import BadRecord, ReadOptions, Record, read_inputs
    from ..longdocs import MODES, TaskUnits, UnitItem, by_document, supported

    if long_documents not in MODES:
        raise UserError(f"--long-documents {long_documents}: expected {', '.join(MODES)}")
    if output_format.startswith("bioc") and flags.shard is not None:
        raise UserError(f"--format {output_format} writes one collection; --shard is for jsonl, tsv and pubtator (merged by `biogpt merge`)")
    task = resolve_task(task_name, model_name)
    if output_format == "pubtator" and task.name != "bc5cdr":
        raise UserError("--format pubtator is for --task bc5cdr (CID relations)")
    entities = load_entities(entities_file)
    if entities is not None and task.name != "bc5cdr":
        raise UserError("--entities applies to --task bc5cdr")
    if output_format == "pubtator" and entities is None:
        logger.warning("--format pubtator without --entities: no CID lines (they name MeSH ids; pass --entities NAME2MESH.json)")
    job = BatchJob.start("extract-relations", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    read_options = ReadOptions(text_key, id_key, **passage_options(include, sections))
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=read_options), limit)
    name, model, tokenizer, recipe = load_task_model(task, model_name, device=job.device(), dtype=flags.dtype)
    decoding = decoding_options(num_beams, max_new_tokens)
    room = max(model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens), 8)
    cuts = SourceCuts()  # one warning for the run, not one per long document

    reading = TaskUnits(task, tokenizer, recipe, room=room)

    def prepare(stream: Any) -> Any:
        """Every unit of every document, in order: the units of many documents share batches."""
        for item in stream:
            if isinstance(item, BadRecord):
                yield item
                continue
            if not item.text.strip():
                yield BadRecord(item.location or item.id, "empty document", item.id)
                continue
            units = reading.plan(item, long_documents)
            if not units:  # every document gives one result: the run's journal counts them
                yield BadRecord(item.location or item.id, "no passage with text", item.id)
            for n, unit in enumerate(units):
                source = reading.source(item, unit.kind, unit.text)
                yield Prepared(UnitItem(item, unit, source, last=n == len(units) - 1), encode_source(tokenizer, source, recipe, limit=room, cuts=cuts))

    job.open(output_format, allowed=("jsonl", "tsv", "pubtator", "bioc-json", "bioc-xml"))
    meta = provenance(model, name, task=task.name, constrained=constrained, decoding={**{"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens}, **decoding},
                      prompt=recipe.to_dict(), long_documents=long_documents)
    unmapped = 0  # pubtator: relations left without a CID line (a name missing from --entities)

    def render(result: tuple[Record, list[tuple[Any, tuple[Prepared, Any]]]]) -> list[dict[str, Any]]:
        nonlocal unmapped
        item, results = result
        if len(results) == 1 and results[0][0].kind == "document":  # today's record, unchanged
            record = relations_record(task, item, results[0][1][1], model=model, tokenizer=tokenizer, entities=entities)
        else:
            record = merged_record(task, item, results, model=model, tokenizer=tokenizer, entities=entities)
        if min_support > 1:
            record["relations"] = supported(record["relations"], min_support)
        if output_format == "jsonl":
            return [{**record, "provenance": meta}]
        if output_format == "tsv":
            rows = [
                {"id": record["id"], "head": r["head"]["text"], "tail": r["tail"]["text"], "relation": r["relation"],
                 "score": r["score"], "head_found": r["head"]["found"], "tail_found": r["tail"]["found"], "support": r.get("support", 1)}
                for r in record["relations"]
            ]
            return [{"rows": rows}] if rows else []
        if output_format.startswith("bioc"):
            return [bioc_record(task, item, record)]
        out = pubtator_record(task, item, record)
        if entities is not None:
            unmapped += len(record["relations"]) - len(out["relations"])
        return [out]

    results = generate_in_batches(prepare(items), model=model, tokenizer=tokenizer, task=task, decoding=decoding,
                                  batch_size=batch_size, max_tokens=max_tokens, constrained=constrained)
    unit_of = lambda result: None if isinstance(result, BadRecord) else result[0].item  # noqa: E731
    job.write_all(by_document(results, unit_of), render)  # it sums up the skipped documents
    cuts.report("model inputs")
    if unmapped:
        logger.warning("%d relations have a name missing from --entities: no CID line for them", unmapped)


def register(app: typer.Typer) -> None:
    app.command("extract-relations")(extract_relations)
