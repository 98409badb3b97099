"""`biogpt tag`: named entities from a token-classification model (trained by `biogpt train ner`).

Entities are character spans into the input text, read with biogpt.heads (the same encoding
`biogpt train ner` trains on; long documents in overlapping windows)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .. import _options as opts
from .._options import RunFlags
from .._common import UserError, provenance

if TYPE_CHECKING:
    from ..io import Record


def pubtator_record(item: Any, entities: list[dict[str, Any]]) -> dict[str, Any]:
    """A PubTator document: the title on `|t|`, the abstract on `|a|` when the input had them
    (PubTator input, JSONL title/abstract), mention offsets into `title + " " + abstract`."""
    from biogpt.tasks.pubtator import title_abstract_lines

    title, abstract, shift = title_abstract_lines(item.text, item.fields.get("title"), item.fields.get("abstract"))
    moved = [{**e, "start": e["start"] + shift, "end": e["end"] + shift} for e in entities]
    return {"id": item.id, "title": title, "abstract": abstract, "entities": moved}


def load_tagger(name: str, *, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    from biogpt.model import BioGptConfig, BioGptForTokenClassification

    from ..heads import load_head

    if Path(name).is_file():  # BioGptConfig.from_pretrained would read it as a config.json
        raise UserError(f"-m {name}: is a file, expected a model folder (`biogpt train ner` writes one)")
    try:
        config = BioGptConfig.from_pretrained(name)
    except Exception as exc:
        raise UserError(f"-m {name}: not a model directory ({exc})") from None
    if "BioGptForTokenClassification" not in (config.extra.get("architectures") or []):
        raise UserError(f"-m {name}: not a token-classification model (train one with `biogpt train ner`)")
    return load_head(BioGptForTokenClassification, name, device=device, dtype=dtype)


@opts.RUN_FLAGS()
def tag(
    inputs: Optional[list[str]] = opts.INPUTS,
    model_name: str = typer.Option(..., "--model", "-m", help="A model written by `biogpt train ner` (OUTDIR/model-best)."),
    input_format: str = opts.INPUT_FORMAT,
    text_key: str = opts.TEXT_KEY,
    id_key: Optional[str] = opts.ID_KEY,
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl or pubtator."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Tag named entities: one JSONL record per document with character-offset entities.

    Example: biogpt tag -m ner-run/model-best abstracts.jsonl --format pubtator
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob
    from ..heads import tag_text
    from ..io import ReadOptions, read_inputs

    job = BatchJob.start("tag", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    model, tokenizer = load_tagger(model_name, device=job.device(), dtype=flags.dtype)
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=ReadOptions(text_key, id_key)), limit)
    job.open(output_format, allowed=("jsonl", "pubtator"))
    meta = provenance(model, model_name)

    def render(item: Record) -> list[dict[str, Any]]:
        entities = tag_text(model, tokenizer, item.text)
        if output_format == "pubtator":
            return [pubtator_record(item, entities)]
        return [{"id": item.id, "entities": entities, "provenance": meta}]

    job.write_all(items, render)


def register(app: typer.Typer) -> None:
    app.command("tag")(tag)
