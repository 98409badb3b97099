"""Helpers shared by every command: error reporting, logging, model loading, output files,
failure counting and progress bars."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from .devices import resolve_device, resolve_dtype
from .progress import NoProgress

DEBUG = False  # --debug: tracebacks for errors
QUIET = False  # --quiet: no progress bars
RESUME_HINT = False  # an interrupted run now could be continued with --resume


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
    if quiet:
        # -q leaves stderr to errors: the libraries' own warnings too (huggingface_hub and
        # datasets read these when first imported, and keep handlers of their own)
        import os
        import warnings

        warnings.simplefilter("ignore")
        for variable in ("HF_HUB_VERBOSITY", "DATASETS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
            os.environ.setdefault(variable, "error")
        for name in ("huggingface_hub", "datasets", "torch"):
            logging.getLogger(name).setLevel(logging.ERROR)


def load_causal_lm(name: str, *, device: str = "auto", dtype: str = "auto", quantize: str | None = None):
    """(model, tokenizer) for a local directory, hub id or fairseq directory, checked to fit."""
    import torch

    from biogpt.model import BioGptForCausalLM, BioGptTokenizer, CheckpointError

    dev = resolve_device(device)
    if quantize not in (None, "none", "int8"):
        raise UserError(f"--quantize {quantize}: expected none or int8")
    if quantize == "int8" and dev.type != "cpu":
        raise UserError("--quantize int8 is for CPU inference; on a GPU use --dtype bfloat16")
    load_dtype = torch.float32 if quantize == "int8" else resolve_dtype(dtype, dev)

    # A classifier loads as a causal LM without complaint (its LM head is the tied embedding),
    # and would then generate from a head it was never trained for: refuse it by its kind,
    # read from a local config.json before any weight is loaded (from the loaded config for a hub id).
    def refuse_classifier(architectures: object) -> None:
        heads = {"BioGptForTokenClassification": ("token-classification", "tag"),
                 "BioGptForSequenceClassification": ("sequence-classification", "classify")}
        for arch in architectures if isinstance(architectures, list) else ():
            if arch in heads:
                kind, command = heads[arch]
                raise UserError(f"{name}: a {kind} model ({arch}), not a language model; use it with `biogpt {command}`")

    local_config = Path(name).expanduser() / "config.json"
    if local_config.is_file():
        import json

        try:
            refuse_classifier(json.loads(local_config.read_text(encoding="utf-8")).get("architectures"))
        except (OSError, ValueError, AttributeError):
            pass  # a broken config.json: from_pretrained names the problem
    model = BioGptForCausalLM.from_pretrained(name, dtype=load_dtype, device=dev)
    refuse_classifier(model.config.extra.get("architectures"))
    if quantize == "int8":
        from biogpt.model.fast.quantize import quantize_int8

        model = quantize_int8(model)  # an int8 copy; the float model is dropped here
    tok_path, extra = getattr(model, "tokenizer_source", (name, []))
    tokenizer = BioGptTokenizer.from_pretrained(tok_path or name, extra_symbols=extra)
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(
            f"{name}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.config.vocab_size} rows; they do not belong together"
        )
    return model, tokenizer


def check_output_path(path: Path, *, force: bool, otherwise: str = "") -> None:
    """An output file may be written: a file name (not a folder) in a folder that exists, not
    there yet (or --force). Checked before any work, so a typo costs nothing; `otherwise` adds
    another way out. `-` and devices (/dev/stdout) are always writable."""
    from biogpt.model.files import check_writable_path, is_regular_target

    if str(path) == "-" or not is_regular_target(path):
        return
    check_writable_path(path)
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it{otherwise}")


def open_output(path: "Path | None", *, force: bool = False):
    """stdout for None or `-`; otherwise the caller wants `biogpt.model.files.atomic_file`."""
    if path is None or str(path) == "-":
        return sys.stdout
    raise ValueError("open_output: a file output goes through biogpt.model.files.atomic_file")


def inputs_or_stdin(inputs: "list[str] | None", *, command: str, alternative: str = "") -> list[str]:
    """The input arguments, or stdin (`-`) when there are none, unless stdin is a terminal:
    a batch command silently waiting on the keyboard looks hung, so that is a usage error
    saying what to give. An explicit `-` still reads the terminal."""
    if inputs:
        return inputs
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError(f"no input: give FILE arguments, pipe documents in (cat docs.jsonl | biogpt {command}){alternative}")
    return ["-"]


class DocumentError(Exception):
    """A document could not be processed and --keep-going was not given (exit code 1)."""

    exit_code = 1


SHOWN_FAILURES = 10


class FailureLog:
    """Counts failed documents; without --keep-going the first one stops the run (after
    everything before it was written), with it each goes to `sink` (--errors FILE) as a JSONL
    line. The sink is opened and closed by its owner (biogpt.runstate.RunState)."""

    def __init__(self, *, keep_going: bool, sink: Any = None, name: "Path | None" = None) -> None:
        self.keep_going = keep_going
        self.count = 0
        self._sink = sink
        self._name = name

    def fail(self, location: str, message: str, record_id: str | None = None) -> None:
        import json

        self.count += 1
        if not self.keep_going:
            raise DocumentError(f"{location}: {message} (pass --keep-going to skip failing documents)")
        # the first few are shown; a run over a broken corpus must not bury the terminal (the
        # count is summed up at the end, every failure is in --errors FILE)
        if self.count <= SHOWN_FAILURES:
            logging.getLogger("biogpt").warning("skipped %s: %s", location, message)
        elif self.count == SHOWN_FAILURES + 1:
            logging.getLogger("biogpt").warning("more documents skipped; the count follows at the end")
        if self._sink is not None:
            line = json.dumps({"id": record_id, "location": location, "error": message}, ensure_ascii=False) + "\n"
            try:
                self._sink.write(line)
                self._sink.flush()
            except OSError as exc:
                from biogpt.model.files import output_failure

                raise output_failure(self._name or "--errors", exc) from exc


def progress(total: int | None = None, *, description: str = "", quiet: bool = False):
    """A rich progress bar on stderr when stderr is a terminal; otherwise a no-op object."""
    if quiet or not sys.stderr.isatty():
        return NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    bar.start()
    bar.add_task(description, total=total)
    return _RichProgress(bar)


class _RichProgress:
    def __init__(self, bar) -> None:
        self.bar = bar

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.bar.task_ids[0], n)

    def close(self) -> None:
        self.bar.stop()


def provenance(model, model_name: str, **options) -> dict:
    """What every JSONL record and metrics file carries: tool version, model id, revision or
    weights hash, and the options that shaped the output."""
    from biogpt.model.checkpoint import weights_fingerprint

    from . import __version__

    info = {"tool": f"biogpt-cli {__version__}", "model": model_name}
    cached = getattr(model, "_fingerprint", None)
    if cached is None:
        cached = weights_fingerprint(getattr(model, "weight_files", []))
        model._fingerprint = cached
    info.update(cached)
    info.update(options)
    return info
