"""PubMed Central Open Access articles (JATS XML) as passages: `--input-format jats`.

Read: `.nxml`/`.xml` files (one `<article>`, or several inside PMC's `<pmc-articleset>`), gzip
(the package's opener), folders (io.expand_inputs) and PMC OA `.tar.gz` bundles (their `.nxml`
and `.xml` members, read from the archive stream: nothing is extracted to disk, links and other
non-regular members are skipped, a member over MAX_MEMBER_BYTES is refused).

An article becomes the passages of biogpt_cli.documents, joined by its text rule: the title, every
`<abstract>` (its own `<title>`, e.g. "Author Summary", or its abstract-type as section), then the
body in document order: paragraphs and figure/table captions (label + caption), each with its
section path (nested `<sec>` titles joined by " > ") and normalised section type (the sec-type
attribute, else the enclosing section's type, else the title's keywords). Floats in the
`<floats-group>` follow the body. Inline markup (italic, sub/superscript, xref citation text,
links) becomes plain text. Left out unless `include` (ReadOptions.include) names them: "references" (one
"reference" passage per `<ref>`), "tables" (one "table" passage per `<table>`: cells joined by
" | ", rows by "; ") and "formulas" (`disp-formula`/`inline-formula`/MathML, dropped from the text
by default; with it, their TeX or MathML text stays where they stand). `sections`
(ReadOptions.sections) keeps only the passages of those section types (title and abstract always stay). Sub-articles
(`<sub-article>`: decision letters, translations) are not read.

Ids: the PMCID ("PMC" + number), else the PMID, else `FILE:N` (the N-th article of the file).
The XML is parsed by io.iterparse_stream (defusedxml: entity declarations refused, no fetch).
"""

from __future__ import annotations

import logging
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from typing import IO, Any

from biogpt.model.errors import InputDataError

from .documents import BadRecord, Item, Passage, Record, collapse, join_passages, section_type_of
from .safexml import iterparse_stream

logger = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 256 << 20  # a PMC article's XML is well under 10 MB; bigger is not an article
BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
FLOATS = frozenset({"fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material"})
FORMULAS = frozenset({"disp-formula", "inline-formula", "disp-formula-group", "math", "tex-math"})
# elements whose content is a block of its own: a space keeps its words apart from the next
BLOCKS = frozenset({"p", "title", "label", "caption", "list", "list-item", "break", "tr", "td", "th", "def-list", "def-item",
                    "term", "def", "disp-quote", "attrib", "statement", "verse-line", "speech", "speaker", "boxed-text",
                    "given-names"})  # a citation's <surname>Rich</surname><given-names>KM</given-names>
CITATIONS = frozenset({"mixed-citation", "element-citation", "citation", "nlm-citation"})


def _local(tag: Any) -> str:
    """An element's name without its namespace (MathML is namespaced, JATS elements are not)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find(elem: ET.Element | None, name: str) -> ET.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None) if elem is not None else None


# ============================================================================ text of elements
def text_of(elem: ET.Element | None, *, formulas: bool = False) -> str:
    """The plain text of an element, whitespace collapsed: floats (figures, tables) nested in
    it are left out (they are passages of their own), formulas too unless `formulas`."""
    if elem is None:
        return ""
    parts: list[str] = []
    _gather(elem, parts, formulas=formulas, top=True)
    return collapse("".join(parts))


def _gather(elem: ET.Element, parts: list[str], *, formulas: bool, top: bool) -> None:
    tag = _local(elem.tag)
    if not top and tag in FLOATS:
        return
    if tag in FORMULAS:
        if formulas:
            parts.append(_formula_text(elem))
        return
    block = tag in BLOCKS
    if block:
        parts.append(" ")
    if elem.text:
        parts.append(elem.text)
    for child in elem:
        _gather(child, parts, formulas=formulas, top=False)
        if child.tail:
            parts.append(child.tail)
    if block:
        parts.append(" ")


def _formula_text(elem: ET.Element) -> str:
    """A formula as text: its TeX when it has one (an `<alternatives>` holds TeX and MathML:
    one of them, not both), else its MathML's text."""
    tex = next((e for e in elem.iter() if _local(e.tag) == "tex-math"), None)
    if tex is not None:
        return " " + "".join(tex.itertext()) + " "
    return " " + " ".join("".join(elem.itertext()).split()) + " "


def _label_caption(elem: ET.Element, *, formulas: bool) -> str:
    return collapse(" ".join((text_of(_find(elem, "label")), text_of(_find(elem, "caption"), formulas=formulas))))


def _table_text(table: ET.Element, *, formulas: bool) -> str:
    """A table's cells: " | " between cells, "; " between rows."""
    rows = []
    for tr in table.iter():
        if _local(tr.tag) == "tr":
            cells = [text_of(c, formulas=formulas) for c in tr if _local(c.tag) in ("td", "th")]
            if any(cells):
                rows.append(" | ".join(cells))
    return "; ".join(rows)


def _reference_text(ref: ET.Element) -> str:
    label = text_of(_find(ref, "label"))
    citations = []
    for c in ref:
        if _local(c.tag) not in CITATIONS:
            continue
        if _local(c.tag) == "mixed-citation":  # its punctuation and spaces are in the text
            citations.append(text_of(c))
        else:  # element-citation: bare fields, no punctuation between them
            citations.append(" ".join(t.strip() for t in c.itertext() if t.strip()))
    return collapse(" ".join([label, *citations]))


# ============================================================================ passages
class _Walk:
    """The passages of one article's body, in document order."""

    def __init__(self, include: frozenset[str]) -> None:
        self.formulas = "formulas" in include
        self.tables = "tables" in include
        self.out: list[Passage] = []

    def container(self, elem: ET.Element, path: list[str], stype: str) -> None:
        section = " > ".join(path)
        first_sec = True
        for child in elem:
            tag = _local(child.tag)
            if tag == "sec":
                title = text_of(_find(child, "title"))
                own = section_type_of(child.get("sec-type")) or (stype if stype != "other" else None)
                # an untitled first section of the body is the introduction (EHP and others leave it so)
                untitled_intro = "introduction" if first_sec and not path and not title and _local(elem.tag) == "body" else None
                self.container(child, path + [title] if title else path, own or section_type_of(title) or untitled_intro or "other")
                first_sec = False
            elif tag in ("title", "label", "sec-meta", "ref-list", "object-id"):
                continue  # a heading is in the section path; references are read on request
            elif tag in FLOATS:
                self.float(child, section, stype)
            elif tag in ("disp-formula", "disp-formula-group"):
                if self.formulas:
                    self.out.append(Passage("paragraph", text_of(child, formulas=True), section, stype))
            elif tag in ("boxed-text", "app", "app-group", "body"):
                self.container(child, path, stype)
            else:  # p, list, disp-quote, statement, def-list ...: a paragraph, then its floats
                self.out.append(Passage("paragraph", text_of(child, formulas=self.formulas), section, stype))
                for nested in _nested_floats(child):
                    self.float(nested, section, stype)

    def float(self, elem: ET.Element, section: str, stype: str) -> None:
        tag = _local(elem.tag)
        if tag in ("fig-group", "table-wrap-group"):
            self.out.append(Passage("fig_caption" if tag == "fig-group" else "table_caption",
                                    _label_caption(elem, formulas=self.formulas), section, stype))
            for child in elem:
                if _local(child.tag) in FLOATS:
                    self.float(child, section, stype)
            return
        kind = {"fig": "fig_caption", "table-wrap": "table_caption"}.get(tag, "paragraph")
        self.out.append(Passage(kind, _label_caption(elem, formulas=self.formulas), section, stype))
        if tag == "table-wrap" and self.tables:
            for table in elem.iter():
                if _local(table.tag) == "table":
                    self.out.append(Passage("table", _table_text(table, formulas=self.formulas), section, stype))


def _nested_floats(elem: ET.Element) -> Iterator[ET.Element]:
    for child in elem:
        if _local(child.tag) in FLOATS:
            yield child
        else:
            yield from _nested_floats(child)


def _abstract_text(abstract: ET.Element) -> str:
    """An abstract's text; a structured abstract's section titles stay as "Title: text"."""
    pieces = []
    for child in abstract:
        tag = _local(child.tag)
        if tag == "title":
            continue  # the abstract's own title is its section
        if tag == "sec":
            title = text_of(_find(child, "title"))
            rest = " ".join(text_of(c) for c in child if _local(c.tag) != "title")
            pieces.append(f"{title}: {rest}" if title else rest)
        else:
            pieces.append(text_of(child))
    if abstract.text and abstract.text.strip():
        pieces.insert(0, abstract.text)
    return collapse(" ".join(pieces))


def article_record(article: ET.Element, *, name: str, index: int, where: str, include: frozenset[str] = frozenset(),
                   sections: frozenset[str] | None = None) -> Item:
    """One `<article>` as a Record (or a BadRecord saying why not)."""
    try:
        return _article_record(article, name=name, index=index, where=where, include=include, sections=sections)
    except RecursionError:  # hand-made XML nested thousands deep: not an article
        return BadRecord(where, "JATS article nested too deeply to read")


def _article_record(article: ET.Element, *, name: str, index: int, where: str, include: frozenset[str], sections: frozenset[str] | None) -> Item:
    front = _find(_find(article, "front"), "article-meta")
    ids: dict[str, str] = {}
    for aid in front if front is not None else ():
        if _local(aid.tag) == "article-id" and aid.text and aid.text.strip():
            ids.setdefault((aid.get("pub-id-type") or "").lower(), aid.text.strip())
    pmcid = ids.get("pmcid") or ids.get("pmc")
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    meta = {"pmid": ids.get("pmid"), "pmcid": pmcid, "doi": ids.get("doi")}

    title = text_of(_find(_find(front, "title-group"), "article-title"))
    passages = [Passage("title", title, "", "title")]
    abstracts = []
    for abstract in front if front is not None else ():
        if _local(abstract.tag) == "abstract":
            text = _abstract_text(abstract)
            section = text_of(_find(abstract, "title")) or (abstract.get("abstract-type") or "")
            passages.append(Passage("abstract", text, section, "abstract"))
            if text:
                abstracts.append(text)
    walk = _Walk(include)
    body = _find(article, "body")
    if body is not None:
        walk.container(body, [], "other")
    floats = _find(article, "floats-group")
    if floats is not None:
        for elem in floats:
            if _local(elem.tag) in FLOATS:
                walk.float(elem, "", "other")
    passages += walk.out
    if "references" in include:
        for ref_list in (e for e in article.iter() if _local(e.tag) == "ref-list"):
            section = text_of(_find(ref_list, "title")) or "References"
            passages += [Passage("reference", _reference_text(ref), section, "other") for ref in ref_list.iter() if _local(ref.tag) == "ref"]
    if sections is not None:
        passages = [p for p in passages if p.type in ("title", "abstract") or p.section_type in sections]

    text, placed = join_passages(passages)
    rid = pmcid or meta["pmid"] or f"{name}:{index}"
    if not text:
        return BadRecord(where, "JATS article without title, abstract or body text", rid)
    fields = {"title": title, "abstract": " ".join(abstracts), "passages": placed, "meta": meta, "pmid": meta["pmid"]}
    return Record(rid, text, fields, where)


# ============================================================================ readers
def read_jats(stream: IO[bytes], name: str, *, include: frozenset[str] = frozenset(), sections: frozenset[str] | None = None) -> Iterator[Item]:
    """Every `<article>` of one file's (decompressed) stream, streaming; `name` for messages."""
    found = 0
    for index, article in enumerate(iterparse_stream(stream, name, "article"), 1):
        found = index
        where = f"{name}:article {index}" if index > 1 else name
        yield article_record(article, name=name, index=index, where=where, include=include, sections=sections)
    if not found:
        raise InputDataError(f"{name}: no JATS <article> element; is this a PMC article (.nxml)?")


def is_bundle(path: str) -> bool:
    return path != "-" and path.lower().endswith(BUNDLE_SUFFIXES)


def read_bundle(path: str, *, include: frozenset[str] = frozenset(), sections: frozenset[str] | None = None) -> Iterator[Item]:
    """The articles of a PMC OA `.tar.gz` package (or any tar of JATS files), read member by
    member from the archive stream."""
    try:
        with tarfile.open(path, mode="r|*") as tar:  # a stream: no seeking, nothing extracted
            seen = False
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or base.startswith(".") or not base.lower().endswith((".nxml", ".xml")):
                    continue  # links, devices, folders, images, PDFs, hidden files
                seen = True
                where = f"{path}:{member.name}"
                if member.size > MAX_MEMBER_BYTES:
                    yield BadRecord(where, f"{member.size} bytes, more than the {MAX_MEMBER_BYTES >> 20} MiB an article may have")
                    continue
                stream = tar.extractfile(member)
                if stream is None:
                    continue
                try:
                    yield from read_jats(stream, where, include=include, sections=sections)
                except InputDataError as exc:
                    yield BadRecord(where, str(exc).removeprefix(f"{where}: "))
            if not seen:
                yield BadRecord(path, "tar bundle with no .nxml or .xml member")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        yield BadRecord(path, f"cannot read the tar bundle ({exc})")
