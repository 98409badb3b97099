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


class ModelNotFoundError(BioGptError, OSError):
    """A model name is neither a local directory nor a reachable (or cached) hub id.

    Also an OSError: transformers raises OSError for a checkpoint it cannot find, so code written
    for transformers (`except OSError:` around `from_pretrained`) catches ours too."""


class CheckpointError(BioGptError):
    """A checkpoint file is missing, unreadable, or does not fit the configuration."""


class ShapeMismatchError(CheckpointError, RuntimeError):
    """A checkpoint tensor's shape differs from the model's (a vocabulary or label count that
    does not match the configuration). The message names the file, the key and both shapes.
    Also a RuntimeError, which transformers raises for it (`ignore_mismatched_sizes=True`
    re-initialises such tensors instead)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked to import something outside the allow-list; nothing was executed."""


class PathError(BioGptError):
    """A path given (to read or to write) is missing or the wrong kind: no such file, a folder
    where a file is expected, a text file where a model folder is expected, an output whose
    folder does not exist. The message names the path and what was expected: the caller's
    mistake, reported like a bad option."""


class ModelPathError(PathError, OSError):
    """A model folder or hub id given to from_pretrained is missing or the wrong kind (no such
    folder, a file where a model folder is expected, a folder without weights). A PathError (a
    usage error for the command line) and an OSError, as transformers raises for a missing
    checkpoint. Paths of other inputs stay plain PathErrors: the library's own `except OSError`
    around file operations must not swallow them."""


class InputDataError(BioGptError):
    """An input file cannot be read as the text it should hold: binary, a broken gzip stream,
    bytes that are not UTF-8, a line that is not the expected format. The message names
    `file:line` (or the file when no line is to blame) and what was found."""


class OutputError(BioGptError):
    """An output could not be written (full disk, file size limit, read-only folder, a folder in
    the way). The message names the final path and the reason in words; whatever was started
    under a temporary name was removed and nothing appeared under the final name."""
