"""What the Triton decode kernels share: Triton itself (absent on CPU installs), the
interpreter switch, programmatic dependent launch (PDL) and the multiprocessor count.

Off a GPU the kernels run only under Triton's interpreter (TRITON_INTERPRET=1: the CPU tests
run the same kernel code a GPU compiles)."""

from __future__ import annotations

import os
from typing import Any

import torch

try:  # Triton ships with torch's CUDA wheels; CPU installs have none (and need none)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

# the activations the kernel's epilogue computes (config.hidden_act -> kernel code)
ACTIVATIONS = {"gelu": 1, "gelu_new": 2, "gelu_pytorch_tanh": 2}
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# A launch configuration of the one-row linear kernel: (BLOCK_N, BLOCK_K, num_warps, unroll K).
Config = tuple[int, int, int, bool]


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_SM_COUNTS: dict[Any, int] = {}


def sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # interpreter runs: an H100's count, so the CPU tests take the GPU's configs
    key = device.index if device.index is not None else torch.cuda.current_device()
    if key not in _SM_COUNTS:
        _SM_COUNTS[key] = torch.cuda.get_device_properties(key).multi_processor_count
    return _SM_COUNTS[key]


def pdl_unavailable_reason(device: torch.device) -> str | None:
    """Why the kernels cannot be launched as programmatic dependent launches on `device` (None:
    they can). Why PDL: a one-row step is ~5 small kernels a layer, and between two of them the
    GPU idles while the next grid launches and its first loads travel (a measurable part of a
    step; BENCHMARKS.md); with PDL the next kernel's programs start,
    and request their weights, while the previous kernel finishes. Hopper (compute capability
    9.0) and later; Triton 3.3 or later. Under the interpreter the waits do nothing (the CPU
    tests run the same code)."""
    if triton is None:
        return "Triton is not installed"
    if not _HAS_GDC:
        return f"Triton {triton.__version__} has no grid dependency control (3.3 or later has)"
    if interpreted():
        return None
    if device.type != "cuda":
        return f"programmatic dependent launch needs a CUDA device (got {device.type})"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        return f"programmatic dependent launch needs compute capability 9.0 or later (this GPU has {major}.{minor})"
    return None


def launch_options(pdl: bool) -> dict[str, bool]:
    # passed only when asked: a Triton without the option would reject launch_pdl=False too
    return {"launch_pdl": True} if pdl and not interpreted() else {}


_HAS_GDC = False
if triton is not None:
    from triton.language.extra import cuda as _triton_cuda

    @triton.jit
    def _no_op():
        """A grid dependency call under the interpreter (one stream orders the kernels there
        anyway), or with a Triton that has none (PDL is then never asked for)."""
        pass

    # grid dependency control (Hopper's programmatic dependent launch): Triton 3.3 and later
    _HAS_GDC = hasattr(_triton_cuda, "gdc_wait")
    _REAL_GDC = _HAS_GDC and not interpreted()
    gdc_wait = _triton_cuda.gdc_wait if _REAL_GDC else _no_op
    gdc_launch_dependents = _triton_cuda.gdc_launch_dependents if _REAL_GDC else _no_op

    @triton.jit
    def _start_dependent(PDL: tl.constexpr):
        """A kernel that reads only what earlier kernels wrote: with PDL, let the next kernel
        launch, then wait for the previous one (see _row_linear_kernel)."""
        if PDL:
            gdc_launch_dependents()
            gdc_wait()
