"""Where a batch-1 decode step's time goes on a GPU: kernels per step and the captured graph's
replay time, for the variants that decide the batch-1 design.

    python -m benchmarks.gpu_kernels [--large] [--sweep] [--compile] [--breakdown] [--extra]

Variants: the default step (torch's kernels); the fused Triton layer (biogpt.model.fast.fused,
what decode_kernels="auto" measures against the default, with the attention split `tune`
chose), also with the attention kernel split over the cache or not, with torch's attention kernel
and, on Hopper, with every Triton kernel a programmatic dependent launch (PDL: the eager
breakdown of a PDL step counts each kernel from its early start, so its kernel times overlap;
the replay time is the figure); with --extra, rows padded to 2. --sweep: each projection shape's one-row
Triton kernel over a grid of launch configurations against cuBLAS's F.linear (each timed as a
captured graph of back-to-back launches), then the fused step again with the best
configurations (passed to the step as fused_step(configs=...)). With --compile, the
decoder layer compiled once for all layers (StaticDecoder(compile_step="layers"), seconds to
build) and the whole step compiled (compile_step=True, about a minute), each inside our graph.
Each variant's logits are checked against the plain eager step from the same state. Random weights of the real shapes, float16.
Needs a CUDA device and torch only.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import torch


def measure(
    model,
    rows: int,
    *,
    compile_step: bool | str = False,
    kernels: str = "torch",
    split: int | None = None,
    configs: dict | None = None,
    capacity: int = 384,
    breakdown: bool = False,
) -> tuple[int, float, float, float]:
    """(kernels in one step run eagerly, ms per graph replay, seconds to build and capture,
    relative L2 error of the captured step's logits against the plain eager step's).
    kernels: "torch" or a fused step's name (generation.kernel_choice.FUSED_VARIANTS); split: the
    Triton attention's columns per program instead of the tuned ones; configs: launch
    configurations by weight shape instead of the tuned ones.
    breakdown: also print where the eagerly launched step's GPU time goes, by kernel name."""
    import time

    from torch.profiler import ProfilerActivity, profile

    from biogpt.model.generation import StaticDecoder

    start = time.perf_counter()
    options = {k: v for k, v in (("split", split), ("configs", configs)) if v is not None}
    with torch.inference_mode():  # as generate builds it: no autograd in the captured step
        dec = StaticDecoder(
            model, torch.device("cuda"), rows, capacity, capture=True, compile_step=compile_step, kernels=kernels, fused_options=options
        )
    torch.cuda.synchronize()
    build = time.perf_counter() - start
    assert dec.graph is not None
    with torch.inference_mode():
        # the same state through the plain eager step and through the captured graph
        plain = StaticDecoder(model, torch.device("cuda"), rows, capacity, capture=False)
        plain.cache.kv.copy_(dec.cache.kv.normal_())
        for d in (plain, dec):
            d.write_pos.fill_(100)
            d.positions.fill_(100)
            d.tokens.fill_(5)
        want = plain.step_fn().float()
        dec.graph.replay()
        got = dec.logits.float()
        error = float((got - want).norm() / want.norm())
        del plain
        dec.write_pos.fill_(100)
        dec.positions.fill_(100)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            dec.step_fn()  # the same step, launched kernel by kernel
            torch.cuda.synchronize()
        on_gpu = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernels = len(on_gpu)
        if breakdown:
            totals: dict[str, list[float]] = {}
            for e in on_gpu:
                t = totals.setdefault(e.name, [0, 0.0])
                t[0] += 1
                t[1] += e.time_range.elapsed_us()
            whole = sum(t for _, t in totals.values())
            print(f"    kernel time of one eagerly launched step: {whole:.0f} us in {kernels} kernels; by name:", flush=True)
            for name, (count, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:12]:
                print(f"    {us:8.1f} us {count:4d}x {us / count:6.2f} us  {name[:110]}", flush=True)
        dec.write_pos.zero_()
        dec.positions.zero_()
        n = capacity - 1
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(n):
            dec.graph.replay()
        end.record()
        torch.cuda.synchronize()
    return kernels, begin.elapsed_time(end) / n, build, error


def variant(
    name: str,
    model,
    rows: int,
    *,
    compile_step: bool | str = False,
    kernels: str = "torch",
    split: int | None = None,
    configs: dict | None = None,
    breakdown: bool = False,
) -> None:
    try:
        k, ms, build, error = measure(model, rows, compile_step=compile_step, kernels=kernels, split=split, configs=configs, breakdown=breakdown)
    except Exception as exc:  # report and go on: the other variants still count
        print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
        return
    layers = model.config.num_hidden_layers
    print(
        f"{name}: {k} kernels per step ({k / layers:.1f} per layer), replay {ms:.3f} ms "
        f"({1000 / ms:.0f} steps/s), build + capture {build:.1f} s, logits vs the plain eager step: relative error {error:.2e}",
        flush=True,
    )


SWEEP_TILES = ((256, 4), (512, 4), (1024, 8))  # (BLOCK_K, num_warps), with BLOCK_N 4, 8, 16: 9 compilations a shape


def sweep(model) -> dict[tuple[int, int], tuple[int, int, int, bool]]:
    """Per projection shape (N, K): the one-row Triton kernel's time (the variant the fused step
    runs for that shape) for each launch configuration, the best against cuBLAS's F.linear
    alone (bias included; the Triton kernel also does the LayerNorm, residual or cache write
    around it); returns the best. Then the attention kernel's time for each split over the
    cache that `tune` times."""
    from biogpt.model.fast import tuning
    from biogpt.model.fast.triton_common import Config, sm_count
    from biogpt.model.fast.triton_linear import unrolls
    from biogpt.model.fast.tuning import graph_us

    best: dict[tuple[int, int], Config] = {}
    dev, half = model.device, torch.float16
    for n, k in tuning.projection_shapes(model.config):
        weights = tuning.weight_copies(n, k, device=dev, dtype=half)  # read from memory, not L2
        b = torch.randn(n, device=dev, dtype=half)
        x = torch.randn(1, k, device=dev, dtype=half)
        turn = itertools.cycle(weights)
        launches = max(20, len(weights))
        cublas = graph_us(lambda: torch.nn.functional.linear(x, next(turn), b), launches)
        rule = tuning.launch_config(n, k, sm_count(dev))  # the first guess
        tuned = tuning._TUNED.get((tuning.device_key(dev, half), n, k))  # what generate's tuning chose
        timed: list[tuple[float, Config]] = []
        # a small grid (each configuration is a compilation, ~0.5 s): rows per program, weights
        # per loop iteration with the warps to load them, the loop rolled, and unrolled where
        # that stays within twice the registers the rule allows
        candidates = [
            (bn, bk, nw, unroll)
            for bn in (4, 8, 16)
            for bk, nw in SWEEP_TILES
            if bk <= max(256, k)
            for unroll in (False, True)
            if not unroll or unrolls(bn, k // 2, nw)
        ]
        for extra in (rule, tuned):
            if extra is not None and extra not in candidates:
                candidates.append(extra)
        call = tuning._projection_call(model.config, dev, half, n, k)  # the variant the step runs (LayerNorm, residual, ...)
        for config in candidates:
            turn = itertools.cycle(weights)
            try:
                timed.append((graph_us(lambda: call(next(turn), config), launches), config))
            except Exception as exc:  # a configuration that does not compile here
                print(f"    ({n}, {k}) {config}: {type(exc).__name__}: {exc}", flush=True)
        timed.sort()
        us, config = timed[0]
        rule_us = next((t for t, c in timed if c == rule), float("nan"))
        tuned_us = next((t for t, c in timed if c == tuned), float("nan"))
        best[(n, k)] = config
        gb = n * k * 2 / 1e9
        print(
            f"    ({n}, {k}): best {config} {us:.2f} us ({gb / us * 1e6 / 1000:.2f} TB/s), rule {rule} {rule_us:.2f} us, "
            f"tuned {tuned} {tuned_us:.2f} us, cuBLAS F.linear {cublas:.2f} us; next: "
            + ", ".join(f"{c} {t:.2f}" for t, c in timed[1:4]),
            flush=True,
        )
    print(f"    fused_step(configs={best!r})", flush=True)
    call = tuning._attention_call(model.config, dev, half)  # one row, a cache read up to its middle
    splits = []
    for split in tuning.ATTENTION_SPLITS:
        try:
            splits.append(f"{split or 'whole span'} {graph_us(lambda: call(split), 20):.2f} us")
        except Exception as exc:
            splits.append(f"{split}: {type(exc).__name__}: {exc}")
    print(f"    attention, columns a program ({tuning.ATTENTION_TUNE_SPAN}-column cache, keys up to its middle): " + ", ".join(splits), flush=True)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="BioGPT-Large shapes too")
    parser.add_argument("--compile", action="store_true", help="also the compiled step (StaticDecoder(compile_step=True))")
    parser.add_argument("--breakdown", action="store_true", help="kernel times by name for the default and fused 1-row steps")
    parser.add_argument("--sweep", action="store_true", help="launch configurations of the fused layer's kernel, per shape")
    parser.add_argument("--extra", action="store_true", help="also 2 rows")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    from biogpt.model import BioGptConfig, BioGptForCausalLM

    presets = ["biogpt"] + (["biogpt-large"] if args.large else [])
    # the compiled variants last, the quick per-layer compilation before the whole step's: a
    # long compilation must not cost the other measurements of a time-limited call
    rounds = ["plain", "layers", "step"] if args.compile else ["plain"]
    for kind in rounds:
        for preset in presets:
            with torch.device("cuda"):
                model = BioGptForCausalLM(BioGptConfig.from_preset(preset)).to(torch.float16).eval()
            print(f"{preset} on {torch.cuda.get_device_name()}, torch {torch.__version__}:", flush=True)
            if kind == "layers":
                variant("  compiled layers (one torch.compile for all layers, inside our graph), 1 row", model, 1, compile_step="layers")
            elif kind == "step":
                variant("  compiled step (torch.compile of the whole step, inside our graph), 1 row", model, 1, compile_step=True)
            else:
                variant("  default, 1 row", model, 1, breakdown=args.breakdown)
                variant("  fused Triton layers, 1 row", model, 1, kernels="triton", breakdown=args.breakdown)
                variant("  fused Triton layers, SDPA attention, 1 row", model, 1, kernels="triton-sdpa")
                for split in (0, 64):  # against the tuned split the variant above uses
                    variant(f"  fused Triton layers, attention split {split or 'none'}, 1 row", model, 1, kernels="triton", split=split)
                from biogpt.model.fast.triton_common import pdl_unavailable_reason

                pdl_reason = pdl_unavailable_reason(torch.device("cuda"))
                if pdl_reason is None:
                    for name in ("triton+pdl", "triton-sdpa+pdl"):
                        variant(f"  fused Triton layers ({name}: dependent launches), 1 row", model, 1, kernels=name, breakdown=args.breakdown and name == "triton+pdl")
                else:
                    print(f"  PDL variants not run: {pdl_reason}", flush=True)
                if args.sweep:
                    try:
                        swept = sweep(model)
                        variant("  fused Triton layers with the swept configurations, 1 row", model, 1, kernels="triton", configs=swept)
                    except Exception as exc:
                        print(f"  sweep failed: {type(exc).__name__}: {exc}", flush=True)
                if args.extra:  # measured in runs 1-2 (BENCHMARKS.md): after the rest, on request
                    variant("  fused Triton layers, 2 rows", model, 2, kernels="triton")
                    variant("  default, 2 rows", model, 2)
            del model
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
