"""Reader of the BioCreative V CDR corpus in PubTator format (shared by BC5CDR and NER).

`pmid|t|title`, `pmid|a|abstract`, mention lines `pmid<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id
[<TAB>individual mentions]`, relation lines `pmid<TAB>CID<TAB>chemical<TAB>disease`; documents
separated by blank lines. Offsets index `title + " " + abstract`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .base import TaskDataError

_TEXT_LINE = re.compile(r"^([^\t|]+)\|([ta])\|(.*)$")

#: the official file of each split
PUBTATOR_FILES: dict[str, str] = {
    "train": "CDR_TrainingSet.PubTator.txt",
    "valid": "CDR_DevelopmentSet.PubTator.txt",
    "test": "CDR_TestSet.PubTator.txt",
}


@dataclass
class Mention:
    start: int
    end: int
    text: str
    type: str
    id: str


@dataclass
class PubTatorDocument:
    pmid: str
    title: str = ""
    abstract: str = ""
    mentions: list[Mention] = field(default_factory=list)
    relations: list[tuple[str, str]] = field(default_factory=list)  # CID (chemical, disease)

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract}"


def read_pubtator(path: Path) -> dict[str, PubTatorDocument]:
    """Documents in file order, keyed by pmid. Malformed lines raise TaskDataError naming the line."""
    docs: dict[str, PubTatorDocument] = {}
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            match = _TEXT_LINE.match(line)
            if match is not None:
                pmid, kind, rest = match.groups()
                doc = docs.setdefault(pmid, PubTatorDocument(pmid))
                if kind == "t":
                    doc.title = rest
                else:
                    doc.abstract = rest
                continue
            parts = line.split("\t")
            pmid = parts[0]
            doc = docs.setdefault(pmid, PubTatorDocument(pmid))
            if len(parts) >= 4 and parts[1] == "CID":
                doc.relations.append((parts[2], parts[3]))
            elif len(parts) >= 6:
                try:
                    start, end = int(parts[1]), int(parts[2])
                except ValueError:
                    raise TaskDataError(f"{path}:{number}: mention offsets are not integers: {line[:80]!r}") from None
                doc.mentions.append(Mention(start, end, parts[3], parts[4], parts[5]))
            else:
                raise TaskDataError(f"{path}:{number}: not a PubTator title, abstract, mention or CID line: {line[:80]!r}")
    return docs


def title_abstract_lines(text: str, title: object, abstract: object) -> tuple[str, str, int]:
    """(title, abstract, shift) to write a document whose mentions index `text` as PubTator.

    PubTator offsets index `title + " " + abstract`, while a reader hands commands one `text`
    (title and abstract stripped and joined by one space, or the abstract alone when the title is
    empty). The split is kept only when it re-joins to exactly `text`, so every offset stays
    valid: a mention at `start` in `text` is at `start + shift` in the written document (`shift`
    is 1 only when the title is empty, for the space PubTator still puts before the abstract).
    Anything else (no title/abstract fields, or a text that is not their join) goes whole on the
    title line, with an empty abstract, which keeps the offsets too.
    """
    t = title.strip() if isinstance(title, str) else ""
    a = abstract.strip() if isinstance(abstract, str) else ""
    if t and a and f"{t} {a}" == text:
        return t, a, 0
    if a and not t and a == text:
        return "", a, 1
    return text, "", 0
