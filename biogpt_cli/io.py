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

Writers (`WRITERS`: jsonl, tsv, pubtator, text) write and flush one record at a time.
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

logger = logging.getLogger(__name__)


# ==================================================================================== records
@dataclass
class Record:
    id: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    location: str = ""  # file:line where the record starts


@dataclass
class BadRecord:
    """An input record that cannot be processed; `location` is file:line (or the record id)."""

    location: str
    message: str
    id: str | None = None


Item = Record | BadRecord


@dataclass
class ReadOptions:
    text_key: str = "text"
    id_key: str | None = None
    text_flag: str = "--text-key"  # the command's flag that names text_key, for messages


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
            yield Record(f"{source.name}:{number}", text, location=f"{source.name}:{number}")


@reader("paragraphs")
def read_paragraphs(source: Source, opts: ReadOptions) -> Iterator[Item]:
    """Documents separated by blank lines; lines of one document are joined by a space."""
    buf: list[str] = []
    start = 0
    bad: BadRecord | None = None
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
            yield bad or Record(f"{source.name}:{start}", " ".join(b for b in buf if b), location=f"{source.name}:{start}")
            buf, bad = [], None
    if buf:
        yield bad or Record(f"{source.name}:{start}", " ".join(b for b in buf if b), location=f"{source.name}:{start}")


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
        elif value is None and opts.text_key == "text" and ("title" in obj or "abstract" in obj):
            text = document_text(str(obj.get("title") or ""), str(obj.get("abstract") or ""))
        else:
            found = ", ".join(list(obj)[:8]) or "none"
            what = "is not a string" if value is not None else "is missing"
            yield BadRecord(where, f"field {opts.text_key!r} {what} (fields: {found}); pass {opts.text_flag}", rid)
            continue
        yield Record(rid, text, obj, where)


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
            }
            yield Record(doc.pmid, document_text(doc.title, doc.abstract), fields, where)
    report_pubtator_problems(source.name, skipped=skipped, duplicates=duplicates, first_lines=seen, kept="every copy is processed")


def _bioc_record(doc: dict[str, Any], where: str) -> Item:
    rid = str(doc.get("id") or where)
    passages = doc.get("passages") or []
    if not isinstance(passages, list) or not all(isinstance(p, dict) for p in passages):
        return BadRecord(where, "BioC document whose 'passages' is not a list of objects", rid)
    parts: list[str] = []
    fields: dict[str, Any] = {"passages": passages}
    for p in passages:
        text = p.get("text") or ""
        infons = p.get("infons") if isinstance(p.get("infons"), dict) else {}
        if not isinstance(text, str):
            return BadRecord(where, "BioC passage whose 'text' is not a string", rid)
        kind = str(infons.get("type", "")).lower()
        if kind in ("title", "front") and "title" not in fields:
            fields["title"] = text
        elif kind.startswith("abstract"):
            fields["abstract"] = (fields.get("abstract", "") + " " + text).strip()
        if text:
            parts.append(text)
    return Record(rid, " ".join(parts), fields, where)


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
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    try:
        while True:
            chunk = source.stream.read(1 << 16)
            if not chunk:
                break
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start" and root is None:
                    root = elem
                elif event == "end" and elem.tag == tag:
                    yield elem
                    elem.clear()
                    if root is not None:
                        root.clear()
        parser.close()
    except ET.ParseError as exc:
        raise InputDataError(f"{source.name}: malformed XML ({exc})") from None


@reader("bioc-xml")
def read_bioc_xml(source: Source, opts: ReadOptions) -> Iterator[Item]:
    for index, elem in enumerate(_iterparse(source, "document")):
        passages = []
        for p in elem.findall("passage"):
            infons = {i.get("key", ""): (i.text or "") for i in p.findall("infon")}
            offset = (p.findtext("offset") or "0").strip()
            passages.append({"infons": infons, "offset": int(offset) if offset.isascii() and offset.isdigit() else 0, "text": p.findtext("text") or ""})
        yield _bioc_record({"id": elem.findtext("id"), "passages": passages}, f"{source.name}:document {index + 1}")


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
        fields = {"pmid": pmid, "title": title, "abstract": abstract, "sections": sections}
        yield Record(pmid, document_text(title, abstract), fields, where)


# ==================================================================================== detection
def detect_format(path: str, head: bytes) -> str:
    """By extension, then content; plain text defaults to `lines` (use --input-format paragraphs
    for blank-line separated documents)."""
    name = path.lower().removesuffix(".gz")
    text = head.lstrip(codecs.BOM_UTF8).lstrip().decode("utf-8", errors="replace")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".pubtator", ".pubtator.txt")) or re.match(r"^[^|\n\t]+\|[ta]\|", text):
        return "pubtator"
    if text.startswith("<"):
        if re.search(r"<(PubmedArticleSet|PubmedArticle)\b", text):
            return "pubmed-xml"
        if re.search(r"<collection\b", text):
            return "bioc-xml"
        raise InputDataError(f"{path}: an XML file that is neither PubMed nor BioC XML; pass --input-format")
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
class Writer:
    """Writes one output record (a dict) at a time and flushes it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _emit(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


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


WRITERS: dict[str, type[Writer]] = {"jsonl": JsonlWriter, "tsv": TsvWriter, "pubtator": PubtatorWriter, "text": TextWriter}


def make_writer(fmt: str, stream: TextIO, *, allowed: Iterable[str] | None = None) -> Writer:
    names = list(allowed) if allowed is not None else list(WRITERS)
    if fmt not in names:
        raise InvalidOptionError(f"--format {fmt}: expected {' or '.join(names)}")
    return WRITERS[fmt](stream)
