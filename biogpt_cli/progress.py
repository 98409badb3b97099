"""The progress interface the library reports to (`advance(n)`, `close()`), and its silent
implementation. Here, apart from the CLI's rich bar (`_common.progress`), so the training library
uses it without importing the command line or rich."""

from __future__ import annotations


class NoProgress:
    """Progress that shows nothing: quiet runs, non-terminal stderr, other ranks than the first."""

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
