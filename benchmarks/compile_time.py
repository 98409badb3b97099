"""What torch.compile of the static decode step costs to build, and whether it keeps the eager
step's accuracy: the whole step (StaticDecoder(compile_step=True)) against the decoder layer
compiled once for all layers (compile_step="layers"), on the CPU, bfloat16, real 347M shapes
(random weights).

    python -m benchmarks.compile_time [--preset biogpt] [--steps 12] [--skip-step]

Prints each variant's first-step time (tracing and compiling included), its later steps' time,
how many graphs were compiled, and the relative L2 error of its logits against float32 eager
steps, next to the eager bfloat16 step's. The GPU numbers come from benchmarks/gpu_kernels.py.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="biogpt")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-step", action="store_true", help="only the per-layer compilation (the whole step takes ~a minute)")
    args = parser.parse_args(argv)

    from torch._dynamo.utils import counters

    from biogpt.model import BioGptConfig, BioGptForCausalLM
    from biogpt.model.generation import StaticDecoder

    torch.manual_seed(0)
    reference = BioGptForCausalLM(BioGptConfig.from_preset(args.preset)).eval()
    half = copy.deepcopy(reference).to(torch.bfloat16)
    tokens = torch.randint(4, reference.config.vocab_size, (args.steps,)).tolist()
    cpu = torch.device("cpu")

    def run(model, compile_step) -> tuple[torch.Tensor, float, float, int]:
        torch._dynamo.reset()
        counters.clear()
        with torch.inference_mode():
            dec = StaticDecoder(model, cpu, 1, 256, capture=False, compile_step=compile_step)
            out, times = [], []
            for token in tokens:
                dec.tokens.fill_(token)
                start = time.perf_counter()
                out.append(dec.step_fn().float())
                times.append(time.perf_counter() - start)
        return torch.cat(out), times[0], sum(times[1:]) / max(1, len(times) - 1), counters["stats"]["unique_graphs"]

    want, *_ = run(reference, False)
    variants = [("bfloat16 eager step", False), ("bfloat16, compiled layers", "layers")]
    if not args.skip_step:
        variants.append(("bfloat16, compiled step", True))
    print(f"{args.preset}, {reference.config.num_hidden_layers} layers, {args.steps} decode steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, mode in variants:
        got, first, later, graphs = run(half, mode)
        error = float((got - want).norm() / want.norm())
        print(f"  {name}: first step {first:.1f} s, later steps {later * 1000:.0f} ms, {graphs} compiled graph(s), logits vs float32: relative error {error:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
