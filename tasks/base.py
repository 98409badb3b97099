"""The one small interface every task implements, and the helpers they share.

A task turns the official data of one BioGPT benchmark into `Example`s whose `source` and
`target` are *exactly* the text of the official fine-tuning recipe (so a model fine-tuned by
that recipe is prompted the same way), parses a generated text into a structured
`Prediction` with the official post-processing rules, and scores predictions with numbers
equal to the official evaluators' (see docs/TASK_FORMATS.md, which this package follows to
the letter).

Nothing here needs a model: later commands (generation, training) call the same `load`,
`parse` and `score` so that every path agrees on formats.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from biogpt.model.errors import InputDataError, PathError
from biogpt.model.files import open_input, read_text

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
COPY = "<copy>"  # a clause slot filled by an entity name copied from the source


class TaskDataError(InputDataError):
    """A task's data file is malformed (or a task name or setting unknown); the message names the
    file (and the line or record) so that the user can fix it. A data error like any other bad
    input (exit 1); a missing file or folder is a `PathError` (a usage error)."""


class MalformedLine(ValueError):
    """A JSONL line that cannot be used; the message says why, without the location."""


# a JSON string escape of a UTF-16 surrogate: only such a line can decode to a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass
class Example:
    """One scored unit (a document, a question, a sentence).

    `source` is the model input *before* BPE (the tokenizer applies Moses + BPE), `target` the
    text the model is trained to generate, `gold` the structured truth the metric compares with.
    """

    id: str
    source: str
    target: str
    gold: Any
    text: str | None = None
    title: str | None = None
    abstract: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Prediction:
    """A parsed model output.

    `value` is the structured prediction (a list of clauses, an answer, a label list, spans);
    `failed` says the output could not be parsed at all (it is still scored: as an empty set of
    relations, or as a wrong answer). `missing` marks an example that had no prediction record.
    """

    id: str
    value: Any
    failed: bool = False
    output: str | None = None
    malformed_clauses: int = 0
    missing: bool = False


@dataclass(frozen=True)
class Decoding:
    """Decoding defaults. The official inference scripts call fairseq without `--beam`, i.e. beam 1."""

    num_beams: int = 1
    max_new_tokens: int = 256


@dataclass(frozen=True)
class Recipe:
    """Facts of the official fine-tuning recipe (docs/TASK_FORMATS.md's table); training reads them."""

    lr: float
    warmup_updates: int
    max_source_positions: int
    prompt_length: int
    max_epochs: int | None = None
    max_updates: int | None = None


class Task:
    """Base class of every task. Subclasses set the class attributes and implement `load`,
    `parse` and `score`; the rest has working defaults.

    Interface (what later commands rely on):
      - `load(data, split="test", **options) -> list[Example]`
      - `parse(output, example=None) -> Prediction`
      - `prediction_from_record(record, example) -> Prediction` (a predictions-file line)
      - `empty_prediction(example) -> Prediction` (an id absent from the predictions)
      - `score(examples, predictions) -> dict` (same order, same length)
      - `bootstrap_statistic(examples, predictions) -> f(indices) -> headline metrics`
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "generative"
    headline: ClassVar[tuple[str, ...]] = ("precision", "recall", "f1")
    splits: ClassVar[tuple[str, ...]] = SPLITS
    decoding: ClassVar[Decoding] = Decoding()
    recipe: ClassVar[Recipe | None] = None
    #: prefix patterns stripped from generated text, tried in this order
    prefixes: ClassVar[tuple[str, ...]] = (r"(learned[0-9]+ )+", "we can conclude that", "we have that", "in conclusion,")
    #: what `options` `load` accepts (the CLI checks flags against it)
    options: ClassVar[tuple[str, ...]] = ()

    #: one output clause for constrained decoding (`--constrained`): words, COPY (an entity name
    #: copied from the source) or a tuple of allowed words; None when the task has no clauses
    clause_template: ClassVar[tuple[Any, ...] | None] = None
    #: how clauses are joined, and what ends the output
    clause_separator: ClassVar[str] = "; "
    #: entity types of a relation's head and tail (for PubTator output)
    relation_roles: ClassVar[tuple[str, str]] = ("Entity", "Entity")

    def load(self, data: Path | str | None, split: str = "test", **options: Any) -> list[Example]:
        raise NotImplementedError

    # -- running a model on user documents (extract-relations, qa, classify) ---------------------

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        """The model input for a user's document, built by the same recipe as `load` builds it
        for the official data (so a fine-tuned model sees what it was trained on)."""
        raise TaskDataError(f"{self.name}: this task does not take free documents")

    def relations(self, prediction: Prediction) -> list[dict[str, Any]]:
        """Parsed relations as `{head, tail, relation, ...}` dicts (relation tasks only)."""
        return []

    def answer_candidates(self) -> list[tuple[str, str]]:
        """(label, target text) pairs a model can be scored on (question answering)."""
        return []

    def parse(self, output: str, example: Example | None = None) -> Prediction:
        raise NotImplementedError

    def score(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
        raise NotImplementedError

    # -- defaults shared by the generative tasks ---------------------------------------------

    def prediction_from_record(self, record: dict[str, Any], example: Example) -> Prediction:
        """A predictions-file line → Prediction. Generative tasks read the raw `output` text."""
        output = record.get("output")
        if not isinstance(output, str):
            pred = self.parse("", example)
            pred.failed = True
            return pred
        return self.parse(output, example)

    def empty_prediction(self, example: Example) -> Prediction:
        """What an id absent from the predictions file counts as: an output that parses to nothing."""
        pred = self.parse("", example)
        pred.failed = True
        pred.missing = True
        return pred

    def bootstrap_statistic(
        self, examples: Sequence[Example], predictions: Sequence[Prediction]
    ) -> Callable[[Sequence[int]], dict[str, float]]:
        """A function of resampled document indices → headline metrics. The default re-runs
        `score` on the resampled documents; tasks with additive counts override it for speed."""

        def stat(indices: Sequence[int]) -> dict[str, float]:
            result = self.score([examples[i] for i in indices], [predictions[i] for i in indices])
            return {k: float(result[k]) for k in self.headline}

        return stat

    def __repr__(self) -> str:
        return f"<task {self.name}>"


# -- helpers -----------------------------------------------------------------------------------


def clean_line(output: str) -> str:
    """The official post-processing's first step: strip, then drop one final '.'."""
    line = output.strip()
    if line.endswith("."):
        line = line[:-1]
    return line


def strip_prefix(line: str, patterns: Sequence[str]) -> str:
    """Try the patterns in order; the first found anywhere in the line keeps the text after its
    last occurrence (`re.split(p, line)[-1].strip()`), and no other pattern is tried."""
    for pattern in patterns:
        if re.search(pattern, line) is not None:
            return re.split(pattern, line)[-1].strip()
    return line


def prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Micro precision/recall/F1 from counts; 0 where a denominator is 0."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, f1_of(p, r)


def f1_of(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def micro_prf_statistic(per_doc: Sequence[tuple[int, int, int]]) -> Callable[[Sequence[int]], dict[str, float]]:
    """A bootstrap statistic from per-document (true positives, predicted, gold) counts: micro
    counts are sums of per-document ones, so resampled documents (one drawn twice counts twice)
    need no re-scoring."""

    def stat(indices: Sequence[int]) -> dict[str, float]:
        tp = sum(per_doc[i][0] for i in indices)
        n_pred = sum(per_doc[i][1] for i in indices)
        n_gold = sum(per_doc[i][2] for i in indices)
        precision, recall, f1 = prf(tp, n_pred, n_gold)
        return {"precision": precision, "recall": recall, "f1": f1}

    return stat


def match_clauses(
    line: str, separator: str, match: Callable[[str], re.Match[str] | None]
) -> tuple[list[re.Match[str]], int]:
    """The clauses of a parsed output: the stripped pieces between separators that `match`
    accepts, and how many non-empty pieces it did not (counted as malformed clauses)."""
    matches: list[re.Match[str]] = []
    malformed = 0
    for piece in line.split(separator):
        found = match(piece.strip())
        if found is not None:
            matches.append(found)
        elif piece.strip():
            malformed += 1
    return matches, malformed


def resolve_split_file(
    task: str, data: Path | str | None, split: str, filename: Callable[[str], str], splits: Sequence[str] = SPLITS
) -> tuple[Path, str]:
    """`--data` is the split's file or the folder holding it. Returns (file, split): when a file
    is given, its split is read from its name when it names one (test.json → test)."""
    if data is None:
        raise TaskDataError(f"{task}: no data given; pass the split's file or the folder holding it")
    path = Path(data)
    if split not in splits:
        raise TaskDataError(f"{task}: unknown split {split!r}; expected one of {', '.join(splits)}")
    if path.is_dir():
        candidate = path / filename(split)
        if not candidate.is_file():
            present = [s for s in splits if (path / filename(s)).is_file()]
            hint = (
                f"splits present there: {', '.join(present)} (pass --data-split {present[0]})"
                if present
                else f"expected files such as {', '.join(filename(s) for s in splits)}"
            )
            raise TaskDataError(f"{task}: no {split} split in {path}: {candidate.name} is missing; {hint}")
        return candidate, split
    if path.is_file():
        for s in splits:
            if path.name == filename(s):
                return path, s
        return path, split
    raise PathError(f"{task}: {path}: no such file or directory")


def parse_json_line(line: str) -> Any:
    """One JSON value of a JSONL line, or `MalformedLine` saying why not. Besides malformed JSON,
    two valid-looking lines are refused here, where their line is still known: one nested too
    deeply for Python to hold (RecursionError) and one holding a lone surrogate ("\\ud800"),
    which decodes to a `str` that no UTF-8 output can write."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        # json's "Unterminated string starting at" ends in "at": not "starting at at column 7"
        raise MalformedLine(f"malformed JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") from None
    except RecursionError:
        raise MalformedLine("JSON nested too deeply to read") from None
    if _SURROGATE_ESCAPE.search(line) is not None and has_lone_surrogate(value):
        raise MalformedLine("a JSON string holds a lone surrogate (such as \\ud800), which is not text")
    return value


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a string (or key) that is not valid Unicode text."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError):
        return False
    return False


def read_json(path: Path) -> Any:
    """A whole JSON file (gzip or not) with the error naming the file and position (never a bare
    JSONDecodeError); bad bytes are reported as `file:line` by the reader."""
    # read_text ends every line with "\n"; without the last one an error at the end of the file
    # is reported on its last line, not on a line after it that the file does not have
    text = read_text(path).removesuffix("\n")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg.removesuffix(' at')})") from None
    except RecursionError:
        raise TaskDataError(f"{path}: JSON nested too deeply to read") from None
    if "\\u" in text and has_lone_surrogate(value):
        raise TaskDataError(f"{path}: a JSON string holds a lone surrogate (such as \\ud800), which is not text")
    return value


def read_jsonl(path: Path | str, error: type[Exception] = TaskDataError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file (gzip or not, `-` for stdin),
    streaming. A line that is not a JSON object raises `error` (the caller's library error) naming
    `file:line`; bytes that are not UTF-8 raise InputDataError naming it too."""
    with open_input(path) as source:
        yield from json_objects(source.lines(), name=source.name, error=error)


def json_objects(
    lines: Iterable[tuple[int, str]], *, name: str, error: type[Exception] = TaskDataError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_jsonl`'s rule over numbered lines already read (blank lines skipped)."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            obj = parse_json_line(line)
        except MalformedLine as exc:
            raise error(f"{name}:{number}: {exc}") from None
        if not isinstance(obj, dict):
            raise error(f"{name}:{number}: expected a JSON object, found {type(obj).__name__}")
        yield number, obj


def require_mapping(obj: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TaskDataError(f"{path}: expected a JSON object of {what}, found {type(obj).__name__}")
    return obj


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0
