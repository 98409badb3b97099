"""`biogpt data ...`: convert corpora into the JSONL that `biogpt train` reads.

`ner-from-pubtator`: BioCreative/PubTator documents to `{"id","text","entities"}` lines, text =
title + " " + abstract (the text PubTator offsets already index), so spans copy over unchanged.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import _options as opts

from .._common import UserError, open_output

logger = logging.getLogger(__name__)

data_app = typer.Typer(help="Convert data sets for training.", no_args_is_help=True)


@data_app.command("ner-from-pubtator")
def ner_from_pubtator(
    source: Path = typer.Argument(..., help="A PubTator file (e.g. CDR_TrainingSet.PubTator.txt)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSONL output (default: stdout)."),
    types: Optional[list[str]] = typer.Option(None, "--type", help="Keep only these entity types (repeatable)."),
    force: bool = opts.FORCE,
) -> None:
    """PubTator mentions to {"id","text","entities":[{"start","end","label"}]} JSONL.

    Example: biogpt data ner-from-pubtator CDR_TrainingSet.PubTator.txt -o train.jsonl
    """
    from biogpt.tasks.base import TaskDataError
    from biogpt.tasks.pubtator import read_pubtator

    try:
        docs = read_pubtator(source)
    except TaskDataError as exc:
        raise UserError(str(exc)) from None
    if not docs:
        raise UserError(f"{source}: no PubTator documents")
    sink = open_output(output, force=force)
    bad = 0
    try:
        for doc in docs.values():
            text = doc.text
            entities = []
            for m in doc.mentions:
                if types and m.type not in types:
                    continue
                if not 0 <= m.start < m.end <= len(text) or text[m.start : m.end] != m.text:
                    bad += 1
                    logger.warning("%s: mention %r at %d-%d does not match the text; skipped", doc.pmid, m.text, m.start, m.end)
                    continue
                entities.append({"start": m.start, "end": m.end, "label": m.type})
            entities.sort(key=lambda e: (e["start"], e["end"]))
            sink.write(json.dumps({"id": doc.pmid, "text": text, "entities": entities}, ensure_ascii=False) + "\n")
    finally:
        if sink is not sys.stdout:
            sink.close()
    if bad:
        logger.warning("%d mentions skipped", bad)


def register(app: typer.Typer) -> None:
    from .sample import sample

    data_app.command("sample")(sample)  # the shipped quick-start data (commands/sample.py)
    app.add_typer(data_app, name="data")
