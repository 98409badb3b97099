"""The writer interface every output format implements (biogpt_cli/io.py's formats and
biogpt_cli/bioc.py's): one record at a time, flushed, and a footer at close where the format has
one. A module of its own so that io (which registers every format) and bioc (which implements
two) both import it and not each other."""

from __future__ import annotations

from typing import Any, TextIO


class Writer:
    """Writes one output record (a dict) at a time and flushes it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _emit(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        """After the last record: a format with a footer (BioC's collection) writes it here."""
