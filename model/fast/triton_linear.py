"""The one-row linear kernel of the fused decode layer: act(LN(x) @ W^T + b), optionally added
into the residual stream in place or written as keys and values into the cache.

Why one kernel per projection with the work around it: at one row a decode step reads every
weight once and does almost nothing with it, so its time is the kernels' count and how close
each gets to the memory's bandwidth; LayerNorm, the bias, the activation, the residual and the
key/value write each cost a kernel of their own in the plain step. Results are rounded where
the plain step rounds (LayerNorm's output, each projection's output before the residual or the
activation), so the outputs stay within the dtype's rounding of the plain step's.
"""

from __future__ import annotations

import torch

from .triton_common import ACTIVATIONS, Config, launch_options, sm_count, triton

if triton is not None:
    import triton.language as tl

    from .triton_common import gdc_launch_dependents, gdc_wait

TILE_ELEMENTS = 4096  # weights per program and loop iteration (8 KB in half precision)
UNROLL_ELEMENTS = 8192  # unroll K when a program's whole weight slice (BLOCK_N x K) is at most this per 4 warps


def rule_config(n: int, k: int, sm_count: int) -> Config:
    """The first-guess launch configuration for an (n, k) weight: the widest row block that still
    gives every multiprocessor two programs (memory parallelism), TILE_ELEMENTS weights per loop
    iteration, K unrolled when the program's weights fit the registers (`unrolls`). Tuned
    configurations (tuning.launch_config) replace it where measured."""
    block_n = 4
    for candidate in (32, 16, 8):
        if -(-n // candidate) >= 2 * sm_count:
            block_n = candidate
            break
    block_k = max(64, min(TILE_ELEMENTS // block_n, triton.next_power_of_2(k)))
    return block_n, block_k, 4, unrolls(block_n, k, 4)


def unrolls(block_n: int, k: int, warps: int) -> bool:
    """Whether unrolling K keeps a program's in-flight weights within its registers (compiled for
    sm_90, larger slices spill; BENCHMARKS.md)."""
    return block_n * k <= UNROLL_ELEMENTS * warps // 4


if triton is not None:

    @triton.jit
    def _weight_tile(w_ptr, offs_n, n_ok, k0, K: tl.constexpr, BLOCK_K: tl.constexpr):
        """w[offs_n, k0:k0+BLOCK_K], zeros outside the weight."""
        ks = k0 + tl.arange(0, BLOCK_K)
        return tl.load(w_ptr + offs_n[:, None] * K + ks[None, :], mask=n_ok[:, None] & (ks < K)[None, :], other=0.0)

    @triton.jit
    def _row_input(x_row, ln_w_ptr, ln_b_ptr, k0, mean, rstd, K: tl.constexpr, BLOCK_K: tl.constexpr, LAYER_NORM: tl.constexpr):
        """x[k0:k0+BLOCK_K] in float32, through LayerNorm when asked."""
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        x = tl.load(x_row + ks, mask=k_ok, other=0.0).to(tl.float32)
        if LAYER_NORM:  # LayerNorm's output, rounded to the model's dtype as the plain step's
            g = tl.load(ln_w_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            beta = tl.load(ln_b_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            x = ((x - mean) * rstd * g + beta).to(x_row.dtype.element_ty).to(tl.float32)
        return x

    @triton.jit
    def _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K: tl.constexpr, BLOCK_K: tl.constexpr, LAYER_NORM: tl.constexpr):
        """acc += w[offs_n, k0:k0+BLOCK_K] * x[k0:k0+BLOCK_K] (x through LayerNorm when asked)."""
        x = _row_input(x_row, ln_w_ptr, ln_b_ptr, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
        w = _weight_tile(w_ptr, offs_n, n_ok, k0, K, BLOCK_K)
        return acc + w.to(tl.float32) * x[None, :]

    @triton.jit
    def _row_linear_kernel(
        x_ptr, w_ptr, b_ptr, y_ptr, ln_w_ptr, ln_b_ptr, kv_ptr, pos_ptr,
        N, stride_xm, stride_ym, eps,
        kv_stride_kv, kv_stride_b, kv_stride_h, kv_stride_t,
        K: tl.constexpr, Q_WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_ROW: tl.constexpr, UNROLL: tl.constexpr,
        HAS_BIAS: tl.constexpr, LAYER_NORM: tl.constexpr, ACTIVATION: tl.constexpr, RESIDUAL: tl.constexpr,
        KV_WRITE: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        # ~90 lines: one kernel whose variants (PDL, unrolled, LayerNorm, activation, residual,
        # key/value write) are compile-time branches of one body, so each compiles to straight code
        """y[m, n] = act(LN(x[m]) . w[n] + b[n]) (+ y[m, n]) for BLOCK_N outputs n of row m.

        K is a compile-time constant. A one-row product is bound by memory latency: UNROLL puts
        every iteration's weight loads in flight at once (straight-line code), at the price of
        registers (a wide slice spills); the rolled loop needs far fewer and relies on several
        programs per multiprocessor instead. `tuning.launch_config` decides, `tuning.tune` measures.

        PDL (programmatic dependent launch, launched with launch_pdl): the next kernel may start
        as soon as every program of this one has, and this one reads nothing another kernel
        writes before gdc_wait (which returns once the previous kernel has finished and its
        writes are visible). Unrolled, the program's whole weight slice (and bias, LayerNorm
        parameters: constants) is requested before the wait, so the loads overlap the
        previous kernel's tail instead of following it; rolled, the first loop iteration's
        weight tile."""
        if PDL:
            gdc_launch_dependents()
        m = tl.program_id(1)
        offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        x_row = x_ptr + m * stride_xm
        dtype = x_ptr.dtype.element_ty
        cols = tl.arange(0, BLOCK_ROW)  # a whole row (BLOCK_ROW >= K)
        if PDL and HAS_BIAS:  # constants only before the wait
            bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        if PDL and UNROLL:
            w_all = _weight_tile(w_ptr, offs_n, n_ok, 0, K, BLOCK_ROW)
            if LAYER_NORM:
                g_all = tl.load(ln_w_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
                beta_all = tl.load(ln_b_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
        elif PDL:
            w_first = _weight_tile(w_ptr, offs_n, n_ok, 0, K, BLOCK_K)
        if PDL:
            gdc_wait()
        if LAYER_NORM:  # the whole row in one load: mean, then biased variance
            row = tl.load(x_row + cols, mask=cols < K, other=0.0).to(tl.float32)
            mean = tl.sum(row, 0) / K
            centred = tl.where(cols < K, row - mean, 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 0) / K + eps)
        else:
            mean, rstd = 0.0, 1.0
        if PDL and UNROLL:  # the slice requested above, against the whole (normalised) row
            if LAYER_NORM:  # LayerNorm's output, rounded to the model's dtype as the plain step's
                x = (centred * rstd * g_all + beta_all).to(dtype).to(tl.float32)
            else:
                x = tl.load(x_row + cols, mask=cols < K, other=0.0).to(tl.float32)
            y = tl.sum(w_all.to(tl.float32) * x[None, :], 1)
        else:
            acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
            if UNROLL:  # straight-line code: every weight load of the program in flight at once
                for k0 in tl.static_range(0, K, BLOCK_K):
                    acc = _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
            else:  # a loop: few registers, many programs resident per multiprocessor
                if PDL:  # the first tile, requested before the wait
                    x = _row_input(x_row, ln_w_ptr, ln_b_ptr, 0, mean, rstd, K, BLOCK_K, LAYER_NORM)
                    acc += w_first.to(tl.float32) * x[None, :]
                for k0 in range(BLOCK_K if PDL else 0, K, BLOCK_K):
                    acc = _row_tile(acc, x_row, w_ptr, ln_w_ptr, ln_b_ptr, offs_n, n_ok, k0, mean, rstd, K, BLOCK_K, LAYER_NORM)
            y = tl.sum(acc, 1)
        if HAS_BIAS:
            if not PDL:
                bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
            y += bias
        if ACTIVATION != 0:
            y = y.to(dtype).to(tl.float32)  # the projection's output, as the plain step rounds it
            if ACTIVATION == 1:  # exact GELU
                y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
            else:  # tanh approximation; tanh(z) = 2 sigmoid(2z) - 1
                z = 0.7978845608028654 * (y + 0.044715 * y * y * y)
                y = 0.5 * y * (2.0 * tl.sigmoid(2.0 * z))
        y_row = y_ptr + m * stride_ym
        if RESIDUAL:  # y += projection: each program reads and writes only its own outputs
            y = y.to(dtype).to(tl.float32) + tl.load(y_row + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        if KV_WRITE:  # outputs [0, Q) are the query; [Q, 3Q) keys then values, into the cache
            tl.store(y_row + offs_n, y.to(dtype), mask=offs_n < Q_WIDTH)
            j = offs_n - Q_WIDTH
            which = j // Q_WIDTH  # 0 keys, 1 values
            head = (j % Q_WIDTH) // HEAD_DIM
            col = tl.load(pos_ptr + m)
            dst = kv_ptr + which * kv_stride_kv + m * kv_stride_b + head * kv_stride_h + col * kv_stride_t + j % HEAD_DIM
            tl.store(dst, y.to(dtype), mask=(offs_n >= Q_WIDTH) & n_ok)
        else:
            tl.store(y_row + offs_n, y.to(dtype), mask=n_ok)



def row_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    out: torch.Tensor,
    layer_norm: torch.nn.LayerNorm | None = None,
    activation: str | None = None,
    residual: bool = False,
    kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    config: Config | None = None,
    pdl: bool = False,
) -> torch.Tensor:
    """act(LN(x) @ weight^T + bias) into `out` (M, N), one program per BLOCK_N outputs and row.

    `residual`: add into `out`'s current values (out += ...). `kv` = (layer cache (2, B, H, S, D),
    each row's column (M,)): outputs from `out.shape[1]` on are keys then values, written into the
    cache at the row's column; `out` then receives only the query. `pdl`: launched as a
    programmatic dependent launch (see pdl_unavailable_reason). x (M, K) and out need
    contiguous rows; weight (N, K) must be contiguous."""
    M, K = x.shape
    N = weight.shape[0]
    if weight.stride() != (K, 1) or x.stride(1) != 1 or out.stride(1) != 1:
        raise ValueError("row_linear needs contiguous weight rows and contiguous x/out rows")
    if config is None:  # the fused step passes its tuned configuration; tests and tools may not
        config = rule_config(N, K, sm_count(x.device))
    block_n, block_k, warps, unroll = config
    if kv is not None:
        cache, columns = kv
        q_width, head_dim = out.shape[1], cache.shape[-1]
        kv_strides = (cache.stride(0), cache.stride(1), cache.stride(2), cache.stride(3))
    # unused pointers get the weight, which nothing writes (Triton's interpreter copies each argument back)
    if kv is None:  # Q_WIDTH and HEAD_DIM unused: constants that do not split compilations by N
        cache, columns, q_width, head_dim, kv_strides = weight, weight, 1, 1, (0, 0, 0, 0)
    ln_w, ln_b, eps = (layer_norm.weight, layer_norm.bias, layer_norm.eps) if layer_norm is not None else (weight, weight, 0.0)
    grid = (triton.cdiv(N, block_n), M)
    _row_linear_kernel[grid](
        x, weight, weight if bias is None else bias, out, ln_w, ln_b, cache, columns,
        N, x.stride(0), out.stride(0), eps, *kv_strides,
        K=K, Q_WIDTH=q_width, HEAD_DIM=head_dim, BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_ROW=triton.next_power_of_2(K), UNROLL=unroll,
        HAS_BIAS=bias is not None, LAYER_NORM=layer_norm is not None, ACTIVATION=ACTIVATIONS[activation] if activation else 0,
        RESIDUAL=residual, KV_WRITE=kv is not None, PDL=pdl, num_warps=warps, **launch_options(pdl),
    )  # fmt: skip
    return out
