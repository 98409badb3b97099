"""BioC output (`--format bioc-json`, `--format bioc-xml`): one collection, one document per
output record, its passages with their offsets and infons, the found mentions as annotations
(with locations in document offsets) and the relations between them as BioC relations whose
nodes name those annotations.

A record for these writers is a BioC document already (`bioc_document` makes one); the writers
only frame and stream them: the collection header with the first document, each document as it
comes, the footer when the writer is closed (a run with no document still writes an empty,
well-formed collection). The JSON is the shape the package's bioc-json reader reads back.
"""

from __future__ import annotations

import datetime
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, TextIO

from .writer import Writer

SOURCE = "biogpt-cli"
# BioC's "key" names the file that says what the infons mean: ours are documented in the README
KEY = "biogpt-cli.key"
# characters XML 1.0 cannot hold at all; replaced one for one (a space) so every offset stays valid
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def bioc_document(
    doc_id: str, passages: Sequence[dict[str, Any]], *, mentions: Sequence[dict[str, Any]] = (),
    relations: Sequence[dict[str, Any]] = (), infons: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A BioC JSON document. `passages`: the contract's {type, section, section_type, offset,
    text}; `mentions`: {start, end, text, label, id, score?} in document offsets, each placed in the
    passage holding its start as annotation "T<n>" (n: its index, from 1); `relations`: {type,
    nodes: [(mention index, role), ...], infons}."""
    out_passages = [
        {"offset": p["offset"], "infons": {"type": p.get("type", ""), "section": p.get("section", ""),
                                            "section_type": p.get("section_type", "")},
         "text": p["text"], "sentences": [], "annotations": [], "relations": []}
        for p in passages
    ]
    for n, mention in enumerate(mentions):
        home = _passage_at(out_passages, mention["start"])
        labels = {"type": mention.get("label", "")}
        if mention.get("id") not in (None, ""):
            labels["identifier"] = mention["id"]
        if mention.get("score") is not None:  # a tagger's probability (biogpt tag)
            labels["score"] = mention["score"]
        home["annotations"].append({"id": f"T{n + 1}", "infons": labels, "text": mention["text"],
                                    "locations": [{"offset": mention["start"], "length": mention["end"] - mention["start"]}]})
    out_relations = [
        {"id": f"R{n + 1}", "infons": {"type": rel.get("type", ""), **(rel.get("infons") or {})},
         "nodes": [{"refid": f"T{index + 1}", "role": role} for index, role in rel["nodes"]]}
        for n, rel in enumerate(relations)
    ]
    return {"id": doc_id, "infons": dict(infons or {}), "passages": out_passages, "annotations": [], "relations": out_relations}


def _passage_at(passages: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """The passage whose text holds `offset` (else the last one starting before it)."""
    best = passages[0]
    for p in passages:
        if p["offset"] <= offset:
            best = p
        if p["offset"] <= offset < p["offset"] + len(p["text"]):
            return p
    return best


def _today() -> str:
    return datetime.date.today().strftime("%Y%m%d")


class _CollectionWriter(Writer):
    """Streams one collection: header before the first document, footer on `close`.
    `continues`: set when a resumed run appends to output holding the header and documents."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.continues = False
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        first = self.count == 0 and not self.continues
        self._emit((self.header() if first else "") + self.document(record, first=first))
        self.count += 1

    def close(self) -> None:
        self._emit(("" if self.count or self.continues else self.header()) + self.footer())

    def header(self) -> str:
        raise NotImplementedError

    def document(self, record: dict[str, Any], *, first: bool) -> str:
        raise NotImplementedError

    def footer(self) -> str:
        raise NotImplementedError


class BiocJsonWriter(_CollectionWriter):
    """A BioC JSON collection, one document a line (the reader decodes them one at a time)."""

    def header(self) -> str:
        return '{"source": %s, "date": "%s", "key": "%s", "infons": {}, "documents": [\n' % (json.dumps(SOURCE), _today(), KEY)

    def document(self, record: dict[str, Any], *, first: bool) -> str:
        return ("" if first else ",\n") + json.dumps(record, ensure_ascii=False)

    def footer(self) -> str:
        return "\n]}\n"


class BiocXmlWriter(_CollectionWriter):
    """A BioC XML collection; text escaped by ElementTree."""

    def header(self) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<collection>'
                f"<source>{SOURCE}</source><date>{_today()}</date><key>{KEY}</key>\n")

    def document(self, record: dict[str, Any], *, first: bool) -> str:
        return ET.tostring(document_element(record), encoding="unicode") + "\n"

    def footer(self) -> str:
        return "</collection>\n"


def document_element(doc: dict[str, Any]) -> ET.Element:
    """A BioC JSON document as its BioC XML element (the DTD's order of children)."""
    element = ET.Element("document")
    _text(element, "id", doc.get("id", ""))
    _infons(element, doc.get("infons") or {})
    for p in doc.get("passages") or []:
        passage = ET.SubElement(element, "passage")
        _infons(passage, p.get("infons") or {})
        _text(passage, "offset", p.get("offset", 0))
        _text(passage, "text", p.get("text", ""))
        for annotation in p.get("annotations") or []:
            _annotation(passage, annotation)
        for relation in p.get("relations") or []:
            _relation(passage, relation)
    for relation in doc.get("relations") or []:
        _relation(element, relation)
    return element


def _text(parent: ET.Element, tag: str, value: Any) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = NOT_XML.sub(" ", str(value))
    return child


def _infons(parent: ET.Element, infons: dict[str, Any]) -> None:
    for key, value in infons.items():
        _text(parent, "infon", "" if value is None else value).set("key", str(key))


def _annotation(parent: ET.Element, annotation: dict[str, Any]) -> None:
    element = ET.SubElement(parent, "annotation", id=str(annotation.get("id", "")))
    _infons(element, annotation.get("infons") or {})
    for location in annotation.get("locations") or []:
        ET.SubElement(element, "location", offset=str(location["offset"]), length=str(location["length"]))
    _text(element, "text", annotation.get("text", ""))


def _relation(parent: ET.Element, relation: dict[str, Any]) -> None:
    element = ET.SubElement(parent, "relation", id=str(relation.get("id", "")))
    _infons(element, relation.get("infons") or {})
    for node in relation.get("nodes") or []:
        ET.SubElement(element, "node", refid=str(node["refid"]), role=str(node.get("role", "")))
