"""Long documents: the units a task model runs on, and the merge of what it finds in them.

BioGPT sees 1,024 positions; a full-text article holds 5,000-15,000 tokens. `--long-documents`
says how a document becomes model inputs ("units"), each keeping its character offset in the
document text (`Record.text`), so whatever the model names is grounded back in the document:

- `truncate`: one unit, today's input (the task's official source: title + abstract when the
  record has them, else the text), cut with "..." by the recipe (`encode_source`).
- `passages`: the leading title and abstract passages together as the first unit (built from the
  record's title/abstract fields by the task's own recipe when they are exactly that text), then
  every later passage as its own unit; a passage longer than the model's room is split at
  sentence boundaries (pysbd) into pieces that fit, consecutive pieces sharing a small overlap.
- `windows`: fixed token windows with overlap over the whole text, passages ignored.
- `auto` (the default): `truncate` when today's single input is the whole document (no passages
  beyond title, abstract or plain text) and fits the model; `passages` otherwise.

`merge_relations` folds the relations found in a document's units into one triple per
(head, relation, tail) after normalisation, each with its evidence units.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

MODES = ("auto", "truncate", "passages", "windows")
FRONT_TYPES = ("title", "abstract")
# one overlap rule for sentence pieces and windows: at most an eighth of the room is repeated,
# enough to keep a relation whose two entities straddle a cut in one unit or the next
OVERLAP_FRACTION = 8
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Unit:
    """One model input of a document: `text` is `document[offset:offset + len(text)]`.

    `kind`: "document" (today's whole-document input), "front" (title and abstract together,
    whose source the task builds from the record's fields), or "passage" / "window" (the text)."""

    index: int
    kind: str
    passage: int  # the index of the (first) passage it comes from, in the document's passages
    type: str
    section: str
    section_type: str
    offset: int
    text: str

    @property
    def end(self) -> int:
        return self.offset + len(self.text)

    def describe(self) -> dict[str, Any]:
        """Where the unit stands in the document (an evidence's location)."""
        return {"passage": self.passage, "unit": self.index, "type": self.type, "section": self.section,
                "section_type": self.section_type, "offset": self.offset, "end": self.end}


@dataclass(frozen=True)
class Budget:
    """How much text one unit may hold: `room` source tokens, counted by `tokens(text)` (the
    tokens of `text` as the task's source, e.g. lower-cased for BC5CDR)."""

    room: int
    tokens: Callable[[str], int]

    @property
    def overlap(self) -> int:
        return max(self.room // OVERLAP_FRACTION, 1)


def whole_document(passages: Sequence[dict[str, Any]]) -> bool:
    """Whether today's single input (title + abstract, else the text) is the whole document."""
    return all(p.get("type") in (*FRONT_TYPES, "text") for p in passages)


def plan_units(
    text: str, passages: Sequence[dict[str, Any]], *, mode: str, budget: Budget, fits: Callable[[], bool]
) -> list[Unit]:
    """The units of one document by `mode` (see the module docstring); `fits()` says whether
    today's single input fits the model (asked only by `auto`)."""
    if mode not in MODES:
        raise ValueError(f"unknown long-document mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "truncate" or (mode == "auto" and whole_document(passages) and fits()):
        return [Unit(0, "document", 0, "document", "", "", 0, text)]
    if mode == "windows":
        return _window_units(text, passages, budget)
    return _passage_units(text, passages, budget)


def _passage_units(text: str, passages: Sequence[dict[str, Any]], budget: Budget) -> list[Unit]:
    units: list[Unit] = []

    def add(kind: str, index: int, passage: dict[str, Any], start: int, end: int) -> None:
        units.append(Unit(len(units), kind, index, str(passage.get("type", "")), str(passage.get("section", "")),
                          str(passage.get("section_type", "")), start, text[start:end]))

    front = 0
    while front < len(passages) and passages[front].get("type") in FRONT_TYPES:
        front += 1
    rest = range(front, len(passages))
    if front:
        start, end = passages[0]["offset"], passages[front - 1]["offset"] + len(passages[front - 1]["text"])
        if budget.tokens(text[start:end]) <= budget.room:
            units.append(Unit(0, "front", 0, "title_abstract", "", "abstract", start, text[start:end]))
        else:  # a front too long for the model is read like any long passage
            rest = range(0, len(passages))
    for index in rest:
        passage = passages[index]
        if not passage["text"].strip():
            continue
        start = passage["offset"]
        for piece_start, piece_end in split_passage(passage["text"], budget):
            add("passage", index, passage, start + piece_start, start + piece_end)
    return units


def _window_units(text: str, passages: Sequence[dict[str, Any]], budget: Budget) -> list[Unit]:
    starts = [p["offset"] for p in passages]
    units = []
    for start, end in fit_runs(text, word_pieces(text, 0, len(text), budget.tokens), budget):
        index = max((i for i, s in enumerate(starts) if s <= start), default=0)
        passage = passages[index] if passages else {}
        units.append(Unit(len(units), "window", index, "window", str(passage.get("section", "")),
                          str(passage.get("section_type", "")), start, text[start:end]))
    return units


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    # pysbd (pyproject): rule-based, keeps "et al.", "e.g.", "Fig. 2", "i.v." inside a sentence;
    # clean=False and char_span=True give spans of the text as it is, so offsets stay exact
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text`, surrounding whitespace left out."""
    spans = []
    for span in _segmenter().segment(text):
        start, end = span.start, span.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def word_pieces(text: str, start: int, end: int, tokens: Callable[[str], int]) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each whitespace-separated word of text[start:end]."""
    return [(m.start(), m.end(), tokens(m.group())) for m in WORD.finditer(text, start, end)]


def split_passage(text: str, budget: Budget) -> list[tuple[int, int]]:
    """[start, end) pieces of a passage that each fit `budget.room` tokens: the whole passage
    when it fits, else runs of whole sentences (a sentence too long alone: runs of words),
    consecutive pieces sharing their boundary sentences up to `budget.overlap` tokens."""
    start, end = len(text) - len(text.lstrip()), len(text.rstrip())
    if budget.tokens(text[start:end]) <= budget.room:
        return [(start, end)]
    pieces: list[tuple[int, int, int]] = []
    for s, e in sentence_spans(text):
        n = budget.tokens(text[s:e])
        pieces += [(s, e, n)] if n <= budget.room else word_pieces(text, s, e, budget.tokens)
    return fit_runs(text, pieces, budget)


def fit_runs(text: str, pieces: Sequence[tuple[int, int, int]], budget: Budget, *, tries: int = 3) -> list[tuple[int, int]]:
    """`pack` runs of `pieces` of `text` whose text, tokenized whole, fits `budget.room`: pieces
    are counted one by one, and a run of them can count a few tokens more (the tokenizer
    reads a sentence's end differently mid-text), so a run over the room packs again with
    that much less room. A run of one piece too long alone is left to the recipe's cut."""
    singles = {(s, e) for s, e, _ in pieces}
    room = budget.room
    for _ in range(tries):
        runs = pack(pieces, room, max(room // OVERLAP_FRACTION, 1))
        over = max((budget.tokens(text[s:e]) - budget.room for s, e in runs if (s, e) not in singles), default=0)
        if over <= 0:
            break
        room -= over
    return runs


def pack(pieces: Sequence[tuple[int, int, int]], room: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy runs of consecutive (start, end, tokens) pieces, each at most `room` tokens (a
    single piece larger than that stands alone: the recipe cuts it). Each run after the first
    starts with the previous run's last pieces, up to `overlap` tokens but always the last one
    when the next new piece still fits beside it."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        while j < len(pieces) and (j == i or total + pieces[j][2] <= room):
            total += pieces[j][2]
            j += 1
        runs.append((pieces[i][0], pieces[j - 1][1]))
        if j == len(pieces):
            break
        k, back = j, 0
        while k - 1 > i and back + pieces[k - 1][2] + pieces[j][2] <= room and (k == j or back + pieces[k - 1][2] <= overlap):
            back += pieces[k - 1][2]
            k -= 1
        i = k
    return runs


# ============================================================================ a task's units
class TaskUnits:
    """How a generative task reads a document in units, one definition for the commands and the
    server: the budget counts a unit's text as the task's source (`task.source_for_document`)
    within the recipe's cap (`source_cap`: the rule that cuts it), and a unit's source is the
    official title + abstract input for the whole document, and for a front unit that is exactly
    that text, else the unit's text by the task's recipe."""

    def __init__(self, task: Any, tokenizer: Any, recipe: Any, *, room: int) -> None:
        from biogpt.tasks.runner import source_cap

        self.task, self.tokenizer = task, tokenizer
        self.tokens: Callable[[str], int] = lru_cache(maxsize=1 << 16)(self._count)  # windows count every word: most recur
        self.budget = Budget(source_cap(recipe, limit=room) or room, lambda text: self.tokens(task.source_for_document(text=text)))

    def _count(self, source: str) -> int:
        return len(self.tokenizer(source, add_special_tokens=False)["input_ids"])

    def source(self, record: Any, kind: str, text: str) -> str:
        from .io import document_text

        title, abstract = record.fields.get("title"), record.fields.get("abstract")
        official = isinstance(title, str) and isinstance(abstract, str) and document_text(title, abstract) == text
        if kind == "document" or (kind == "front" and official):
            return self.task.source_for_document(text=text, title=title, abstract=abstract)
        return self.task.source_for_document(text=text)

    def plan(self, record: Any, mode: str) -> list[Unit]:
        """The record's units by `mode` (plan_units)."""
        from .documents import passages_of

        return plan_units(record.text, passages_of(record), mode=mode, budget=self.budget,
                          fits=lambda: self.tokens(self.source(record, "document", record.text)) <= self.budget.room)


# ============================================================================ regrouping
@dataclass
class UnitItem:
    """One unit of one document, as it travels through batched generation."""

    record: Any
    unit: Unit
    source: str
    last: bool  # the document's last unit: its results are complete once this one's arrives


def by_document(results: Iterable[Any], unit_of: Callable[[Any], UnitItem | None]) -> Iterator[Any]:
    """Per-unit results (in input order) regrouped as (record, [(unit, result), ...]) per
    document; a result `unit_of` gives None for (a bad record) passes through as it is."""
    pending: list[tuple[Unit, Any]] = []
    for result in results:
        item = unit_of(result)
        if item is None:
            yield result
            continue
        pending.append((item.unit, result))
        if item.last:
            yield item.record, pending
            pending = []


# ============================================================================ merging
def name_key(name: str) -> str:
    """A generated name as the merge compares it: case and whitespace ignored."""
    return " ".join(name.split()).lower()


def entity_key(entity: dict[str, Any]) -> str:
    """The MeSH id when --entities mapped the name (so "aspirin" and "acetylsalicylic acid"
    meet), else the normalised name."""
    mesh = entity.get("id")
    return f"mesh:{mesh}" if mesh not in (None, "", "-1") else name_key(str(entity.get("name", entity.get("text", ""))))


def merge_relations(units: Sequence[tuple[Unit, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One triple per (head, relation, tail) key over a document's units, in order of first
    appearance. Each unit's relations carry spans in document coordinates and a clause
    probability `score`. The merged triple keeps today's relation keys (head/tail with the union
    of their spans, `score` = the highest probability) and adds `score_mean`, `support` (the
    number of units that found it) and `evidence` (per unit: where it is, the head and tail
    spans in that unit, null when the name does not occur there, and its probability)."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for unit, relations in units:
        for rel in relations:
            key = (entity_key(rel["head"]), name_key(str(rel["relation"])), entity_key(rel["tail"]))
            triple = merged.get(key)
            if triple is None:
                triple = merged[key] = {"head": {**rel["head"], "spans": []}, "tail": {**rel["tail"], "spans": []},
                                        "relation": rel["relation"], "evidence": []}
            evidence = triple["evidence"]
            if evidence and evidence[-1]["unit"] == unit.index:  # the same clause twice in one unit
                last = evidence[-1]
                if rel.get("score") is not None and (last["score"] is None or rel["score"] > last["score"]):
                    last["score"] = rel["score"]
                continue
            evidence.append({**unit.describe(), "head": rel["head"]["spans"] or None, "tail": rel["tail"]["spans"] or None,
                             "score": rel.get("score")})
    return [_summarise(triple) for triple in merged.values()]


def _summarise(triple: dict[str, Any]) -> dict[str, Any]:
    for role in ("head", "tail"):
        entity = triple[role]
        spans = sorted({tuple(s) for e in triple["evidence"] for s in (e[role] or [])})
        entity["spans"] = [list(s) for s in spans]
        entity["found"] = bool(spans)
    scores = [e["score"] for e in triple["evidence"] if e["score"] is not None]
    return {"head": triple["head"], "tail": triple["tail"], "relation": triple["relation"],
            "score": max(scores) if scores else None, "score_mean": sum(scores) / len(scores) if scores else None,
            "support": len(triple["evidence"]), "evidence": triple["evidence"]}


def supported(relations: list[dict[str, Any]], min_support: int) -> list[dict[str, Any]]:
    """The relations found by at least `min_support` units (a document read whole: 1 each)."""
    return [r for r in relations if r.get("support", 1) >= min_support]


def shift_relations(relations: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """Relations grounded in a unit's text, their spans moved to document coordinates."""
    out = []
    for rel in relations:
        moved = dict(rel)
        for role in ("head", "tail"):
            moved[role] = {**rel[role], "spans": [[s + offset, e + offset] for s, e in rel[role]["spans"]]}
        out.append(moved)
    return out


# ============================================================================ qa
def pick_answer(answers: Sequence[dict[str, float]]) -> int:
    """The unit whose answer decides a long document's question: the one whose best label has
    the highest probability (the most confident unit; a passage unrelated to the question
    should not outvote the one that answers it, as a majority or a mean would let it)."""
    return max(range(len(answers)), key=lambda i: max(answers[i].values()))
