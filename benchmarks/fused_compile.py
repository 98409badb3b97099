"""Compile the fused decode kernels (biogpt.model.fast: triton_linear, triton_step) for a GPU without one: Triton's own
compiler down to a cubin (its bundled ptxas), at BioGPT's and BioGPT-Large's shapes, with the
launch rule's configurations (and, with --candidates, every configuration `tune` would time).
Prints each kernel's registers and stack bytes (cuobjdump); exits 1 if any compilation fails,
or with --no-spills if a rule configuration uses stack (spilled registers).

    python -m benchmarks.fused_compile [--arch 90] [--candidates] [--pdl] [--dtypes fp16,bf16,fp32] [--no-spills]

Why: the kernels were written on machines without a GPU; this finds what the GPU compiler
rejects, and what would spill, before a lent GPU's minutes are spent on it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

SHAPES = {"biogpt": dict(C=1024, F=4096, V=42384, H=16), "biogpt-large": dict(C=1600, F=6400, V=57717, H=25)}


def main(argv: list[str] | None = None) -> int:
    # One function: every kernel at every shape is compiled in one loop with one report.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    parser.add_argument("--candidates", action="store_true", help="every configuration tune() times, not only the rule's")
    parser.add_argument("--pdl", action="store_true", help="also the programmatic-dependent-launch variant of every kernel")
    parser.add_argument("--dtypes", default="fp16,bf16,fp32")
    parser.add_argument("--no-spills", action="store_true", help="fail when a rule configuration uses stack")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        print(f"needs Triton: {exc}", file=sys.stderr)
        return 2
    from biogpt.model.fast import triton_linear, triton_step, tuning

    target = GPUTarget("cuda", args.arch, 32)
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    failures, spills, count, start = 0, 0, 0, time.perf_counter()

    def build(label: str, fn, signature: dict[str, str], constexprs: dict, warps: int, rule: bool) -> None:
        for pdl in (False, True) if args.pdl else (False,):
            build_one(f"{label}{' pdl' if pdl else ''}", fn, signature, {**constexprs, "PDL": pdl}, warps, rule, pdl)

    def build_one(label: str, fn, signature: dict[str, str], constexprs: dict, warps: int, rule: bool, pdl: bool) -> None:
        nonlocal failures, spills, count
        sig = {**signature, **{name: "constexpr" for name in constexprs}}
        options = {"num_warps": warps, **({"launch_pdl": True} if pdl else {})}
        try:
            kernel = triton.compile(ASTSource(fn, sig, constexprs), target=target, options=options)
        except Exception as exc:  # report every failure, then exit non-zero
            failures += 1
            print(f"FAILED {label}: {type(exc).__name__}: {str(exc)[:500]}", flush=True)
            return
        count += 1
        usage = "?"
        if os.path.exists(cuobjdump):
            with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                f.write(kernel.asm["cubin"])
                f.flush()
                dump = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
            found = re.search(r"REG:(\d+).*?STACK:(\d+)", dump)
            if found:
                regs, stack = map(int, found.groups())
                usage = f"{regs} registers, {stack} stack bytes"
                if stack and rule:
                    spills += 1
        print(f"{label}: {usage}", flush=True)

    for dt in args.dtypes.split(","):
        p = f"*{dt}"
        for model, s in SHAPES.items():
            C, F_, V, H = s["C"], s["F"], s["V"], s["H"]
            linear = {name: p for name in ("x_ptr", "w_ptr", "b_ptr", "y_ptr", "ln_w_ptr", "ln_b_ptr", "kv_ptr")}
            linear.update(pos_ptr="*i64", N="i32", stride_xm="i32", stride_ym="i32", eps="fp32")
            linear.update({name: "i32" for name in ("kv_stride_kv", "kv_stride_b", "kv_stride_h", "kv_stride_t")})
            kinds = [  # (what, N, K, flags, query width): the four projections and the LM head
                ("qkv", 3 * C, C, dict(LAYER_NORM=True, KV_WRITE=True), C),
                ("out_proj", C, C, dict(RESIDUAL=True), 1),
                ("fc1", F_, C, dict(LAYER_NORM=True, ACTIVATION=1), 1),
                ("fc2", C, F_, dict(RESIDUAL=True), 1),
                ("lm_head", V, C, dict(LAYER_NORM=True, HAS_BIAS=False), 1),
            ]
            for what, n, k, flags, q in kinds:
                rule = tuning.launch_config(n, k, 132)
                configs = tuning.candidate_configs(n, k, 132) if args.candidates else [rule]
                for config in configs:
                    bn, bk, warps, unroll = config
                    constexprs = dict(K=k, Q_WIDTH=q, HEAD_DIM=C // H, BLOCK_N=bn, BLOCK_K=bk, BLOCK_ROW=triton.next_power_of_2(k),
                                      UNROLL=unroll, HAS_BIAS=True, LAYER_NORM=False, ACTIVATION=0, RESIDUAL=False, KV_WRITE=False)
                    constexprs.update(flags)
                    label = f"{dt} {model} {what} ({n}, {k}) {config}{' rule' if config == rule else ''}"
                    build(label, triton_linear._row_linear_kernel, linear, constexprs, warps, config == rule)
            attention = dict(q_ptr=p, kv_ptr=p, bias_ptr=p, last_ptr="*i64", out_ptr=p, part_ptr="*fp32", stat_ptr="*fp32", count_ptr="*i32", scale="fp32")
            attention.update({name: "i32" for name in ("stride_qb", "kv_stride_kv", "kv_stride_b", "kv_stride_h", "kv_stride_t", "stride_bias_b", "stride_ob")})
            for span in (384, 1024):
                for split in tuning.ATTENTION_SPLITS:  # columns per program (0: the whole span)
                    splits = -(-span // split) if split else 1
                    constexprs = dict(SPAN=span, HEAD_DIM=C // H, BLOCK_S=triton_step.DECODE_BLOCK_S, COLS=split or span, SPLITS=splits,
                                      SPLITS_P2=triton.next_power_of_2(splits))
                    build(f"{dt} {model} attention span {span} split {split}", triton_step._decode_attention_kernel, attention, constexprs, 4, split == 0)
            prologue = dict(tokens_ptr="*i64", positions_ptr="*i64", write_ptr="*i64", key_mask_ptr="*i1", tok_emb_ptr=p,
                            pos_emb_ptr=p, x_ptr=p, bias_ptr=p, stride_km="i32", scale="fp32")
            constexprs = dict(C=C, BLOCK_C=min(1024, triton.next_power_of_2(C)), S=384, BLOCK_S=512, OFFSET=2)
            build(f"{dt} {model} step prologue", triton_step._step_prologue_kernel, prologue, constexprs, 4, True)
        greedy = dict(scores_ptr=p, eos_ptr="*i64", pad_ptr="*i64", cur_ptr="*i64", min_col_ptr="*i64", unfinished_ptr="*i1",
                      out_ptr="*i64", last_col_ptr="*i64", tokens_ptr="*i64", stride_sb="i32", stride_ob="i32")
        for e, ban in ((1, True), (2, False), (0, False)):
            constexprs = dict(V=42384, E=e, E_BLOCK=2, BLOCK_V=triton_step.GREEDY_BLOCK_V, BAN=ban)
            build(f"{dt} greedy pick (E={e}, ban={ban})", triton_step._greedy_pick_kernel, greedy, constexprs, 4, True)
    print(f"{count} kernels compiled for sm_{args.arch} in {time.perf_counter() - start:.1f} s; {failures} failed; "
          f"{spills} rule configurations with stack use", flush=True)
    return 1 if failures or (args.no_spills and spills) else 0


if __name__ == "__main__":
    sys.exit(main())
