"""The inference fast paths (biogpt.model.fast) against the plain reference model: the same
logits within the stated rounding, the same tokens, and the user's model never changed.

Tolerances: float32 fast-network logits within 1e-5 (relative to the logits' scale) of the
reference's (oneDNN sums in another order than MKL); bfloat16 one-query attention within the
error SDPA itself makes in bfloat16 (both against float32), plus a little."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from biogpt.model import BioGptConfig, BioGptForCausalLM
from biogpt.model.fast import cpu
from biogpt.model.fast.network import FastNetwork, FusedQKV, network_for
from biogpt.model.fast.quantize import Int8Linear, quantize_int8
from biogpt.model.generation.steps import prefill
from biogpt.model.kv_cache import KVCache

from tests.helpers import diverse_lm, make_batch

onednn = pytest.mark.skipif(not cpu.ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")


def wide_lm(seed: int = 0) -> BioGptForCausalLM:
    """Layers of 1024x1024 and more: large enough for the oneDNN path, one block fast."""
    torch.manual_seed(seed)
    cfg = BioGptConfig(
        vocab_size=1100, hidden_size=1024, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2048,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return BioGptForCausalLM(cfg).eval()


def snapshot(model: nn.Module) -> tuple:
    state = {n: (t.data_ptr(), t.detach().clone(), t.requires_grad) for n, t in model.state_dict(keep_vars=True).items()}
    # the generation defaults are made on first read (as transformers makes them at construction):
    # generate reading them is not the engine attaching state to the model
    return state, {n: type(m) for n, m in model.named_modules()}, set(model.__dict__) - {"_generation_config"}


def assert_untouched(model: nn.Module, before: tuple) -> None:
    state, types, attrs = snapshot(model)
    assert types == before[1]  # every module still exactly what it was (nn.Linear stays nn.Linear)
    assert state.keys() == before[0].keys()
    for name, (ptr, value, grad) in before[0].items():
        assert state[name][0] == ptr, f"{name} moved"
        assert torch.equal(state[name][1], value), f"{name} changed"
        assert state[name][2] == grad, name
    assert attrs == before[2]  # nothing attached to the model


def reference_greedy(model: nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding by full forwards of the reference model, no cache, no engine."""
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


# ------------------------------------------------------------------------------ float32 CPU: oneDNN
@onednn
def test_cpu_float32_generation_runs_onednn_on_the_models_own_weights():
    model = wide_lm()
    ids = torch.randint(4, 1100, (1, 6), generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    with torch.profiler.profile() as prof:
        got = model.generate(ids, max_new_tokens=3)
    assert "mkldnn::_linear_pointwise" in {e.key for e in prof.key_averages()}
    assert_untouched(model, before)
    assert torch.equal(got, reference_greedy(model, ids, 3))
    layer = FastNetwork(model).layers[0]
    assert isinstance(layer.fc1, cpu.OneDnnLinear) and layer.fc1.linear is model.biogpt.layers[0].fc1  # no copy


@onednn
@torch.no_grad()
def test_fast_network_logits_and_tokens_equal_the_reference(tmp_path):
    """oneDNN sums in another order than MKL: prefill logits within 1e-5 of the reference's,
    greedy and beam tokens equal transformers'."""
    transformers = pytest.importorskip("transformers")
    model = wide_lm()
    ids, mask = make_batch(1100, B=2, P=10, padded=True)
    net = FastNetwork(model)
    cache = KVCache.for_model(model.config, 2, 10, dtype=torch.float32, device="cpu")
    got = prefill(net, ids, mask, cache)
    want = model(ids, attention_mask=mask).logits[:, -1]
    assert rel(got, want) < 1e-5
    model.save_pretrained(tmp_path)
    ref = transformers.BioGptForCausalLM.from_pretrained(str(tmp_path)).eval()
    for options in (dict(), dict(num_beams=5)):
        got = model.generate(ids, attention_mask=mask, max_new_tokens=8, **options)
        want = ref.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=1, **options)
        assert torch.equal(got, want), options


# ------------------------------------------------------------------------------ the model stays the user's
@pytest.mark.parametrize("options", [dict(), dict(num_beams=3), dict(cuda_graph=True), dict(do_sample=True, top_k=5)])
def test_generate_leaves_the_model_untouched(options):
    """Modules, parameters (same storage, same values), state dict and attributes are what they
    were before generate(); the model still trains (gradients reach q/k/v)."""
    model = diverse_lm()
    ids, mask = make_batch(1000, padded=True)
    before = snapshot(model)
    model.generate(ids, attention_mask=mask, max_new_tokens=6, **options)
    network_for(model, fuse_qkv=True)  # the GPU network: fused q/k/v are its own copy
    assert_untouched(model, before)
    model.train()
    model(ids, attention_mask=mask, labels=ids).loss.backward()
    assert all(model.biogpt.layers[0].self_attn.get_submodule(p).weight.grad is not None for p in ("q_proj", "k_proj", "v_proj"))


def test_int8_copy_leaves_the_original_untouched():
    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("small", num_hidden_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BioGptForCausalLM(cfg).eval()
    ids = torch.randint(4, cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(1))
    want = model.generate(ids, max_new_tokens=4)
    before = snapshot(model)
    quantized = quantize_int8(model)
    assert quantized is not model
    assert_untouched(model, before)
    attn = quantized.biogpt.layers[0].self_attn
    assert type(attn.q_proj) is Int8Linear and type(model.biogpt.layers[0].self_attn.q_proj) is nn.Linear
    # generation joins the copy's q/k/v into one int8 layer: exactly the three side by side
    joined = FastNetwork(quantized).layers[0].qkv
    x = torch.randn(3, cfg.hidden_size)
    with torch.no_grad():
        assert torch.allclose(joined(x), torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], -1), rtol=1e-5, atol=1e-5)
        assert rel(quantized(ids).logits, model(ids).logits) < 0.02
    quantized.generate(ids, max_new_tokens=4)
    assert torch.equal(model.generate(ids, max_new_tokens=4), want)


# ------------------------------------------------------------------------------ what the user wrapped runs
class Shifted(nn.Module):
    """A wrapper in the manner of a LoRA adapter: the wrapped layer's output plus a delta."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.delta = nn.Parameter(torch.randn(base.out_features) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.delta


@pytest.mark.parametrize("fuse", [False, True], ids=["cpu-network", "fused-network"])
def test_a_wrapped_projection_and_a_hooked_layer_are_what_generation_runs(fuse, monkeypatch):
    model = diverse_lm()
    torch.manual_seed(3)
    attn = model.biogpt.layers[0].self_attn
    attn.q_proj = Shifted(attn.q_proj)
    calls = []
    model.biogpt.layers[1].register_forward_hook(lambda m, args, out: calls.append(1))
    ids = torch.randint(4, 1000, (2, 5), generator=torch.Generator().manual_seed(2))
    want = reference_greedy(model, ids, 6)
    calls.clear()
    real = network_for
    monkeypatch.setattr("biogpt.model.generation.search.network_for", lambda m, fuse_qkv: real(m, fuse_qkv=fuse))
    for static in (False, True):
        got = model.generate(ids, max_new_tokens=6, eos_token_id=[], cuda_graph=static)
        assert torch.equal(got, want), static
    assert len(calls) >= 2 * 6  # the hooked layer ran at every step of both
    net = network_for(model, fuse_qkv=True)
    assert net.layers[0].qkv is None and net.layers[1].delegate  # not fused past the wrapper; hook kept


def test_the_fused_copy_follows_in_place_weight_updates():
    """The GPU network's fused q/k/v are a copy: the engine refreshes it, so an optimizer step
    between two generate() calls (training with generative evaluation) is seen."""
    model = diverse_lm()
    ids = torch.randint(4, 1000, (2, 5), generator=torch.Generator().manual_seed(2))
    net = network_for(model, fuse_qkv=True)
    assert isinstance(net.layers[0].qkv, FusedQKV)
    address = net.layers[0].qkv.weight.data_ptr()
    with torch.no_grad():
        model.biogpt.layers[0].self_attn.k_proj.weight.add_(0.05 * torch.randn_like(model.biogpt.layers[0].self_attn.k_proj.weight))
    again = network_for(model, fuse_qkv=True)
    assert again is net and net.layers[0].qkv.weight.data_ptr() == address  # same buffers: captured graphs stay valid
    with torch.no_grad():
        cache = KVCache.for_model(model.config, 2, 5, dtype=torch.float32, device="cpu")
        assert rel(prefill(net, ids, None, cache), model(ids).logits[:, -1]) < 1e-5


# ------------------------------------------------------------------------------ half precision on a CPU
@torch.no_grad()
def test_bf16_one_query_attention_is_within_sdpas_own_rounding():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 8, n, 64, generator=g) for n in (1, 96, 96))
    mask = torch.rand(4, 1, 1, 96, generator=g) > 0.2
    mask[..., 0] = True
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    q16, k16, v16 = (t.bfloat16() for t in (q, k, v))
    assert cpu.one_query_applies(q16, k16)
    ours = cpu.one_query_attention(q16, k16, v16, mask)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q16, k16, v16, attn_mask=mask)
    assert rel(ours, exact) < 1.5 * rel(sdpa, exact) + 1e-3
    additive = torch.where(mask, 0.0, float("-inf")).bfloat16()
    assert torch.equal(cpu.one_query_attention(q16, k16, v16, additive), ours)


def test_bf16_generation_runs_one_query_attention_within_rounding(monkeypatch):
    model = diverse_lm().bfloat16()
    ids, mask = make_batch(1000, B=4, P=20, padded=True)
    calls = []
    real = cpu.one_query_attention
    monkeypatch.setattr("biogpt.model.fast.network.one_query_attention", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        net = FastNetwork(model)
        cache = KVCache.for_model(model.config, 4, 21, dtype=torch.bfloat16, device="cpu")
        prefill(net, ids[:, :-1], mask[:, :-1], cache)
        from biogpt.model.masks import positions_from_mask

        pos = positions_from_mask(mask)[:, -1:]
        attn_mask = mask.bool()[:, None, None, :]
        got = net.logits(net.run(ids[:, -1:], pos, attn_mask=attn_mask, is_causal=False, cache=cache))[:, -1]
        want16 = model(ids, attention_mask=mask).logits[:, -1]
        want32 = model.float()(ids, attention_mask=mask).logits[:, -1]
    assert calls  # the decode step took the one-query path (4 rows x 20 keys)
    assert rel(got, want32) < 1.5 * rel(want16, want32) + 1e-2


# ------------------------------------------------------------------ scoring passes without a cache
def test_scoring_passes_through_the_fast_network_equal_the_models_forward():
    """hidden_states / lm_logits (the batch commands' teacher-forced passes, tagging,
    classification, perplexity) compute what the model's own forward does: float32 on a CPU
    within 1e-5 relative (oneDNN against MKL rounding), padded rows included."""
    from biogpt.model import BioGptConfig, BioGptForSequenceClassification, BioGptForTokenClassification
    from biogpt.model.fast.network import hidden_states, lm_logits
    from tests.helpers import make_batch, tiny_lm

    def close(a: torch.Tensor, b: torch.Tensor) -> None:
        assert (a - b).norm() <= 1e-5 * b.norm(), float((a - b).norm() / b.norm())

    lm = tiny_lm()
    ids, mask = make_batch(lm.config.vocab_size)
    with torch.inference_mode():
        close(lm_logits(lm, ids, mask)[mask.bool()], lm(ids, attention_mask=mask).logits[mask.bool()])
        close(lm_logits(lm, ids), lm(ids).logits)
    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("tiny", vocab_size=1000, id2label={0: "O", 1: "B-X", 2: "I-X"})
    tagger = BioGptForTokenClassification(cfg).eval()
    classifier = BioGptForSequenceClassification(cfg).eval()
    with torch.inference_mode():
        close(tagger.classifier(hidden_states(tagger, ids)), tagger(ids).logits)
        close(classifier.pool(classifier.score(hidden_states(classifier, ids)), ids), classifier(ids).logits)
    with pytest.raises(TypeError, match="causal language model"):
        lm_logits(tagger, ids)
