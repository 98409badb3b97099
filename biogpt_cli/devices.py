"""Device and dtype names as the commands take them (`--device`, `--dtype`), resolved to torch's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from biogpt.model.errors import InvalidOptionError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> "torch.device":
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidOptionError(f"--device {device}: CUDA is not available on this machine (try --device cpu)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidOptionError("--device mps: Apple's MPS backend is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InvalidOptionError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps") from None


def resolve_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    """`auto` follows the device (bfloat16 on GPUs that support it, float16 on other GPUs,
    float32 on CPU: a checkpoint's stored dtype is no guide to what runs fast here); any other
    name is the model's own parser's (`parse_dtype`)."""
    import torch

    from biogpt.model.checkpoint import parse_dtype

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return parse_dtype(dtype)
    except InvalidOptionError:
        raise InvalidOptionError(f"--dtype {dtype}: expected auto, float32, bfloat16 or float16") from None
