"""Document readers and writers shared by every command that reads documents.

Readers (one registry, `READERS`) turn files, folders, gzip files or stdin into a stream of
`Record`s. Every file is opened by `biogpt.model.files.open_input` (gzip by its magic bytes,
binary refused), the one opener of the package. A record that cannot be used (malformed JSON,
JSON nested too deeply, a lone surrogate, no text, not UTF-8, empty) comes out as a `BadRecord`
naming `file:line` and the problem, and so does a file that cannot be read as text at all
(binary, a broken gzip stream, malformed XML): a command stops with one clear line or, with
--keep-going, counts it and goes on. Only usage problems raise: a missing path or a folder with
no files (`PathError`), an unknown --input-format or --format (`InvalidOptionError`).
Everything streams: memory stays flat on huge inputs.

Every reader yields documents as passages (`fields["passages"]`, `fields["meta"]`) by the one
text rule of biogpt_cli.documents. XML (PubMed, BioC, JATS) is parsed by defusedxml's parser:
a file declaring entities (billion laughs, external entities) is refused as one BadRecord, and
no DTD or external resource is ever fetched (the DOCTYPE of PubMed and JATS files only names it).

Writers (`WRITERS`: jsonl, tsv, pubtator, text, bioc-json, bioc-xml) write and flush one record
at a time; `close()` after the last one writes a footer where the format has one (BioC).
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from biogpt.model.errors import InputDataError, InvalidOptionError, PathError
from biogpt.model.files import Input, not_utf8_message

from .writer import Writer  # its own module: the BioC writers (biogpt_cli/bioc.py) build on it, and io registers them

from .documents import BadRecord, Item, Record  # noqa: F401  (the reader API: io.Record ...)
from .documents import Passage, join_passages, passages_fit, section_type_of, text_passage, title_abstract_passages
from .safexml import iterparse_stream

logger = logging.getLogger(__name__)


# ==================================================================================== records
@dataclass
class ReadOptions:
    text_key: str = "text"
    id_key: str | None = None
    text_flag: str = "--text-key"  # the command's flag that names text_key, for messages
    # JATS: optional parts kept ("tables", "references", "formulas"), and the section types kept
    # (None: all; title and abstract are always kept)
    include: frozenset[str] = field(default=frozenset(), kw_only=True)
    sections: frozenset[str] | None = field(default=None, kw_only=True)


Reader = Callable[["Source", ReadOptions], Iterator[Item]]
READERS: dict[str, Reader] = {}


def reader(name: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return register


# ==================================================================================== sources
class Source(Input):
    """One input (file, gzip file or stdin) opened by the package's one opener, read line by line
    with the undecodable lines handed to the reader (a BadRecord each) rather than raised."""

    def text_lines(self) -> Iterator[tuple[int, str | BadRecord]]:
        """(line number, text without its line end), or in place of the text the BadRecord of a
        line that is not UTF-8 (worded as the package's reader words it), streaming."""
        for number, raw in self.raw_lines():
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                where = f"{self.name}:{number}"
                yield number, BadRecord(where, _without_location(not_utf8_message(where, exc), where))


# ==================================================================================== readers
@reader("lines")
def read_lines(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """One document per line; blank lines are skipped."""
    for number, text in source.text_lines():
        if isinstance(text, BadRecord):
            yield text
        elif text.strip():
            yield Record(f"{source.name}:{number}", text, {"passages": text_passage(text)}, f"{source.name}:{number}")


@reader("paragraphs")
def read_paragraphs(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """Documents separated by blank lines; lines of one document are joined by a space."""
    buf: list[str] = []
    start = 0
    bad: BadRecord | None = None

    def record() -> Record:
        text = " ".join(b for b in buf if b)
        return Record(f"{source.name}:{start}", text, {"passages": text_passage(text)}, f"{source.name}:{start}")

    for number, text in source.text_lines():
        if isinstance(text, BadRecord):
            bad = bad or text
            if not buf:
                start = number
            buf.append("")
            continue
        if text.strip():
            if not buf:
                start = number
            buf.append(text.strip())
        elif buf:
            yield bad or record()
            buf, bad = [], None
    if buf:
        yield bad or record()


def document_text(title: str, abstract: str) -> str:
    """The text a reader hands a command: title and abstract stripped and joined by one space.
    Why one space: offsets into it then map back onto PubTator's `title + " " + abstract`
    (biogpt.tasks.pubtator.title_abstract_lines). The tasks build their model input from the
    fields by the official recipe's own rule instead (biogpt.tasks.bc5cdr.official_source_join)."""
    title, abstract = title.strip(), abstract.strip()
    if title and abstract:
        return f"{title} {abstract}"
    return title or abstract


@reader("jsonl")
def read_jsonl(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """One JSON object per line: the text in --text-key (or title + abstract), id in --id-key
    (or `id` / `pmid`)."""
    from biogpt.tasks.base import MalformedLine, parse_json_line  # only here: keeps CLI start-up light

    for number, line in source.text_lines():
        where = f"{source.name}:{number}"
        if isinstance(line, BadRecord):
            yield line
            continue
        if not line.strip():
            continue
        try:
            obj = parse_json_line(line)
        except MalformedLine as exc:
            # a pretty-printed JSON document (ori_pqal.json, a BioC JSON file) fails on its first
            # line: say what is expected rather than only that the line is broken
            hint = "; JSONL is expected: one JSON object per line" if line.strip() in ("{", "[") else ""
            yield BadRecord(where, f"{exc}{hint}")
            continue
        if not isinstance(obj, dict):
            yield BadRecord(where, f"expected a JSON object, found {type(obj).__name__}")
            continue
        rid = obj.get(opts.id_key) if opts.id_key else obj.get("id", obj.get("pmid"))
        rid = str(rid) if rid is not None else where
        value = obj.get(opts.text_key)
        if isinstance(value, str):
            text = value
            passages = text_passage(text)
        elif value is None and opts.text_key == "text" and ("title" in obj or "abstract" in obj):
            title, abstract = str(obj.get("title") or ""), str(obj.get("abstract") or "")
            text = document_text(title, abstract)
            passages = title_abstract_passages(title, abstract)
        else:
            found = ", ".join(list(obj)[:8]) or "none"
            what = "is not a string" if value is not None else "is missing"
            yield BadRecord(where, f"field {opts.text_key!r} {what} (fields: {found}); pass {opts.text_flag}", rid)
            continue
        fields = dict(obj)
        # a line of `biogpt data passages` (or any JSONL whose passages fit its text) keeps them
        if not (isinstance(obj.get("passages"), list) and passages_fit(text, obj["passages"])):
            fields["passages"] = passages
        if not isinstance(obj.get("meta"), dict) and any(obj.get(k) is not None for k in ("pmid", "pmcid", "doi")):
            fields["meta"] = {k: None if obj.get(k) is None else str(obj[k]) for k in ("pmid", "pmcid", "doi")}
        yield Record(rid, text, fields, where)


@reader("pubtator")
def read_pubtator(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """PubTator (`pmid|t|title`, `pmid|a|abstract`, mention and relation lines; the format, its
    parser and its rules are biogpt.tasks.pubtator's): a document with a malformed line is one
    BadRecord; mentions whose offsets do not fit and repeated pmids are counted and reported in
    one warning each at the end of the file (every copy of a repeated pmid is processed)."""
    from biogpt.tasks.pubtator import Malformed, parse_pubtator, report_pubtator_problems  # keeps CLI start-up light

    lines = (
        (number, Malformed(number, text.message) if isinstance(text, BadRecord) else text) for number, text in source.text_lines()
    )
    seen: dict[str, int] = {}
    skipped, duplicates = [], []
    for doc in parse_pubtator(lines):
        if isinstance(doc, Malformed):
            yield BadRecord(f"{source.name}:{doc.line}", doc.message)
        elif doc.problem is not None:
            yield BadRecord(f"{source.name}:{doc.problem.line}", doc.problem.message, doc.pmid)
        else:
            skipped += doc.skipped
            if doc.pmid in seen:
                duplicates.append(doc)
            else:
                seen[doc.pmid] = doc.line
            where = f"{source.name}:{doc.line}"
            fields = {
                "title": doc.title,
                "abstract": doc.abstract,
                "entities": [{"start": m.start, "end": m.end, "text": m.text, "label": m.type, "id": m.id} for m in doc.mentions],
                "relations": [{"type": r.type, "head": r.head, "tail": r.tail} for r in doc.relations],
                "location": where,
                "passages": title_abstract_passages(doc.title, doc.abstract),
                "meta": {"pmid": doc.pmid, "pmcid": None, "doi": None},
            }
            yield Record(doc.pmid, document_text(doc.title, doc.abstract), fields, where)
    report_pubtator_problems(source.name, skipped=skipped, duplicates=duplicates, first_lines=seen, kept="every copy is processed")


# BioC passage types (infon "type"; NCBI's PMC BioC and ours) -> the passage types of biogpt_cli.documents
_BIOC_TYPES = {"title": "title", "front": "title", "paragraph": "paragraph", "fig_caption": "fig_caption",
               "table_caption": "table_caption", "table": "table", "ref": "reference", "reference": "reference", "text": "text"}
_BIOC_HEADING = re.compile(r"title_(\d+)")  # NCBI's section headings: title_1, title_2 ...


def _bioc_record(doc: dict[str, Any], where: str) -> Item:
    """A BioC document as passages by the text rule (biogpt_cli.documents): the file's own
    offsets are not trusted to lay out the text (they are honoured exactly when they follow the
    rule, as in the files our writers make); its annotations become `entities` at document
    offsets, moved with their passage."""
    rid = str(doc.get("id") or where)
    raw = doc.get("passages") or []
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        return BadRecord(where, "BioC document whose 'passages' is not a list of objects", rid)
    fields: dict[str, Any] = {}
    kept: list[tuple[Passage, dict[str, Any]]] = []
    headings: list[str] = []
    meta = _bioc_meta(doc.get("infons"))
    for p in raw:
        text = p.get("text") or ""
        infons = p.get("infons") if isinstance(p.get("infons"), dict) else {}
        if not isinstance(text, str):
            return BadRecord(where, "BioC passage whose 'text' is not a string", rid)
        meta = {k: meta[k] or v for k, v in _bioc_meta(infons).items()}
        kind = str(infons.get("type", "")).lower()
        if kind in ("title", "front") and "title" not in fields:
            fields["title"] = text
        elif kind.startswith("abstract"):
            fields["abstract"] = (fields.get("abstract", "") + " " + text).strip()
        heading = _BIOC_HEADING.fullmatch(kind)
        if heading:  # a heading starts a (sub)section: the section path follows it
            headings = headings[: int(heading.group(1)) - 1] + [" ".join(text.split())]
        ptype = "abstract" if kind.startswith("abstract") else _BIOC_TYPES.get(kind, "paragraph")
        section = str(infons.get("section") or ("" if ptype in ("title", "abstract") else " > ".join(headings)))
        stype = ptype if ptype in ("title", "abstract") else (
            section_type_of(str(infons.get("section_type") or "")) or section_type_of(section) or "other")
        if text:  # today's rule: empty passages are left out of the text
            kept.append((Passage(ptype, text, section, stype), p))
    text, passages = join_passages((passage for passage, _ in kept), collapse_space=False)
    fields["passages"] = passages
    if any(meta.values()):
        fields["meta"] = meta
    entities, skipped = [], 0
    for (_, p), placed in zip(kept, passages):
        for ann in p.get("annotations") or []:
            found = _bioc_entities(ann, p.get("offset"), placed, text)
            skipped += found is None
            entities += found or []
    if entities or skipped:
        fields["entities"] = sorted(entities, key=lambda e: (e["start"], e["end"]))
    if skipped:
        logger.warning("%s: %d BioC annotations whose locations do not fit their passage skipped", where, skipped)
    return Record(rid, text, fields, where)


def _bioc_meta(infons: Any) -> dict[str, str | None]:
    """pmid, pmcid, doi from BioC infons (ours: pmid/pmcid/doi; NCBI's: article-id_pmid ...)."""
    infons = infons if isinstance(infons, dict) else {}

    def get(*keys: str) -> str | None:
        value = next((infons[k] for k in keys if infons.get(k)), None)
        return None if value is None else str(value).strip()

    pmcid = get("pmcid", "article-id_pmc", "article-id_pmcid")
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    return {"pmid": get("pmid", "article-id_pmid"), "pmcid": pmcid, "doi": get("doi", "article-id_doi")}


def _bioc_entities(ann: Any, file_offset: Any, placed: dict[str, Any], text: str) -> list[dict[str, Any]] | None:
    """An annotation's locations as entities at document offsets (a location is relative to
    the document in the file's layout: moved by where its passage now starts), or None when a
    location does not fall inside its passage."""
    if not isinstance(ann, dict) or not isinstance(file_offset, int):
        return None
    infons = ann.get("infons") if isinstance(ann.get("infons"), dict) else {}
    label = str(infons.get("type", ""))
    ident = str(next((infons[k] for k in ("identifier", "Identifier", "MESH", "NCBI Gene") if infons.get(k)), ""))
    out = []
    for loc in ann.get("locations") or []:
        start, length = (loc.get("offset"), loc.get("length")) if isinstance(loc, dict) else (None, None)
        if not isinstance(start, int) or not isinstance(length, int) or length < 0:
            return None
        local = start - file_offset
        if local < 0 or local + length > len(placed["text"]):
            return None
        begin = placed["offset"] + local
        out.append({"start": begin, "end": begin + length, "text": text[begin : begin + length], "label": label, "id": ident})
    return out


@reader("bioc-json")
def read_bioc_json(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """A BioC JSON collection; documents are decoded one at a time from the stream."""
    from biogpt.tasks.base import has_lone_surrogate  # only here: keeps CLI start-up light

    text = codecs.getreader("utf-8")(source.stream, errors="strict")
    try:
        for index, doc in enumerate(_stream_json_array(text, "documents", source.name)):
            where = f"{source.name}:document {index + 1}"
            if not isinstance(doc, dict):
                yield BadRecord(where, f"expected a BioC document object, found {type(doc).__name__}")
            elif has_lone_surrogate(doc):
                yield BadRecord(where, "a JSON string holds a lone surrogate (such as \\ud800), which is not text")
            else:
                yield _bioc_record(doc, where)
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{source.name}: bytes that are not UTF-8 ({exc.reason}); re-encode the file as UTF-8") from None


def _stream_json_array(stream: TextIO, key: str, name: str) -> Iterator[Any]:
    """Items of the array under `key` in a top-level JSON object, parsed incrementally."""
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0

    def more() -> bool:
        nonlocal buf, pos
        chunk = stream.read(1 << 16)
        if not chunk:
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    # find `"key"` then `[` at the top level (good enough for BioC, whose collection is flat)
    marker = re.compile(r'"%s"\s*:\s*\[' % re.escape(key))
    while True:
        m = marker.search(buf, pos)
        if m:
            pos = m.end()
            break
        keep = max(len(buf) - 64, 0)
        buf, pos = buf[keep:], 0
        if not more():
            raise InputDataError(f"{name}: no {key!r} array; is this a BioC JSON collection?")
    while True:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos < len(buf):
                break
            if not more():
                raise InputDataError(f"{name}: unexpected end of file inside the {key!r} array")
        if buf[pos] == "]":
            return
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if not more():
                    raise InputDataError(f"{name}: malformed JSON in the {key!r} array ({exc.msg.removesuffix(' at')})") from None
            except RecursionError:
                raise InputDataError(f"{name}: JSON nested too deeply to read in the {key!r} array") from None
        pos = end
        yield item


def _iterparse(source: Source, tag: str) -> Iterator[ET.Element]:
    """Complete `tag` elements, freed after use (flat memory on baseline-sized files)."""
    yield from iterparse_stream(source.stream, source.name, tag)


@reader("bioc-xml")
def read_bioc_xml(source: Source, opts: ReadOptions) -> Iterator[Item]:
    for index, elem in enumerate(_iterparse(source, "document")):
        passages = []
        for p in elem.findall("passage"):
            annotations = [
                {"infons": _bioc_infons(a), "text": a.findtext("text") or "",
                 "locations": [{"offset": _bioc_int(loc.get("offset")), "length": _bioc_int(loc.get("length"))} for loc in a.findall("location")]}
                for a in p.findall("annotation")
            ]
            passages.append({"infons": _bioc_infons(p), "offset": _bioc_int(p.findtext("offset")), "text": p.findtext("text") or "", "annotations": annotations})
        yield _bioc_record({"id": elem.findtext("id"), "infons": _bioc_infons(elem), "passages": passages}, f"{source.name}:document {index + 1}")


def _bioc_infons(elem: ET.Element) -> dict[str, str]:
    return {i.get("key", ""): (i.text or "") for i in elem.findall("infon")}


def _bioc_int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


@reader("pubmed-xml")
def read_pubmed_xml(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """PubMed efetch output and annual baseline files: PMID, title, abstract sections."""
    for index, elem in enumerate(_iterparse(source, "PubmedArticle")):
        where = f"{source.name}:article {index + 1}"
        pmid = elem.findtext("MedlineCitation/PMID")
        article = elem.find("MedlineCitation/Article")
        if article is None or not pmid:
            yield BadRecord(where, "PubmedArticle without MedlineCitation/PMID or Article")
            continue
        title_el = article.find("ArticleTitle")
        title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""
        sections = []
        for part in article.findall("Abstract/AbstractText"):
            text = " ".join("".join(part.itertext()).split())
            if text:
                sections.append({"label": part.get("Label"), "text": text})
        abstract = " ".join(s["text"] for s in sections)
        # one abstract passage per AbstractText, its Label as section: joined by the text rule
        # they give exactly document_text(title, abstract), today's text and offsets
        text, passages = join_passages(
            [Passage("title", title, "", "title")] + [Passage("abstract", s["text"], s["label"] or "", "abstract") for s in sections]
        )
        ids = {i.get("IdType"): (i.text or "").strip() for i in elem.findall("PubmedData/ArticleIdList/ArticleId")}
        doi = next((e.text.strip() for e in article.findall("ELocationID") if e.get("EIdType") == "doi" and e.text), None) or ids.get("doi")
        pmcid = ids.get("pmc") or None
        meta = {"pmid": pmid, "pmcid": pmcid if not pmcid or pmcid.startswith("PMC") else f"PMC{pmcid}", "doi": doi or None}
        fields = {"pmid": pmid, "title": title, "abstract": abstract, "sections": sections, "passages": passages, "meta": meta}
        yield Record(pmid, text, fields, where)


@reader("jats")
def read_jats(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """PMC Open Access JATS articles (biogpt_cli.jats)."""
    from .jats import read_jats as read  # only here: keeps CLI start-up light

    yield from read(source.stream, source.name, include=opts.include, sections=opts.sections)


# ==================================================================================== detection
def detect_format(path: str, head: bytes) -> str:
    """By extension, then content; plain text defaults to `lines` (use --input-format paragraphs
    for blank-line separated documents)."""
    name = path.lower().removesuffix(".gz")
    text = head.lstrip(codecs.BOM_UTF8).lstrip().decode("utf-8", errors="replace")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".nxml"):
        return "jats"
    if name.endswith((".pubtator", ".pubtator.txt")) or re.match(r"^[^|\n\t]+\|[ta]\|", text):
        return "pubtator"
    if text.startswith("<"):
        if re.search(r"<(PubmedArticleSet|PubmedArticle)\b", text):
            return "pubmed-xml"
        if re.search(r"<collection\b", text):
            return "bioc-xml"
        if re.search(r"<(!DOCTYPE\s+)?(article|pmc-articleset)\b", text):
            return "jats"
        raise InputDataError(f"{path}: an XML file that is neither PubMed, BioC nor JATS XML; pass --input-format")
    if text.startswith("{"):
        first = text.split("\n", 1)[0]
        try:
            json.loads(first)
            return "jsonl"
        except json.JSONDecodeError:
            if re.search(r'"documents"\s*:', text) or name.endswith(".json"):
                return "bioc-json"
            return "jsonl"
    if text.startswith("["):
        raise InputDataError(f"{path}: a JSON array is not supported; use JSONL (one object per line) or BioC JSON")
    return "lines"


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """FILE arguments, folders (their files, sorted, recursively; hidden files skipped) and `-`."""
    out: list[str] = []
    for path in paths:
        if path == "-":
            out.append(path)
            continue
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise PathError(f"{path}: folder holds no files")
            out.extend(str(f) for f in files)
        elif not p.exists():
            raise PathError(f"{path}: no such file or folder")
        else:
            out.append(path)
    return out


def read_inputs(
    paths: Iterable[str], *, input_format: str = "auto", options: ReadOptions | None = None
) -> Iterator[Item]:
    """Every record of every input, in order, streaming. A file that cannot be read as text
    (binary, broken gzip, malformed XML, an undetectable format), or whose reading fails half-way,
    is one BadRecord naming it: a folder with one bad file is a run with one failure, which
    --keep-going skips and counts."""
    opts = options or ReadOptions()
    if input_format != "auto" and input_format not in READERS:
        raise InvalidOptionError(f"--input-format {input_format}: expected auto, {', '.join(READERS)}")
    for path in expand_inputs(paths):
        yield from _read_one(path, input_format, opts)


def _read_one(path: str, input_format: str, opts: ReadOptions) -> Iterator[Item]:
    if input_format in ("auto", "jats") and path.lower().endswith((".tar.gz", ".tgz", ".tar")):
        # a PMC OA bundle: tarfile reads (and un-gzips) it member by member; the package's
        # opener would refuse a tar's NUL-padded headers as binary
        from .jats import read_bundle

        yield from read_bundle(path, include=opts.include, sections=opts.sections)
        return
    try:
        source = Source(path)
    except InputDataError as exc:
        yield BadRecord(path if path != "-" else "stdin", _without_location(str(exc), path))
        return
    try:
        fmt = detect_format(path, source.head) if input_format == "auto" else input_format
        yield from READERS[fmt](source, opts)
    except InputDataError as exc:
        yield BadRecord(source.name, _without_location(str(exc), source.name))
    finally:
        source.close()


def _without_location(message: str, name: str) -> str:
    """An error's message without the leading `name: ` (a BadRecord carries the location)."""
    return message.removeprefix(f"{name}: ")


# ==================================================================================== writers
class JsonlWriter(Writer):
    def write(self, record: dict[str, Any]) -> None:
        self._emit(json.dumps(record, ensure_ascii=False) + "\n")


def _tsv_cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value).replace("\t", " ").replace("\n", " ")


class TsvWriter(Writer):
    """A header line from the first record's keys, then one row per record (nested values as
    JSON); records with `rows` (e.g. one row per relation) expand to several lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.columns: list[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        rows = record.get("rows")
        items = rows if isinstance(rows, list) else [{k: v for k, v in record.items() if k != "provenance"}]
        for item in items:
            if self.columns is None:
                self.columns = list(item)
                self._emit("\t".join(self.columns) + "\n")
            self._emit("\t".join(_tsv_cell(item.get(c)) for c in self.columns) + "\n")


class PubtatorWriter(Writer):
    """`id|t|title`, `id|a|abstract`, entity lines (start, end, text, label, id) and relation
    lines (type, head, tail), then a blank line."""

    def write(self, record: dict[str, Any]) -> None:
        rid = str(record.get("id", ""))
        title = record.get("title")
        abstract = record.get("abstract")
        if title is None and abstract is None:
            title, abstract = record.get("text", ""), ""
        lines = [f"{rid}|t|{_tsv_cell(title)}", f"{rid}|a|{_tsv_cell(abstract)}"]
        for e in record.get("entities") or []:
            lines.append("\t".join([rid, str(e["start"]), str(e["end"]), _tsv_cell(e.get("text")), _tsv_cell(e.get("label")), _tsv_cell(e.get("id", ""))]))
        for r in record.get("relations") or []:
            lines.append("\t".join([rid, _tsv_cell(r.get("type", "REL")), _tsv_cell(r.get("head")), _tsv_cell(r.get("tail"))]))
        self._emit("\n".join(lines) + "\n\n")


class TextWriter(Writer):
    def write(self, record: dict[str, Any]) -> None:
        self._emit(str(record.get("text", "")) + "\n")


def _bioc_writer(name: str) -> Callable[[TextIO], Writer]:
    """A BioC writer, imported on use (biogpt_cli.bioc is needed only by those two formats)."""

    def make(stream: TextIO) -> Writer:
        from . import bioc

        return getattr(bioc, name)(stream)

    return make


WRITERS: dict[str, Callable[[TextIO], Writer]] = {
    "jsonl": JsonlWriter, "tsv": TsvWriter, "pubtator": PubtatorWriter, "text": TextWriter,
    "bioc-json": _bioc_writer("BiocJsonWriter"), "bioc-xml": _bioc_writer("BiocXmlWriter"),
}


def make_writer(fmt: str, stream: TextIO, *, allowed: Iterable[str] | None = None) -> Writer:
    names = list(allowed) if allowed is not None else list(WRITERS)
    if fmt not in names:
        raise InvalidOptionError(f"--format {fmt}: expected {' or '.join(names)}")
    return WRITERS[fmt](stream)
