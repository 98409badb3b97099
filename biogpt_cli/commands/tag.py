"""`biogpt tag`: named entities from a token-classification model (trained by `biogpt train ner`).

Entities are character spans into the input text, read with biogpt.heads (the same encoding
`biogpt train ner` trains on). A document with passages (a full-text article) is read by
--long-documents (heads.tag_document): entities always carry document offsets."""

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
    (PubTator input, JSONL title/abstract), mention offsets into `title + " " + abstract`.
    A full-text document (passages after its title and abstract) is written as its title and
    abstract lines with every mention at its document offset: PubTator has no passages, and
    the text rule puts title and abstract first, so their offsets are PubTator's."""
    from biogpt.tasks.pubtator import title_abstract_lines

    from ..documents import passages_of
    from ..longdocs import whole_document

    text = item.text
    if not whole_document(passages_of(item)):
        text = text.split("\n\n", 1)[0]  # title + abstract: later passages follow a blank line
    title, abstract, shift = title_abstract_lines(text, item.fields.get("title"), item.fields.get("abstract"))
    moved = [{**e, "start": e["start"] + shift, "end": e["end"] + shift} for e in entities]
    return {"id": item.id, "title": title, "abstract": abstract, "entities": moved}


def bioc_record(item: Any, entities: list[dict[str, Any]]) -> dict[str, Any]:
    """The document as BioC: its passages with the entities as annotations (document offsets)."""
    from ..bioc import bioc_document
    from ..documents import passages_of

    meta = item.fields.get("meta") if isinstance(item.fields.get("meta"), dict) else {}
    return bioc_document(item.id, passages_of(item), mentions=entities, infons={k: v for k, v in meta.items() if v is not None})


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
    output_format: str = typer.Option("jsonl", "--format", "-f", help="jsonl, pubtator (title and abstract lines, mentions at document offsets), bioc-json or bioc-xml (passages, entities as annotations)."),
    output: Optional[Path] = opts.OUTPUT,
    force: bool = opts.FORCE,
    include: Optional[str] = opts.INCLUDE,
    sections: Optional[str] = opts.SECTIONS,
    long_documents: str = opts.LONG_DOCUMENTS,
    batch_size: int = opts.BATCH_SIZE,
    max_tokens: Optional[int] = opts.MAX_TOKENS,
    limit: Optional[int] = opts.LIMIT,
    flags: RunFlags = None,  # type: ignore[assignment]  # RUN_FLAGS stand here
) -> None:
    """Tag named entities: one JSONL record per document with character-offset entities.

    --long-documents: auto reads a title/abstract or plain-text document whole (overlapping
    windows when it is long) and a full-text article by passages; passages tags each unit
    (title + abstract, then each passage, a long one split at sentences) alone, entities then
    carry their passage index and section and never straddle a passage boundary; windows reads
    overlapping windows over the whole text; truncate tags only the first window. Offsets are
    always into the document text. The model inputs (windows, units) of many documents share
    length-sorted batches: -b inputs, at most --max-tokens padded tokens, one forward pass each.

    \b
    Example: biogpt tag -m ner-run/model-best abstracts.jsonl --format pubtator
    Example: biogpt tag -m ner-run/model-best PMC/ --format bioc-json -o tagged.bioc.json
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..batchjob import BatchJob
    from ..documents import passage_options
    from ..heads import tag_documents
    from ..io import ReadOptions, read_inputs
    from ..longdocs import MODES

    if long_documents not in MODES:
        raise UserError(f"--long-documents {long_documents}: expected {', '.join(MODES)}")
    if output_format.startswith("bioc") and flags.shard is not None:
        raise UserError(f"--format {output_format} writes one collection; --shard is for jsonl and pubtator (merged by `biogpt merge`)")
    read_options = ReadOptions(text_key, id_key, **passage_options(include, sections))
    job = BatchJob.start("tag", flags, inputs=inputs, output=output, output_format=output_format, force=force)
    model, tokenizer = load_tagger(model_name, device=job.device(), dtype=flags.dtype)
    items = job.select(read_inputs(job.inputs, input_format=input_format, options=read_options), limit)
    job.open(output_format, allowed=("jsonl", "pubtator", "bioc-json", "bioc-xml"))
    meta = provenance(model, model_name, long_documents=long_documents)

    def render(result: tuple[Record, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        item, entities = result
        if output_format == "pubtator":
            return [pubtator_record(item, entities)]
        if output_format.startswith("bioc"):
            return [bioc_record(item, entities)]
        return [{"id": item.id, "entities": entities, "provenance": meta}]

    job.write_all(tag_documents(model, tokenizer, items, mode=long_documents, batch_size=batch_size, max_tokens=max_tokens), render)


def register(app: typer.Typer) -> None:
    app.command("tag")(tag)
