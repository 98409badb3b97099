"""The int8 CPU kernel (model/fast/cpu_kernels.py, model/kernels/matvec.c): exact against float64 arithmetic
on the dequantized weights, packed layout, few-row and many-row paths, off by switch or without
the CPU or a compiler."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from biogpt.model.fast import cpu_kernels
from biogpt.model.fast.quantize import Int8Linear

needs_kernel = pytest.mark.skipif(
    not cpu_kernels.available(), reason="CPU lacks AVX-512 VNNI or no C compiler: the int8 kernel is not built here"
)
# The activations are split into two int8 halves (~15 bits) and each group's products are exact
# integer sums, so what is left is float32 rounding and the activation split.
KERNEL_TOLERANCE = 1e-4


def quantized(N: int, K: int, *, bias: bool, seed: int = 0) -> tuple[Int8Linear, torch.Tensor, torch.Tensor]:
    """An Int8Linear, its dequantized float64 weight (N, K) unpacked by hand, and the original."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) * 0.02
    w[0, : min(K, 5)] = 0.5  # one large weight per group: the scales must be per group
    b = torch.randn(N, generator=g) if bias else None
    layer = Int8Linear(w, b)
    blocks, groups, R, G = layer.weight_int8.shape
    deq = layer.weight_int8.double() * layer.scales.double()[..., None]  # (Np/R, Kp/G, R, G)
    deq = deq.transpose(1, 2).reshape(blocks * R, groups * G)[:N, :K]
    return layer, deq, w


def reference(layer: Int8Linear, dequant: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = x.double().reshape(-1, x.shape[-1]) @ dequant.T
    if layer.bias is not None:
        y = y + layer.bias.double()
    return y.reshape(*x.shape[:-1], -1)


def run_python(code: str, **env: str) -> tuple[str, str]:
    """Run `code` in a fresh interpreter (the kernel is loaded once per process): (stdout, stderr)."""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), out.stderr


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_packing_round_trips_and_scales_are_per_group():
    layer, deq, w = quantized(10, 200, bias=False)
    assert layer.weight_int8.shape == (3, 4, cpu_kernels.ROWS, cpu_kernels.GROUP)  # 10 -> 12 rows, 200 -> 256 inputs
    assert rel(deq, w) < 0.01
    # the group holding the large weights has a large scale; the others are not dragged up by it
    assert float(layer.scales[0, 0, 0]) > 5 * float(layer.scales[0, 1, 0])
    assert torch.equal(layer.dequantized(), deq.to(torch.bfloat16))


@needs_kernel
@pytest.mark.parametrize("N,K", [(1024, 4096), (37, 100), (5, 64), (3, 1), (64, 130), (6, 300)])
@pytest.mark.parametrize("rows", [1, 5, cpu_kernels.MAX_ROWS])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_float64_on_the_dequantized_weights(N, K, rows, x_dtype):
    layer, deq, _ = quantized(N, K, bias=True)
    x = (torch.randn(rows, 1, K) * 3).to(x_dtype)
    with torch.no_grad():
        assert cpu_kernels.applies(x)
        y = layer(x)
    assert y.shape == (rows, 1, N) and y.dtype == x_dtype
    tolerance = KERNEL_TOLERANCE if x_dtype == torch.float32 else 1e-2  # bfloat16 output rounding
    assert rel(y, reference(layer, deq, x)) < tolerance


@needs_kernel
def test_bfloat16_output_is_the_float32_output_rounded_to_nearest_even():
    layer, _, _ = quantized(300, 512, bias=True)
    x = torch.randn(3, 512)
    with torch.no_grad():
        args = (x, layer.weight_int8, layer.scales, layer.corr, layer.bias)
        y16 = cpu_kernels.linear_int8(*args, torch.bfloat16, layer.out_features)
        y32 = cpu_kernels.linear_int8(*args, torch.float32, layer.out_features)
    assert torch.equal(y16, y32.to(torch.bfloat16))


@needs_kernel
def test_zero_input_gives_the_bias_and_an_outlier_does_not_cost_precision():
    layer, deq, _ = quantized(16, 256, bias=True)
    with torch.no_grad():
        assert torch.equal(layer(torch.zeros(1, 256)), layer.bias.float()[None])
        spiky = torch.zeros(1, 256)
        spiky[0, 7], spiky[0, 100] = 1e4, -3e-3  # one outlier sets the activation scale
        assert rel(layer(spiky), reference(layer, deq, spiky)) < KERNEL_TOLERANCE


@needs_kernel
def test_many_rows_use_dequantized_bfloat16_weights_and_agree_with_the_kernel():
    layer, deq, _ = quantized(512, 1024, bias=True)
    x = torch.randn(cpu_kernels.MAX_ROWS + 1, 1024)
    with torch.no_grad():
        assert not cpu_kernels.applies(x)
        together = layer(x)  # torch (oneDNN) on the dequantized bfloat16 weight
        rows = torch.cat([layer(x[i : i + 1]) for i in range(x.shape[0])])  # the kernel
    assert rel(rows, reference(layer, deq, x)) < KERNEL_TOLERANCE
    assert rel(together, rows) < 1e-2  # bfloat16 activations and weights
    assert torch.equal(cpu_kernels.dequantize_int8(layer.weight_int8, layer.scales, 512, 1024), deq.to(torch.bfloat16))


def test_the_kernel_is_never_used_with_autograd_or_too_many_rows():
    with torch.no_grad():
        assert not cpu_kernels.applies(torch.randn(cpu_kernels.MAX_ROWS + 1, 8))
        assert not cpu_kernels.applies(torch.randn(1, 8, dtype=torch.float16))
    assert not cpu_kernels.applies(torch.randn(1, 8))  # grad mode on


def test_switch_turns_the_kernel_off_and_layers_still_work():
    code = (
        "import torch; from biogpt.model.fast import cpu_kernels; from biogpt.model.fast.quantize import Int8Linear;"
        "assert not cpu_kernels.available();"
        "l = Int8Linear(torch.randn(8, 64), None);"
        "x = torch.randn(1, 64);"
        "torch.set_grad_enabled(False);"
        "y = l(x); assert l.dequantized_cache is not None;"  # no kernel: the bfloat16 weight is kept
        "ref = x @ l.dequantized().float().T;"
        "print(tuple(y.shape), float((y - ref).norm() / ref.norm()) < 1e-2)"
    )
    assert run_python(code, BIOGPT_CPU_KERNELS="0")[0] == "(1, 8) True"


def test_a_failed_build_falls_back_to_torch(tmp_path):
    code = (
        "import logging, torch; logging.basicConfig(level=logging.INFO);"
        "from biogpt.model.fast import cpu_kernels; assert not cpu_kernels.available(); print('fallback')"
    )
    stdout, stderr = run_python(code, CC=str(tmp_path / "no-such-compiler"), BIOGPT_CACHE=str(tmp_path / "cache"), BIOGPT_CPU_KERNELS="1")
    assert stdout == "fallback"
    if cpu_kernels._cpu_supported():
        assert "int8 CPU kernel unavailable" in stderr
