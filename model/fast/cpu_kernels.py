"""int8 weight-only CPU matrix products (model/kernels/matvec.c), built on first use.

Why: decoding streams every weight once per token, so int8 layers should cost half the time of
bfloat16 ones; torch's CPU int8 kernel (`_weight_int8pack_mm`) converts each weight to float32
before multiplying, is no faster than bfloat16 on the CPUs we measure, and allows only one scale
per row. The C kernel's integer dot products (AVX-512 VNNI) take one scale per group of 64
inputs and keep ~15 bits of the activations, and its weights are packed in blocks of 4 rows,
group by group, so each thread reads one sequential stream and runs at the memory's speed
(row-major, the same arithmetic did not; see BENCHMARKS.md). It serves no-grad calls of up to
MAX_ROWS rows (decode steps, beams, short prompts) on torch's own OpenMP threads; longer
prompts, and machines without the instructions or a C compiler, multiply dequantized bfloat16
weights with torch instead (quantize.py).

The shared library is compiled once per source version into the user cache
(`$BIOGPT_CACHE` or `~/.cache/biogpt-cli`), atomically, so concurrent processes are safe.
`BIOGPT_CPU_KERNELS=0` turns the kernel off (for comparisons and debugging).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).parents[1] / "kernels" / "matvec.c"  # model/kernels/, shipped as package data
GROUP = 64  # inputs per int8 scale: one 64-byte vector load (128: no faster, larger logit error)
ROWS = 4  # output rows per block of the packed weights (kernels/matvec.c: ROWS)
FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", f"-DGROUP={GROUP}"]
CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")
MAX_ROWS = 24  # beyond this, dequantized bfloat16 weights through oneDNN are faster (measured; BENCHMARKS.md)

_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_supported() -> bool:
    """The CPU has the instructions (Linux lists them only when the OS saves AVX-512 state) and
    torch itself runs AVX-512 code here (its own check of the same, plus ATEN_CPU_CAPABILITY)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    if not all(f in flags for f in CPU_FLAGS):
        return False
    try:
        return torch.backends.cpu.get_cpu_capability() == "AVX512"
    except AttributeError:  # older torch: the flags alone
        return True


def _cache_dir() -> Path:
    from ..hub import cache_root

    return cache_root() / "kernels"


def _build() -> Path:
    source = SOURCE.read_bytes()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc/gcc) on PATH")
    tag = hashlib.sha256(source + " ".join([compiler, *FLAGS]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"matvec-{tag}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)  # atomic: a concurrent build writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("built the int8 CPU kernel: %s", target)
    return target


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("BIOGPT_CPU_KERNELS", "1") == "0" or not _cpu_supported():
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = exc.stderr.decode(errors="replace")[-500:] if isinstance(exc, subprocess.CalledProcessError) else exc
        logger.info("int8 CPU kernel unavailable, using torch's: %s", detail)
        return None
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.gemm_int8.argtypes = [p, p, p, p, i32, p, p, i32, i64, i64, i64, i64]
    lib.gemm_int8.restype = ctypes.c_int
    lib.dequantize_int8.argtypes = [p, p, p, i64, i64, i64]
    lib.dequantize_int8.restype = None
    _lib = lib
    return lib


def available() -> bool:
    return _load() is not None


def applies(x: torch.Tensor) -> bool:
    """Whether a call with input `x` (..., K) can take the kernel: CPU, no autograd, few rows."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and 0 < x.numel() <= MAX_ROWS * x.shape[-1]
        and not torch.is_grad_enabled()
        and _load() is not None
    )


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def linear_int8(
    x: torch.Tensor,
    weight: torch.Tensor,
    scales: torch.Tensor,
    corr: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
    out_features: int,
) -> torch.Tensor:
    """x (..., K) -> (..., out_features). weight int8 (Np / ROWS, Kp / GROUP, ROWS, GROUP) and
    scales float32 (Np / ROWS, Kp / GROUP, ROWS), packed as quantize.Int8Linear does (Np, Kp:
    out_features and K rounded up, zero padding); corr float32 (Np,) = sum over groups of
    scale x group sum of the weights; bias bfloat16 (out_features,) or None; all contiguous."""
    x = x.contiguous()
    groups = weight.shape[1]
    K = x.shape[-1]
    y = torch.empty(*x.shape[:-1], out_features, dtype=out_dtype)
    status = _lib.gemm_int8(  # type: ignore[union-attr]
        weight.data_ptr(), scales.data_ptr(), corr.data_ptr(), x.data_ptr(), int(x.dtype == torch.bfloat16),
        _ptr(bias), y.data_ptr(), int(out_dtype == torch.bfloat16), x.numel() // K, out_features, K, groups * GROUP,
    )
    if status != 0:
        raise MemoryError("int8 kernel: could not allocate its activation buffer")
    return y


def dequantize_int8(weight: torch.Tensor, scales: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """The bfloat16 (out_features, in_features) weight that packed int8 weights stand for."""
    groups = weight.shape[1]
    out = torch.empty(out_features, in_features, dtype=torch.bfloat16)
    _lib.dequantize_int8(weight.data_ptr(), scales.data_ptr(), out.data_ptr(), out_features, in_features, groups * GROUP)  # type: ignore[union-attr]
    return out
