"""`biogpt data ...`: convert corpora into the JSONL that `biogpt train` reads.

`ner-from-pubtator`: BioCreative/PubTator documents to `{"id","text","entities"}` lines, text =
title + " " + abstract (the text PubTator offsets already index), so spans copy over unchanged.
The PubTator file is read by the package's one PubTator reader (biogpt.tasks.pubtator), so its
rules hold here as everywhere: gzip or not, a malformed or orphan line is a `file:line` error,
a mention whose offsets do not fit the text is skipped and counted, a repeated pmid keeps its
first copy (one warning each); `--strict` refuses the last two instead.

`passages`: what the readers see, one JSONL line per document: its text and passages (by the
text rule of biogpt_cli.documents) and its ids; failing documents follow --keep-going.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import typer

from .. import _options as opts
from .._common import check_output_path

logger = logging.getLogger(__name__)

data_app = typer.Typer(help="Convert data sets for training. Example: biogpt data ner-from-pubtator CDR_TrainingSet.PubTator.txt -o train.jsonl", no_args_is_help=True)


def ner_records(docs: Iterable[Any], types: Iterable[str] | None = None) -> Iterable[dict[str, Any]]:
    """`{"id","text","entities":[{"start","end","label"}]}` per PubTator document, entities
    sorted by position and, with `types`, only those types."""
    keep = set(types or ())
    for doc in docs:
        entities = sorted(
            ({"start": m.start, "end": m.end, "label": m.type} for m in doc.mentions if not keep or m.type in keep),
            key=lambda e: (e["start"], e["end"]),
        )
        yield {"id": doc.pmid, "text": doc.text, "entities": entities}


def pubtator_to_ner_jsonl(source: str, output: str = "-", *, types: Iterable[str] | None = None, strict: bool = False) -> int:
    """Convert a PubTator file to training JSONL written to `output` (`-` is stdout; a file
    appears only when complete). Returns the number of documents written."""
    from biogpt.model.errors import InputDataError
    from biogpt.model.files import atomic_file
    from biogpt.tasks.pubtator import read_pubtator

    docs = read_pubtator(source, strict=strict)
    if not docs:
        raise InputDataError(f"{source}: no PubTator documents")
    with atomic_file(output) as sink:
        for record in ner_records(docs.values(), types):
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(docs)


@data_app.command("ner-from-pubtator")
def ner_from_pubtator(
    source: str = typer.Argument(..., help="A PubTator file (gzip or not; - for stdin), e.g. CDR_TrainingSet.PubTator.txt."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSONL output file (default: stdout); it appears only when complete."),
    types: Optional[list[str]] = typer.Option(None, "--type", help="Keep only mentions of this type (repeatable), e.g. --type Chemical (default: all types)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse a repeated pmid or a mention whose offsets do not fit the text (default: keep the first copy / skip the mention, with one warning)."),
    force: bool = opts.FORCE,
) -> None:
    """PubTator mentions to {"id","text","entities":[{"start","end","label"}]} JSONL.

    Example: biogpt data ner-from-pubtator CDR_TrainingSet.PubTator.txt -o train.jsonl
    """
    if output is not None:
        check_output_path(output, force=force)
    written = pubtator_to_ner_jsonl(source, str(output) if output is not None else "-", types=types, strict=strict)
    logger.info("%d documents written to %s", written, output or "stdout")


def passage_records(items: Iterable[Any], failures: Any) -> Iterable[dict[str, Any]]:
    """`{"id","text","passages","meta"}` per Record; a BadRecord goes to `failures`
    (a FailureLog: stops the run, or with --keep-going is counted)."""
    from ..documents import passages_of
    from ..io import BadRecord

    for item in items:
        if isinstance(item, BadRecord):
            failures.fail(item.location, item.message, item.id)
            continue
        meta = item.fields.get("meta") if isinstance(item.fields.get("meta"), dict) else {}
        yield {"id": item.id, "text": item.text, "passages": passages_of(item),
               "meta": {k: meta.get(k) for k in ("pmid", "pmcid", "doi")}}


@data_app.command("passages")
def passages(
    inputs: Optional[list[str]] = opts.INPUTS,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSONL output file (default: stdout); it appears only when complete."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = opts.TEXT_KEY,
    id_key: Optional[str] = opts.ID_KEY,
    include: Optional[str] = opts.INCLUDE,
    sections: Optional[str] = opts.SECTIONS,
    keep_going: bool = opts.KEEP_GOING,
    force: bool = opts.FORCE,
) -> None:
    """Documents as passages: {"id","text","passages":[{"type","section","section_type","offset","text"}],"meta"} JSONL.

    Every passage's text is the document text at its offset (Unicode code points).

    \b
    Example: biogpt data passages PMC/ -o passages.jsonl
    Example: biogpt data passages article.nxml --include tables,references --sections methods,results
    """
    from biogpt.model.files import atomic_file

    from .._common import FailureLog, inputs_or_stdin
    from ..documents import passage_options
    from ..io import ReadOptions, read_inputs

    read_options = ReadOptions(text_key, id_key, **passage_options(include, sections))
    if output is not None:
        check_output_path(output, force=force)
    inputs = inputs_or_stdin(inputs, command="data passages")
    failures = FailureLog(keep_going=keep_going)
    written = 0
    with atomic_file(str(output) if output is not None else "-") as sink:
        for record in passage_records(read_inputs(inputs, input_format=input_format, options=read_options), failures):
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    if failures.count:
        logger.warning("%d documents skipped", failures.count)
    logger.info("%d documents written to %s", written, output or "stdout")


def register(app: typer.Typer) -> None:
    from .sample import sample

    data_app.command("sample")(sample)  # the shipped quick-start data (commands/sample.py)
    app.add_typer(data_app, name="data")
