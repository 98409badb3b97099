"""The int8 VNNI matrix-vector kernel (model/cpu_kernels.py): exact against float64 arithmetic
on the dequantized weights, used by single-row int8 calls, off by switch or without the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from model import cpu_kernels
from model.quantize import Int8Linear

needs_kernel = pytest.mark.skipif(
    not cpu_kernels.available(), reason="CPU lacks AVX-512 VNNI or no C compiler: the int8 kernel is not built here"
)
# The activations are split into two int8 halves (~15 bits) and the products are exact integer
# sums, so the only error left is float32 rounding of the result and the activation split.
KERNEL_TOLERANCE = 1e-4


def quantized(N: int, K: int, *, bias: bool, seed: int = 0) -> tuple[Int8Linear, torch.Tensor]:
    """An Int8Linear and its dequantized float64 weights."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) * 0.02
    b = torch.randn(N, generator=g) if bias else None
    layer = Int8Linear(w, b)
    return layer, layer.weight_int8.double() * layer.scales.double()[:, None]


def reference(layer: Int8Linear, dequant: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = x.double().reshape(-1, x.shape[-1]) @ dequant.T
    if layer.bias is not None:
        y = y + layer.bias.double()
    return y.reshape(*x.shape[:-1], -1)


@needs_kernel
@pytest.mark.parametrize("N,K", [(1024, 4096), (37, 100), (5, 64), (3, 1), (64, 130), (4, 16385 - 1)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_float64_on_the_dequantized_weights(N, K, bias, x_dtype):
    layer, dequant = quantized(N, K, bias=bias)
    x = torch.randn(1, 1, K).to(x_dtype) * 3
    with torch.no_grad():
        assert cpu_kernels.applies(x)
        y = cpu_kernels.linear_int8(x, layer.weight_int8, layer.scales, layer.rowsum, layer.bias, torch.float32)
    want = reference(layer, dequant, x)
    assert y.shape == (1, 1, N) and y.dtype == torch.float32
    err = float((y.double() - want).norm() / want.norm())
    assert err < KERNEL_TOLERANCE, err


@needs_kernel
def test_kernel_writes_bfloat16_rounded_to_nearest_even():
    layer, dequant = quantized(300, 512, bias=True)
    x = torch.randn(1, 512)
    with torch.no_grad():
        y16 = cpu_kernels.linear_int8(x, layer.weight_int8, layer.scales, layer.rowsum, layer.bias, torch.bfloat16)
        y32 = cpu_kernels.linear_int8(x, layer.weight_int8, layer.scales, layer.rowsum, layer.bias, torch.float32)
    assert y16.dtype == torch.bfloat16
    assert torch.equal(y16, y32.to(torch.bfloat16))


@needs_kernel
def test_zero_input_gives_the_bias_and_extreme_inputs_stay_exact():
    layer, dequant = quantized(16, 256, bias=True)
    with torch.no_grad():
        zero = layer(torch.zeros(1, 256))
        assert torch.allclose(zero, layer.bias.float(), atol=0, rtol=0)
        spiky = torch.zeros(1, 256)
        spiky[0, 7], spiky[0, 100] = 1e4, -3e-3  # one outlier dominates the activation scale
        want = reference(layer, dequant, spiky)
        err = float((layer(spiky).double() - want).norm() / want.norm())
    assert err < KERNEL_TOLERANCE


@needs_kernel
def test_single_rows_take_the_kernel_and_agree_with_torchs_int8_path():
    layer, dequant = quantized(512, 1024, bias=True)
    x = torch.randn(3, 1024)
    with torch.no_grad():
        rows = torch.cat([layer(x[i : i + 1]) for i in range(3)])  # kernel, one row at a time
        together = layer(x)  # several rows: torch._weight_int8pack_mm, activations in bfloat16
        want = reference(layer, dequant, x)
        layer.fast = False
        torch_rows = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    kernel_err = float((rows.double() - want).norm() / want.norm())
    torch_err = float((together.double() - want).norm() / want.norm())
    assert kernel_err < KERNEL_TOLERANCE
    assert torch_err < 1e-2  # bfloat16 activations and scales
    assert torch.allclose(torch_rows, together, atol=1e-5, rtol=1e-5)  # same torch kernel


def test_the_kernel_is_never_used_with_autograd_or_several_rows():
    x = torch.randn(2, 8)
    with torch.no_grad():
        assert not cpu_kernels.applies(x)
    assert not cpu_kernels.applies(torch.randn(1, 8))  # grad mode on
    assert not cpu_kernels.applies(torch.randn(1, 8, dtype=torch.float16))


def test_switch_turns_the_kernel_off_and_layers_still_work():
    code = (
        "import torch; from model import cpu_kernels; from model.quantize import Int8Linear;"
        "assert not cpu_kernels.available();"
        "l = Int8Linear(torch.randn(8, 64), None);"
        "print(tuple(l(torch.randn(1, 64)).shape))"
    )
    env = {**os.environ, "BIOGPT_CPU_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 8)"


def test_a_failed_build_falls_back_to_torch(tmp_path):
    code = (
        "import logging, torch; logging.basicConfig(level=logging.INFO);"
        "from model import cpu_kernels; assert not cpu_kernels.available(); print('fallback')"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "BIOGPT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fallback"
    if cpu_kernels._cpu_supported():
        assert "int8 CPU kernel unavailable" in out.stderr
