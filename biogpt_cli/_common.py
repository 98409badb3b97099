"""Helpers shared by every command: error reporting, logging, model-name defaults."""

from __future__ import annotations

import logging
import sys

DEFAULT_MODEL = "microsoft/biogpt"


class UserError(Exception):
    """A problem with the user's input or flags, reported as one line (exit code 2)."""

    exit_code = 2


def error_line(message: object) -> str:
    """The one line a user sees: no traceback, the program's name first."""
    text = " ".join(str(message).split()) or message.__class__.__name__
    return f"biogpt: error: {text}"


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Logs go to stderr; stdout carries data only."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
