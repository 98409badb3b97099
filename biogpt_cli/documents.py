"""Documents as passages: the one text rule every reader follows.

A reader hands a command a `Record` whose `text` is the document text and whose
`fields["passages"]` lists its passages (`{"type", "section", "section_type", "offset", "text"}`,
in document order, non-overlapping), with `text[offset:offset + len(passage_text)] == passage_text`
for every passage; offsets are Unicode code points (Python `str` indices).

The text rule, stated once:

- The leading title and abstract passages are joined by one space: exactly today's
  `io.document_text(title, abstract)`, so offsets into title + abstract (PubTator mentions,
  PubMed abstracts, BioC title/abstract documents) do not move.
- Every later passage (section paragraphs, captions, tables, references) follows after a blank
  line ("\\n\\n").
- Whitespace inside a passage is collapsed to single spaces by the readers that build text from
  markup (JATS, PubMed XML). Readers of text that is already text (lines, paragraphs, JSONL,
  PubTator, BioC) keep each passage's characters as given, because annotations in those files
  index them as they are.
- An empty passage is left out (after collapsing, when the reader collapses).

Passage `type`: title, abstract, paragraph, fig_caption, table_caption, table, reference, or text
(a format without structure: one passage holding the whole text). `section`: the section path
(nested section titles joined by " > "; an abstract's own title such as "Author Summary"; "" for
the title and plain text). `section_type`: title, abstract, introduction, methods, results,
discussion, conclusion or other (`section_type_of` normalises a section's type or title).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from biogpt.model.errors import InvalidOptionError

# ============================================================================ records
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


# ============================================================================ passages
PASSAGE_TYPES = ("title", "abstract", "paragraph", "fig_caption", "table_caption", "table", "reference", "text")
SECTION_TYPES = ("title", "abstract", "introduction", "methods", "results", "discussion", "conclusion", "other")
HEAD_TYPES = frozenset({"title", "abstract"})  # joined by one space (the rule's first line)
HEAD_SEPARATOR = " "
BODY_SEPARATOR = "\n\n"
INCLUDE_CHOICES = ("tables", "references", "formulas")


@dataclass(frozen=True)
class Passage:
    type: str
    text: str
    section: str = ""
    section_type: str = "other"
    offset: int = 0  # set by join_passages

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collapse(text: str) -> str:
    """Whitespace runs (any Unicode whitespace, as str.split sees it) to one space, stripped."""
    return " ".join(text.split())


def join_passages(passages: Iterable[Passage], *, collapse_space: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """The document text of `passages` by the module's rule, and the passages as dicts with
    their offsets in it (empty passages left out)."""
    parts: list[str] = []
    out: list[dict[str, Any]] = []
    length = 0
    in_head = True
    for p in passages:
        text = collapse(p.text) if collapse_space else p.text
        if not text:
            continue
        in_head = in_head and p.type in HEAD_TYPES
        if parts:
            sep = HEAD_SEPARATOR if in_head else BODY_SEPARATOR
            parts.append(sep)
            length += len(sep)
        out.append({"type": p.type, "section": p.section, "section_type": p.section_type, "offset": length, "text": text})
        parts.append(text)
        length += len(text)
    return "".join(parts), out


def title_abstract_passages(title: str, abstract: str) -> list[dict[str, Any]]:
    """The passages of `io.document_text(title, abstract)`: the same stripping, not collapsed
    (PubTator and JSONL offsets index these characters)."""
    title, abstract = title.strip(), abstract.strip()
    out = []
    if title:
        out.append({"type": "title", "section": "", "section_type": "title", "offset": 0, "text": title})
    if abstract:
        offset = len(title) + 1 if title else 0
        out.append({"type": "abstract", "section": "", "section_type": "abstract", "offset": offset, "text": abstract})
    return out


def text_passage(text: str) -> list[dict[str, Any]]:
    """One "text" passage over the whole text (none for an empty text)."""
    return [{"type": "text", "section": "", "section_type": "other", "offset": 0, "text": text}] if text else []


def passages_of(record: Any) -> list[dict[str, Any]]:
    """The record's passages (`fields["passages"]`), or for a record built without them one
    "text" passage over its whole text."""
    passages = record.fields.get("passages") if isinstance(getattr(record, "fields", None), dict) else None
    if isinstance(passages, list) and passages_fit(record.text, passages):
        return passages
    return text_passage(record.text)


def passages_fit(text: str, passages: list[Any]) -> bool:
    """Whether `passages` are contract passages of `text`: dicts with string type/section/
    section_type/text and an int offset, in order, non-overlapping, each found at its offset."""
    end = 0
    for p in passages:
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("type", "section", "section_type", "text")):
            return False
        offset = p.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < end:
            return False
        if text[offset : offset + len(p["text"])] != p["text"]:
            return False
        end = offset + len(p["text"])
    return True


# --------------------------------------------------------------------------- section types
# keyword -> normalised type; the earliest keyword in a title wins ("Results and Discussion" is results)
_SECTION_WORDS = {
    "introduction": "introduction", "intro": "introduction", "background": "introduction",
    "method": "methods", "methods": "methods", "methodology": "methods", "materials": "methods", "material": "methods",
    "patients": "methods", "subjects": "methods", "participants": "methods", "experimental": "methods", "procedures": "methods",
    "results": "results", "result": "results", "findings": "results",
    "discussion": "discussion",
    "conclusion": "conclusion", "conclusions": "conclusion", "concluding": "conclusion",
}
_WORD = re.compile(r"[a-z]+")
_NOT_A_PART = frozenset({"supplementary", "supporting", "supplemental", "acknowledgments", "acknowledgements", "abbreviations", "funding"})


def section_type_of(value: str | None) -> str | None:
    """The normalised section type a sec-type attribute or a section title names (JATS
    "materials|methods", "Results and Discussion", BioC "METHODS"/"INTRO"/"CONCL"), or None."""
    if not value:
        return None
    words = _WORD.findall(value.lower())
    if _NOT_A_PART.intersection(words):  # "Supplementary Materials" is not the methods
        return None
    for word in words:
        if word in _SECTION_WORDS:
            return _SECTION_WORDS[word]
        if word in ("concl", "discuss"):  # BioC's abbreviated section types
            return "conclusion" if word == "concl" else "discussion"
    return None


# --------------------------------------------------------------------------- options
def parse_choices(value: str | Iterable[str] | None, *, choices: Iterable[str], flag: str) -> frozenset[str]:
    """A comma-separated (or repeated) option value as a set, every item one of `choices`."""
    if value is None:
        return frozenset()
    items = [value] if isinstance(value, str) else list(value)
    names = frozenset(part.strip().lower() for item in items for part in item.split(",") if part.strip())
    allowed = tuple(choices)
    unknown = sorted(names - set(allowed))
    if unknown:
        raise InvalidOptionError(f"{flag} {','.join(unknown)}: expected one or more of {', '.join(allowed)} (comma-separated)")
    return names


def passage_options(include: str | Iterable[str] | None, sections: str | Iterable[str] | None) -> dict[str, Any]:
    """--include and --sections as ReadOptions' `include` and `sections` keywords."""
    body_types = tuple(t for t in SECTION_TYPES if t not in HEAD_TYPES)
    chosen = parse_choices(sections, choices=body_types, flag="--sections") if sections else None
    return {"include": parse_choices(include, choices=INCLUDE_CHOICES, flag="--include"), "sections": chosen}
