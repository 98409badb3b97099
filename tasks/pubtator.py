"""PubTator, the format of the BioCreative V CDR corpus: the one parser of the package.

`pmid|t|title`, `pmid|a|abstract`, mention lines `pmid<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id
[<TAB>individual mentions]` (the id may be absent), relation lines `pmid<TAB>type<TAB>id1<TAB>id2`
(BC5CDR's are `CID` chemical-disease pairs); documents separated by blank lines. Offsets index
`title + " " + abstract` (docs/TASK_FORMATS.md, which states the rules below for users).

The rules, the same for every command (they live here so that no reader has its own):
- A title or abstract line starts a new document unless it completes the current one (same pmid,
  that line not seen yet, no annotation line yet): a concatenated copy of a document is a second
  document, never merged into the first.
- An annotation line of a pmid other than the current document's (or before any title line) is
  malformed: an error naming its line, never a document of its own.
- Bad offsets: a mention outside the text (negative, past its end, empty or reversed) or whose
  text is not the text at its offsets is skipped and counted (`PubTatorDocument.skipped`); callers
  report the count once per file. A mention line whose offsets are not integers is malformed.
- Duplicate pmids: whole-file readers (`read_pubtator`) keep the first copy and warn once with a
  count, or refuse with `strict`; the streaming reader (`biogpt.io`) processes every copy and warns
  once with a count.

`parse_pubtator` streams documents and reports a malformed line with its document instead of
raising, so that `biogpt.io`'s reader can skip one bad document and go on (--keep-going) while
`read_pubtator`, the task data loader, stops at the first one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from biogpt.model.files import open_input

from .base import TaskDataError

logger = logging.getLogger(__name__)

_TEXT_LINE = re.compile(r"^([^\t|]+)\|([ta])\|(.*)$")
_OFFSET = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit accepts "²", which int() refuses
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
    line: int = field(default=0, compare=False)


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
    skipped: list[Malformed] = field(default_factory=list)  # mentions whose offsets do not fit the text

    @property
    def text(self) -> str:
        """The text PubTator's offsets index."""
        return f"{self.title} {self.abstract}"

    def cid_pairs(self) -> list[tuple[str, str]]:
        """(chemical MeSH, disease MeSH) of the CID lines: the BC5CDR relation gold."""
        return [(r.head, r.tail) for r in self.relations if r.type == "CID"]


def offset_problem(mention: Mention, text: str) -> str | None:
    """Why a mention's offsets do not fit `text` (the one bad-offset rule), or None."""
    where = f"mention {mention.text!r} at {mention.start}-{mention.end}"
    if not 0 <= mention.start < mention.end <= len(text):
        return f"{where} lies outside the text ({len(text)} characters)"
    found = text[mention.start : mention.end]
    if found != mention.text:
        return f"{where} does not match the text there ({found!r})"
    return None


def _checked(doc: PubTatorDocument) -> PubTatorDocument:
    """The document with its mentions split into those that fit its text and `skipped`."""
    text, kept = doc.text, []
    for mention in doc.mentions:
        problem = offset_problem(mention, text)
        if problem is None:
            kept.append(mention)
        else:
            doc.skipped.append(Malformed(mention.line, problem))
    doc.mentions = kept
    return doc


def parse_pubtator(lines: Iterable[tuple[int, str | Malformed]]) -> Iterator[PubTatorDocument | Malformed]:
    """Documents in file order from (line number, line) pairs; in place of a line, a caller may
    pass the `Malformed` of a line it could not read (not UTF-8). A document ends at a blank line
    or at a title/abstract line that does not complete it (see the module docstring). A malformed
    line marks its document (`problem`, the first one wins); an annotation line of no document
    (another pmid's, or before any title) comes out on its own."""
    doc: PubTatorDocument | None = None
    parts: set[str] = set()  # the title/abstract lines the current document has
    annotated = False
    for number, line in lines:
        if isinstance(line, Malformed):
            if doc is None:
                yield line
            else:
                doc.problem = doc.problem or line
            continue
        if not line.strip():
            if doc is not None:
                yield _checked(doc)
            doc = None
            continue
        match = _TEXT_LINE.match(line)
        if match is not None:
            pmid, part, text = match.groups()
            if doc is not None and (doc.pmid != pmid or part in parts or annotated):
                yield _checked(doc)
                doc = None
            if doc is None:
                doc, parts, annotated = PubTatorDocument(pmid, line=number), set(), False
            parts.add(part)
            if part == "t":
                doc.title = text
            else:
                doc.abstract = text
            continue
        cols = line.split("\t")
        if doc is None or cols[0] != doc.pmid:
            context = "; is this PubTator?" if doc is None else f" (inside document {doc.pmid})"
            yield Malformed(number, f"annotation line of pmid {cols[0]!r} with no title or abstract line of that pmid before it{context}")
            continue
        annotated = True
        if len(cols) >= 5 and _OFFSET.fullmatch(cols[1]) and _OFFSET.fullmatch(cols[2]):
            doc.mentions.append(Mention(int(cols[1]), int(cols[2]), cols[3], cols[4], cols[5] if len(cols) >= 6 else "", number))
        elif len(cols) == 4 and not _OFFSET.fullmatch(cols[1]):
            doc.relations.append(Relation(cols[1], cols[2], cols[3]))
        else:
            doc.problem = doc.problem or Malformed(number, MALFORMED_LINE)
    if doc is not None:
        yield _checked(doc)


def read_pubtator(path: str | os.PathLike[str], *, strict: bool = False) -> dict[str, PubTatorDocument]:
    """The documents of a PubTator file (gzip or not), keyed by pmid in file order. The first
    malformed line raises TaskDataError naming `file:line`. A repeated pmid keeps its first copy
    and a mention whose offsets do not fit is skipped, each kind reported by one warning with its
    count; with `strict` either raises TaskDataError naming its line instead."""
    docs: dict[str, PubTatorDocument] = {}
    duplicates: list[PubTatorDocument] = []
    skipped: list[Malformed] = []
    with open_input(path) as source:
        for item in parse_pubtator(source.lines()):
            problem = item if isinstance(item, Malformed) else item.problem
            if problem is not None:
                raise TaskDataError(f"{source.name}:{problem.line}: {problem.message}")
            assert isinstance(item, PubTatorDocument)
            if strict and item.skipped:
                raise TaskDataError(f"{source.name}:{item.skipped[0].line}: {item.skipped[0].message}")
            if item.pmid in docs:
                first = docs[item.pmid].line
                if strict:
                    raise TaskDataError(f"{source.name}:{item.line}: document {item.pmid} appears a second time (first at line {first})")
                duplicates.append(item)
                continue
            skipped += item.skipped
            docs[item.pmid] = item
        report_pubtator_problems(source.name, skipped=skipped, duplicates=duplicates, first_lines={p: d.line for p, d in docs.items()})
    return docs


def report_pubtator_problems(
    name: str, *, skipped: list[Malformed], duplicates: list[PubTatorDocument], first_lines: dict[str, int] | None = None, kept: str = "the first copy of each is kept"
) -> None:
    """One warning per kind of problem of a whole file (not one per mention or document)."""
    if skipped:
        first = skipped[0]
        logger.warning(
            "%s: %d mention%s whose offsets do not fit the text skipped (first: line %d: %s)",
            name, len(skipped), "" if len(skipped) == 1 else "s", first.line, first.message,
        )
    if duplicates:
        first_dup = duplicates[0]
        seen = (first_lines or {}).get(first_dup.pmid)
        earlier = f", first at line {seen}" if seen else ""
        logger.warning(
            "%s: %d document%s repeat%s the pmid of an earlier one (first: %s at line %d%s); %s",
            name, len(duplicates), "" if len(duplicates) == 1 else "s", "s" if len(duplicates) == 1 else "",
            first_dup.pmid, first_dup.line, earlier, kept,
        )


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
