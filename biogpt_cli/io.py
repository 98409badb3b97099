"""Document readers shared by every command that reads input: one registry, streaming.

Each reader yields `Record(id, text, fields)`; ids are the given ones or `file:line`.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ._common import UserError


@dataclass
class Record:
    id: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[TextIO, str, "ReadOptions"], Iterator[Record]]
READERS: dict[str, Reader] = {}


@dataclass
class ReadOptions:
    text_key: str = "text"
    id_key: str | None = None


def reader(name: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return register


@reader("lines")
def read_lines(stream: TextIO, source: str, opts: ReadOptions) -> Iterator[Record]:
    for number, line in enumerate(stream, 1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield Record(f"{source}:{number}", text)


@reader("jsonl")
def read_jsonl(stream: TextIO, source: str, opts: ReadOptions) -> Iterator[Record]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}:{number}: not valid JSON ({exc.msg}); is this really a JSONL file?") from None
        if not isinstance(obj, dict):
            raise UserError(f"{source}:{number}: expected a JSON object per line, found {type(obj).__name__}")
        text = _text_of(obj, opts.text_key)
        if text is None:
            raise UserError(
                f"{source}:{number}: no {opts.text_key!r} field (nor title/abstract); pass --text-key "
                f"(fields here: {', '.join(list(obj)[:8])})"
            )
        rid = obj.get(opts.id_key) if opts.id_key else obj.get("id", obj.get("pmid"))
        yield Record(str(rid) if rid is not None else f"{source}:{number}", text, obj)


def _text_of(obj: dict[str, Any], key: str) -> str | None:
    if isinstance(obj.get(key), str):
        return obj[key]
    if key == "text" and ("title" in obj or "abstract" in obj):
        title, abstract = str(obj.get("title") or "").strip(), str(obj.get("abstract") or "").strip()
        return f"{title} {abstract}".strip()
    return None


def _open(path: str) -> tuple[TextIO, str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"), "stdin"
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file")
    if p.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    raw = p.open("rb")
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="replace"), p.name
    raw.seek(0)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), p.name


def detect_format(path: str, first_line: str) -> str:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if first_line.lstrip().startswith("{"):
        return "jsonl"
    return "lines"


def read_records(path: str, *, input_format: str = "auto", options: ReadOptions | None = None) -> Iterator[Record]:
    """Stream the records of one input (a file, a .gz file, or `-` for stdin)."""
    opts = options or ReadOptions()
    stream, source = _open(path)
    try:
        first = stream.readline()
        fmt = detect_format(path, first) if input_format == "auto" else input_format
        if fmt not in READERS:
            raise UserError(f"--input-format {fmt}: expected auto, {', '.join(READERS)}")
        yield from READERS[fmt](_Chain(first, stream), source, opts)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    finally:
        if stream is not None and path != "-":
            stream.close()


class _Chain(io.TextIOBase):
    """A stream whose first line was already read (for format detection)."""

    def __init__(self, first: str, rest: TextIO) -> None:
        self._first: str | None = first
        self._rest = rest

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        if self._first:
            yield self._first
        self._first = None
        yield from self._rest
