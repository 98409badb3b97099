"""The other kernels of the fused decode step: the step's prologue (input vectors and the
attention mask), one-query attention over the cache, and greedy search's token choice.
Each replaces several small torch kernels with one (see fused.py for why the count matters)."""

from __future__ import annotations

import torch

from .triton_common import launch_options, triton

if triton is not None:
    import triton.language as tl

    from .triton_common import _start_dependent

GREEDY_BLOCK_V = 4096  # vocabulary entries per step of the greedy kernel's (unrolled) loop
DECODE_BLOCK_S = 64  # cache columns per step of the attention kernel's loop (spans are multiples of 128)


if triton is not None:

    @triton.jit
    def _decode_attention_kernel(
        q_ptr, kv_ptr, bias_ptr, last_ptr, out_ptr, part_ptr, stat_ptr, count_ptr,
        stride_qb, kv_stride_kv, kv_stride_b, kv_stride_h, kv_stride_t, stride_bias_b, stride_ob, scale,
        SPAN: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, COLS: tl.constexpr, SPLITS: tl.constexpr,
        SPLITS_P2: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One query per row and head against the cache's first SPAN columns, plus the additive
        mask: online softmax over BLOCK_S columns at a time (unrolled: the span is a constant),
        scores and probabilities in float32. Blocks after the row's last written column are
        skipped: the static cache has room for the whole generation, and early in it most of
        the span is empty (the plain step reads it all, masked). PDL: as _row_linear_kernel's
        (everything it reads comes from earlier kernels: it waits first).

        SPLITS > 1 (split over the cache, "flash decoding"): program (h, b, s) reads columns
        [s * COLS, (s + 1) * COLS) and writes its running maximum, sum and weighted values to
        the scratch buffers; the last of a (row, head)'s programs to finish (an atomic count,
        put back to 0 for the next launch) combines them. Why: one program per head and row is
        25 programs for BioGPT-Large, on a GPU with 132 multiprocessors, each walking the
        cache block after block, leaving most of the GPU idle."""
        _start_dependent(PDL)
        h = tl.program_id(0)
        b = tl.program_id(1)
        if SPLITS == 1:
            start = 0
        else:
            start = tl.program_id(2) * COLS
        last = tl.load(last_ptr + b)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + b * stride_qb + h * HEAD_DIM + d).to(tl.float32) * scale
        keys = kv_ptr + b * kv_stride_b + h * kv_stride_h
        values = keys + kv_stride_kv
        best = tl.full([1], -1.0e30, dtype=tl.float32)  # finite: a block with every key masked adds nothing
        total = tl.zeros([1], dtype=tl.float32)
        acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
        for s0 in tl.static_range(0, COLS, BLOCK_S):
            if start + s0 <= last:  # (so below SPAN: last < SPAN, and SPAN is a multiple of BLOCK_S)
                cols = start + s0 + tl.arange(0, BLOCK_S)
                k = tl.load(keys + cols[:, None] * kv_stride_t + d[None, :]).to(tl.float32)  # (BLOCK_S, D)
                scores = tl.sum(k * q[None, :], 1) + tl.load(bias_ptr + b * stride_bias_b + cols).to(tl.float32)
                new_best = tl.maximum(best, tl.max(scores, 0))
                p = tl.exp(scores - new_best)  # (BLOCK_S,)
                shrink = tl.exp(best - new_best)
                v = tl.load(values + cols[:, None] * kv_stride_t + d[None, :]).to(tl.float32)  # (BLOCK_S, D)
                acc = acc * shrink + tl.sum(p[:, None] * v, 0)
                total = total * shrink + tl.sum(p, 0)
                best = new_best
        if SPLITS == 1:
            tl.store(out_ptr + b * stride_ob + h * HEAD_DIM + d, (acc / total).to(out_ptr.dtype.element_ty))
        else:
            pair = b * tl.num_programs(0) + h  # this (row, head)'s scratch
            split = tl.program_id(2)
            one = tl.arange(0, 1)
            tl.store(part_ptr + (pair * SPLITS + split) * HEAD_DIM + d, acc)
            tl.store(stat_ptr + (pair * SPLITS + split) * 2 + one, best)
            tl.store(stat_ptr + (pair * SPLITS + split) * 2 + 1 + one, total)
            tl.debug_barrier()  # every thread's stores before the count (the atomic releases them)
            arrived = tl.atomic_add(count_ptr + pair, 1, sem="acq_rel", scope="gpu")
            if arrived == SPLITS - 1:  # the last: the others' partials are visible (acquired)
                sp = tl.arange(0, SPLITS_P2)
                ok = sp < SPLITS
                rows = pair * SPLITS + sp
                bests = tl.load(stat_ptr + rows * 2, mask=ok, other=-1.0e30, cache_modifier=".cg")  # from L2, not a stale L1
                totals = tl.load(stat_ptr + rows * 2 + 1, mask=ok, other=0.0, cache_modifier=".cg")
                parts = tl.load(part_ptr + rows[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0, cache_modifier=".cg")
                overall = tl.max(bests, 0)
                weight = tl.exp(bests - overall)  # (SPLITS_P2,): 0 for splits with no key
                combined = tl.sum(weight[:, None] * parts, 0) / tl.sum(weight * totals, 0)
                tl.store(out_ptr + b * stride_ob + h * HEAD_DIM + d, combined.to(out_ptr.dtype.element_ty))
                tl.store(count_ptr + pair, 0)  # ready for the next launch


    @triton.jit
    def _greedy_pick_kernel(
        scores_ptr, eos_ptr, pad_ptr, cur_ptr, min_col_ptr, unfinished_ptr, out_ptr, last_col_ptr, tokens_ptr,
        stride_sb, stride_ob,
        V: tl.constexpr, E: tl.constexpr, E_BLOCK: tl.constexpr, BLOCK_V: tl.constexpr, BAN: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One row's greedy token and its bookkeeping (see greedy_pick)."""
        _start_dependent(PDL)
        b = tl.program_id(0)
        cur = tl.load(cur_ptr)
        row = scores_ptr + b * stride_sb
        e = tl.arange(0, E_BLOCK)
        eos = tl.load(eos_ptr + e, mask=e < E, other=-1)
        if BAN:  # min_new_tokens: end-of-sequence ids are out before column min_col
            banned_now = cur < tl.load(min_col_ptr)
        for v0 in tl.static_range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            x = tl.load(row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            if BAN:
                is_eos_col = tl.sum((cols[:, None] == eos[None, :]).to(tl.int32), 1) > 0
                x = tl.where(is_eos_col & banned_now, float("-inf"), x)
            m = tl.max(x, 0)
            i = tl.argmax(x, 0) + v0  # the first of equal maxima, as torch.argmax
            if v0 == 0:
                best, best_idx = m, i
            else:  # strictly greater: an earlier block keeps its ties
                take = m > best
                best_idx = tl.where(take, i, best_idx)
                best = tl.where(take, m, best)
        unfinished = tl.load(unfinished_ptr + b)
        token = tl.where(unfinished, best_idx.to(tl.int64), tl.load(pad_ptr))
        tl.store(tokens_ptr + b, token)
        tl.store(out_ptr + b * stride_ob + cur, token)
        if E > 0:
            is_eos = tl.sum(((eos == token) & (e < E)).to(tl.int32), 0) > 0
            last = tl.load(last_col_ptr + b)
            tl.store(last_col_ptr + b, tl.where(unfinished & is_eos, cur, last))
            tl.store(unfinished_ptr + b, unfinished & (is_eos == 0))


    @triton.jit
    def _step_prologue_kernel(
        tokens_ptr, positions_ptr, write_ptr, key_mask_ptr, tok_emb_ptr, pos_emb_ptr, x_ptr, bias_ptr,
        stride_km, scale,
        C: tl.constexpr, BLOCK_C: tl.constexpr, S: tl.constexpr, BLOCK_S: tl.constexpr, OFFSET: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        """One row's input vector and attention mask (see step_prologue)."""
        _start_dependent(PDL)
        b = tl.program_id(0)
        dtype = x_ptr.dtype.element_ty
        token = tl.load(tokens_ptr + b)
        position = tl.load(positions_ptr + b)
        for c0 in tl.static_range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            ok = cols < C
            word = (tl.load(tok_emb_ptr + token * C + cols, mask=ok, other=0.0).to(tl.float32) * scale).to(dtype)
            where = tl.load(pos_emb_ptr + (position + OFFSET) * C + cols, mask=ok, other=0.0)
            tl.store(x_ptr + b * C + cols, (word.to(tl.float32) + where.to(tl.float32)).to(dtype), mask=ok)
        tl.store(positions_ptr + b, position + 1)
        last = tl.load(write_ptr + b)
        for s0 in tl.static_range(0, S, BLOCK_S):
            cols = s0 + tl.arange(0, BLOCK_S)
            ok = cols < S
            keep = tl.load(key_mask_ptr + b * stride_km + cols, mask=ok, other=0) != 0
            allowed = keep & (cols <= last)
            tl.store(bias_ptr + b * S + cols, tl.where(allowed, 0.0, float("-inf")).to(dtype), mask=ok)



def step_prologue(
    embeddings, tokens: torch.Tensor, positions: torch.Tensor, write_pos: torch.Tensor, key_mask: torch.Tensor, *, pdl: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decode step's input vectors (B, 1, C): word embedding x embed_scale + position
    embedding, rounded as the model's two embeddings and the sum round them; the additive
    attention mask (B, S) over key_mask's S columns: 0 where the key is kept and already
    written (column <= write_pos), -inf elsewhere; then positions += 1. One kernel per step
    instead of eight. `embeddings`: what holds `embed_tokens` and `embed_positions` (a
    FastNetwork, or the model's `biogpt`)."""
    B, S = key_mask.shape
    body = embeddings
    C = body.embed_tokens.weight.shape[1]
    dtype = body.embed_tokens.weight.dtype
    x = torch.empty(B, 1, C, dtype=dtype, device=tokens.device)
    bias = torch.empty(B, S, dtype=dtype, device=tokens.device)
    _step_prologue_kernel[(B,)](
        tokens, positions, write_pos, key_mask, body.embed_tokens.weight, body.embed_positions.weight, x, bias,
        key_mask.stride(0), float(body.embed_tokens.embed_scale),
        C=C, BLOCK_C=min(1024, triton.next_power_of_2(C)), S=S, BLOCK_S=min(1024, triton.next_power_of_2(S)),
        OFFSET=body.embed_positions.offset, PDL=pdl, num_warps=4, **launch_options(pdl),
    )  # fmt: skip
    return x, bias


def greedy_pick(
    scores: torch.Tensor,
    *,
    eos: torch.Tensor,
    pad: torch.Tensor,
    cur: torch.Tensor,
    min_col: torch.Tensor,
    unfinished: torch.Tensor,
    out: torch.Tensor,
    last_col: torch.Tensor,
    tokens: torch.Tensor,
    ban: bool,
    pdl: bool = False,
) -> None:
    """The greedy loop's token choice in one kernel (one program per row) instead of ~12 small
    ones: end-of-sequence ids banned before column `min_col` when `ban`, argmax (first of equal
    maxima), pad for finished rows, the token written to `tokens` and to `out` at column `cur`,
    and rows reaching an end-of-sequence id marked finished with their last column. What
    generation.greedy_graph.GreedyLoop.body computes with torch's kernels (a NaN score is not
    treated as the maximum, unlike torch.argmax)."""
    B, V = scores.shape
    E = eos.numel()
    _greedy_pick_kernel[(B,)](
        scores, eos if E else pad, pad, cur, min_col, unfinished, out, last_col, tokens,
        scores.stride(0), out.stride(0),
        V=V, E=E, E_BLOCK=max(2, triton.next_power_of_2(max(E, 1))), BLOCK_V=GREEDY_BLOCK_V, BAN=ban and E > 0,
        PDL=pdl, num_warps=4, **launch_options(pdl),
    )  # fmt: skip


def decode_attention(
    q: torch.Tensor,
    kv: torch.Tensor,
    bias: torch.Tensor,
    *,
    span: int,
    last: torch.Tensor,
    out: torch.Tensor,
    pdl: bool = False,
    split: int = 0,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + bias) v for one query per row: q (B, H*D), kv one layer's cache
    (2, B', H, S, D) read over its first `span` columns, bias (B, span) additive (0 or -inf, at
    least one key allowed per row, every key after column `last[b]` masked), out (B, H*D). What
    SDPA computes in the plain step (whose kernel is a sizeable part of a one-row step; here one
    program per head and row reads its keys and values once, up to its last written column).

    `split`: columns per program (a multiple of DECODE_BLOCK_S; 0: the whole span), the
    programs of a head and row combined by the last to finish; `counts`: that count, int32 of
    at least B*H zeros, kept by the caller from launch to launch (each launch leaves it zeroed,
    so a captured step needs one allocated outside its graph; None: allocated here)."""
    B = q.shape[0]
    H, D = kv.shape[2], kv.shape[4]
    if span % DECODE_BLOCK_S or bias.stride(1) != 1 or q.stride(1) != 1 or out.stride(1) != 1 or kv.stride(4) != 1:
        raise ValueError(f"decode_attention needs a span that is a multiple of {DECODE_BLOCK_S} and contiguous rows")
    if split % DECODE_BLOCK_S or split < 0:
        raise ValueError(f"decode_attention's split must be a multiple of {DECODE_BLOCK_S} columns, got {split}")
    splits = -(-span // split) if split else 1
    if splits > 1:
        if counts is None:
            counts = torch.zeros(B * H, dtype=torch.int32, device=q.device)
        if counts.numel() < B * H or counts.dtype != torch.int32:
            raise ValueError(f"decode_attention needs int32 counts for {B * H} (row, head) pairs")
        parts = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
        stats = torch.empty(B * H * splits, 2, dtype=torch.float32, device=q.device)  # running maximum, sum
    else:  # unused pointers: the query (Triton's interpreter copies each argument back; nothing writes these)
        parts = stats = counts = q
    _decode_attention_kernel[(H, B, splits)](
        q, kv, bias, last, out, parts, stats, counts,
        q.stride(0), kv.stride(0), kv.stride(1), kv.stride(2), kv.stride(3), bias.stride(0), out.stride(0), D**-0.5,
        SPAN=span, HEAD_DIM=D, BLOCK_S=DECODE_BLOCK_S, COLS=split if splits > 1 else span, SPLITS=splits,
        SPLITS_P2=triton.next_power_of_2(splits), PDL=pdl, num_warps=4, **launch_options(pdl),
    )  # fmt: skip
    return out


