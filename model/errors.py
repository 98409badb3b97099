"""Typed exceptions of the BioGPT core.

The library raises these with a message a user can act on (which file, which key, what was
expected, what was found); only the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class BioGptError(Exception):
    """Base class: every error the core raises on purpose derives from it."""


class ConfigError(BioGptError, ValueError):
    """A configuration file or value is malformed or inconsistent."""


class InvalidOptionError(BioGptError, ValueError):
    """An option of a library call (generate's, from_pretrained's) is out of its range or
    contradicts another: the caller's mistake, named with the value that was given."""


class VocabularyError(BioGptError):
    """A vocabulary file (vocab.json, merges.txt, dict.txt, bpecodes) is missing or malformed."""


class ModelNotFoundError(BioGptError):
    """A model name is neither a local directory nor a reachable (or cached) hub id."""


class CheckpointError(BioGptError):
    """A checkpoint file is missing, unreadable, or does not fit the configuration."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked to import something outside the allow-list; nothing was executed."""
