"""Where a batch-1 decode step's time goes on a GPU: kernels per step and the captured graph's
replay time, for the variants that decide the batch-1 design.

    python -m benchmarks.gpu_kernels [--large]

Variants: the default step; without the in-place residual projections (modeling.add_linear);
rows padded to 2 (cuBLAS applies the bias inside the GEMM only for 2+ rows). Random weights of
the real shapes, float16. Needs a CUDA device and torch only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch


def replay_ms(model, rows: int, capacity: int = 384) -> float:
    from model.generation import StaticDecoder

    dec = StaticDecoder(model, torch.device("cuda"), rows, capacity, capture=True)
    assert dec.graph is not None
    with torch.inference_mode():
        dec.write_pos.zero_()
        dec.positions.zero_()
    n = capacity - 1
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(n):
        dec.graph.replay()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / n


def kernels_per_step(model, rows: int, capacity: int = 384) -> int:
    from torch.profiler import ProfilerActivity, profile

    from model.generation import StaticDecoder

    dec = StaticDecoder(model, torch.device("cuda"), rows, capacity, capture=False)
    with torch.inference_mode():
        dec.write_pos.fill_(100)
        dec.run_step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            dec.run_step()
            torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def variant(name: str, model, rows: int, patch: Callable[[], object] | None = None) -> None:
    from model import modeling

    saved = modeling.accumulate_in_place
    try:
        if patch is not None:
            patch()
        k = kernels_per_step(model, rows)
        ms = replay_ms(model, rows)
    finally:
        modeling.accumulate_in_place = saved
    layers = model.config.num_hidden_layers
    print(f"{name}: {k} kernels per step ({k / layers:.1f} per layer), replay {ms:.3f} ms ({1000 / ms:.0f} steps/s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="BioGPT-Large shapes too")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    from model import BioGptConfig, BioGptForCausalLM, modeling

    presets = ["biogpt"] + (["biogpt-large"] if args.large else [])
    for preset in presets:
        with torch.device("cuda"):
            model = BioGptForCausalLM(BioGptConfig.from_preset(preset)).to(torch.float16).eval()
        for attn in model.modules():
            if isinstance(attn, modeling.BioGptAttention):
                attn.fuse_qkv()
        print(f"{preset} on {torch.cuda.get_device_name()}, torch {torch.__version__}:", flush=True)
        variant("  default, 1 row", model, 1)
        variant("  without in-place residual projections, 1 row", model, 1, lambda: setattr(modeling, "accumulate_in_place", lambda x: False))
        variant("  default, 2 rows", model, 2)
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
