"""Helpers shared by every command: error reporting, logging, model-name defaults."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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


def resolve_device(device: str) -> "torch.device":
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is a user error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (try --device cpu)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple's MPS backend is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps") from None


def resolve_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    """`auto`: bfloat16 on GPUs that support it, float16 on other GPUs, float32 on CPU."""
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise UserError(f"--dtype {dtype}: expected auto, float32, bfloat16 or float16")
    return table[dtype]


def load_causal_lm(name: str, *, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) for a local directory, hub id or fairseq directory, checked to fit."""
    from model import BioGptForCausalLM, BioGptTokenizer, CheckpointError

    dev = resolve_device(device)
    model = BioGptForCausalLM.from_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    tok_path, extra = getattr(model, "tokenizer_source", (name, []))
    tokenizer = BioGptTokenizer.from_pretrained(tok_path or name, extra_symbols=extra)
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(
            f"{name}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.config.vocab_size} rows; they do not belong together"
        )
    return model, tokenizer


def open_output(path: "Path | None", *, force: bool = False, append: bool = False):
    """stdout, or a file that is never silently overwritten (one line per record, flushed)."""
    import sys

    if path is None or str(path) == "-":
        return sys.stdout
    if path.exists() and not (force or append):
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if path.parent and not path.parent.exists():
        raise UserError(f"{path.parent}: no such directory for the output file")
    return path.open("a" if append else "w", encoding="utf-8")
