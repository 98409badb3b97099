"""PubTator, the format of the BioCreative V CDR corpus: the one parser of the package.

`pmid|t|title`, `pmid|a|abstract`, mention lines `pmid<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id
[<TAB>individual mentions]` (the id may be absent), relation lines `pmid<TAB>type<TAB>id1<TAB>id2`
(BC5CDR's are `CID` chemical-disease pairs); documents separated by blank lines. Offsets index
`title + " " + abstract` (docs/TASK_FORMATS.md).

`parse_pubtator` streams documents and reports a malformed line with its document instead of
raising, so that `biogpt.io`'s reader can skip one bad document and go on (--keep-going) while
`read_pubtator`, the task data loader, stops at the first one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .base import TaskDataError

_TEXT_LINE = re.compile(r"^([^\t|]+)\|([ta])\|(.*)$")
MALFORMED_LINE = "expected 'pmid<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id' or 'pmid<TAB>REL<TAB>id1<TAB>id2'"

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
class Relation:
    type: str
    head: str
    tail: str


@dataclass
class Malformed:
    """A line that breaks the format: its number and what is wrong."""

    line: int
    message: str


@dataclass
class PubTatorDocument:
    pmid: str
    title: str = ""
    abstract: str = ""
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    line: int = 0  # where the document starts
    problem: Malformed | None = None  # its first malformed line, if any

    @property
    def text(self) -> str:
        """The text PubTator's offsets index."""
        return f"{self.title} {self.abstract}"

    def cid_pairs(self) -> list[tuple[str, str]]:
        """(chemical MeSH, disease MeSH) of the CID lines: the BC5CDR relation gold."""
        return [(r.head, r.tail) for r in self.relations if r.type == "CID"]


def parse_pubtator(lines: Iterable[tuple[int, str | Malformed]]) -> Iterator[PubTatorDocument | Malformed]:
    """Documents in file order from (line number, line) pairs; in place of a line, a caller may
    pass the `Malformed` of a line it could not read (not UTF-8). A document ends at a blank line
    or at a title/abstract line of another pmid. A malformed line marks its document (`problem`,
    the first one wins); one outside any document comes out on its own."""
    doc: PubTatorDocument | None = None
    for number, line in lines:
        if isinstance(line, Malformed):
            if doc is None:
                yield line
            else:
                doc.problem = doc.problem or line
            continue
        if not line.strip():
            if doc is not None:
                yield doc
            doc = None
            continue
        match = _TEXT_LINE.match(line)
        if match is not None:
            pmid, part, text = match.groups()
            if doc is not None and doc.pmid != pmid:
                yield doc
                doc = None
            if doc is None:
                doc = PubTatorDocument(pmid, line=number)
            if part == "t":
                doc.title = text
            else:
                doc.abstract = text
            continue
        cols = line.split("\t")
        if doc is None:
            yield Malformed(number, "annotation line before any 'pmid|t|title' line; is this PubTator?")
            continue
        if cols[0] != doc.pmid:
            doc.problem = doc.problem or Malformed(number, f"annotation for {cols[0]} inside document {doc.pmid}")
            continue
        if len(cols) >= 5 and cols[1].isdigit() and cols[2].isdigit():
            doc.mentions.append(Mention(int(cols[1]), int(cols[2]), cols[3], cols[4], cols[5] if len(cols) >= 6 else ""))
        elif len(cols) == 4 and not cols[1].isdigit():
            doc.relations.append(Relation(cols[1], cols[2], cols[3]))
        else:
            doc.problem = doc.problem or Malformed(number, MALFORMED_LINE)
    if doc is not None:
        yield doc


def read_pubtator(path: Path) -> dict[str, PubTatorDocument]:
    """The documents of a task's PubTator file, keyed by pmid in file order; the first malformed
    line (or a pmid seen twice) raises TaskDataError naming the line."""
    docs: dict[str, PubTatorDocument] = {}
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for item in parse_pubtator((number, raw.rstrip("\r\n")) for number, raw in enumerate(handle, 1)):
                problem = item if isinstance(item, Malformed) else item.problem
                if problem is not None:
                    raise TaskDataError(f"{path}:{problem.line}: {problem.message}")
                assert isinstance(item, PubTatorDocument)
                if item.pmid in docs:
                    raise TaskDataError(f"{path}:{item.line}: document {item.pmid} appears a second time")
                docs[item.pmid] = item
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
