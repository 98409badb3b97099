"""One-query (decode-step) attention on a CPU in bfloat16: ATen's attention kernel against
`biogpt.model.fast.cpu.one_query_attention` (two batched products and a softmax), per layer at the
347M shapes; a 4-row static decode step with either; whole-model decode-step logit error.

    python -m benchmarks.cpu_attention

Random weights of the real shapes; the logit error uses a real BC5CDR abstract (shipped fixture).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def per_call_us(fn: Callable[[], object], n: int = 200) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def main() -> int:
    from biogpt.model import BioGptConfig, BioGptForCausalLM, BioGptTokenizer
    from biogpt.model.fast import cpu, network
    from biogpt.model.generation import StaticDecoder
    from biogpt.model.kv_cache import KVCache

    from .run import abstract_prompt

    ours = cpu.one_query_attention
    H, D, dt = 16, 64, torch.bfloat16
    print("per layer, bfloat16, 16 heads x 64, additive mask: rows x keys: ATen SDPA vs ours (us)")
    with torch.inference_mode():
        for B, S in ((1, 16), (1, 64), (1, 256), (1, 512), (4, 512), (8, 128), (8, 512)):
            q = torch.randn(B, H, 1, D, dtype=dt)
            k, v = torch.randn(B, H, S, D, dtype=dt), torch.randn(B, H, S, D, dtype=dt)
            mask = torch.zeros(B, 1, 1, S, dtype=dt)
            a, b = per_call_us(lambda: sdpa(q, k, v, mask)), per_call_us(lambda: ours(q, k, v, mask))
            print(f"  {B} x {S}: {a:.0f} vs {b:.0f}", flush=True)

    torch.manual_seed(0)
    cfg = BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model32 = BioGptForCausalLM(cfg).eval()
    model16 = BioGptForCausalLM(cfg).eval()
    model16.load_state_dict(model32.state_dict())
    model16 = model16.to(torch.bfloat16)

    def step_ms(attention) -> float:
        network.one_query_attention = attention  # what the fast network's layers call
        try:
            with torch.inference_mode():
                dec = StaticDecoder(model16, torch.device("cpu"), 4, 512, capture=False)
                times = []
                for _ in range(6):
                    dec.write_pos.fill_(300)
                    dec.positions.fill_(300)
                    start = time.perf_counter()
                    dec.run_step()
                    times.append(time.perf_counter() - start)
            return sorted(times)[len(times) // 2] * 1000
        finally:
            network.one_query_attention = ours

    print(f"4-row static decode step, 512 cache columns (300 written), median of 6: SDPA {step_ms(sdpa):.1f} ms, ours {step_ms(ours):.1f} ms")

    ids = abstract_prompt(BioGptTokenizer.from_pretrained("microsoft/biogpt"), 300)

    def decode_logits(model, prefix: int = 200) -> torch.Tensor:
        """Decode steps of the generation engine's network (where the attention is chosen)."""
        net = network.FastNetwork(model)
        with torch.inference_mode():
            cache = KVCache.for_model(model.config, 1, ids.shape[1], dtype=model.dtype, device="cpu")
            net.run(ids[:, :prefix], torch.arange(prefix)[None], attn_mask=None, is_causal=True, cache=cache)
            steps = [
                net.logits(net.run(ids[:, t : t + 1], torch.tensor([[t]]), attn_mask=None, is_causal=False, cache=cache))[:, -1].float()
                for t in range(prefix, ids.shape[1])
            ]
        return torch.cat(steps)

    ref = decode_logits(model32)
    errors = []
    for attention in (ours, sdpa):
        network.one_query_attention = attention
        try:
            got = decode_logits(model16)
        finally:
            network.one_query_attention = ours
        errors.append(((got - ref).norm() / ref.norm()).item())
    print(f"bfloat16 decode-step logits vs float32 (100 steps after a 200-token prefix of a real abstract): relative L2 error ours {errors[0]:.4f}, SDPA {errors[1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
