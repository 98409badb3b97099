"""Numerical parity with transformers' BioGPT: logits, padding, incremental decoding, heads, losses."""

from __future__ import annotations

import pytest
import torch

from biogpt.model import (
    BioGptConfig,
    BioGptForCausalLM,
    BioGptForSequenceClassification,
    BioGptForTokenClassification,
    BioGptModel,
    KVCache,
)

from tests.helpers import tiny_config, tiny_lm

transformers = pytest.importorskip("transformers")
TOL_TINY = 1e-4  # fp32, tiny config
TOL_FULL = 1e-3  # fp32, the real 347M shapes


def hf_positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions as transformers' generate() computes them from the attention mask."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def reference(model, tmp_path, cls_name="BioGptForCausalLM"):
    model.save_pretrained(tmp_path)
    return getattr(transformers, cls_name).from_pretrained(str(tmp_path)).eval()


def batch(vocab: int, B: int = 3, T: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (B, T), generator=g)
    ids[:, 0] = 2  # sequences start with </s>, as the tokenizer makes them
    return ids


def padded(ids: torch.Tensor, lengths: list[int], side: str, pad: int = 1):
    B, T = ids.shape
    mask = torch.zeros(B, T, dtype=torch.long)
    out = torch.full_like(ids, pad)
    for b, n in enumerate(lengths):
        if side == "right":
            out[b, :n], mask[b, :n] = ids[b, :n], 1
        else:
            out[b, T - n :], mask[b, T - n :] = ids[b, :n], 1
    return out, mask


@torch.no_grad()
def test_causal_lm_logits_equal_transformers(tmp_path):
    ours = tiny_lm()
    ref = reference(ours, tmp_path)
    ids = batch(1000)
    assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=TOL_TINY, rtol=0)
    assert (ours(ids).logits - ref(ids).logits).abs().max() < TOL_TINY


@torch.no_grad()
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batches_equal_transformers_at_real_tokens(tmp_path, side):
    ours = tiny_lm()
    ref = reference(ours, tmp_path)
    ids, mask = padded(batch(1000), [12, 7, 3], side)
    got = ours(ids, attention_mask=mask).logits
    want = ref(ids, attention_mask=mask, position_ids=hf_positions(mask)).logits
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() < TOL_TINY
    assert torch.isfinite(got).all()
    # and each row equals the same sequence run alone, unpadded
    for b, n in enumerate([12, 7, 3]):
        alone = ours(ids[b : b + 1][mask[b : b + 1].bool()].view(1, -1)).logits[0]
        assert (got[b][real[b]] - alone).abs().max() < TOL_TINY


@torch.no_grad()
def test_incremental_decoding_equals_full_forward():
    model = tiny_lm()
    ids, mask = padded(batch(1000, T=10), [10, 6, 8], "left")
    full = model(ids, attention_mask=mask).logits
    out = model(ids[:, :4], attention_mask=mask[:, :4], use_cache=True)
    pieces = [out.logits]
    cache = out.past_key_values
    assert isinstance(cache, KVCache) and cache.length == 4
    for t in range(4, 10):
        out = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache, use_cache=True)
        pieces.append(out.logits)
    step = torch.cat(pieces, dim=1)
    real = mask.bool()
    assert (step[real] - full[real]).abs().max() < TOL_TINY
    # a chunk of several tokens after a cache (chunked prefill) too
    out = model(ids[:, :5], attention_mask=mask[:, :5], use_cache=True)
    out2 = model(ids[:, 5:], attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
    assert (out2.logits[real[:, 5:]] - full[:, 5:][real[:, 5:]]).abs().max() < TOL_TINY


@torch.no_grad()
def test_legacy_past_key_values_round_trip():
    model = tiny_lm()
    ids = batch(1000, T=8)
    out = model(ids[:, :5], use_cache=True)
    legacy = out.past_key_values.to_legacy()
    assert len(legacy) == 2 and legacy[0][0].shape == (3, 4, 5, 8)
    again = model(ids[:, 5:6], past_key_values=KVCache.from_legacy(legacy), use_cache=True).logits
    assert (again - model(ids).logits[:, 5:6]).abs().max() < TOL_TINY


@torch.no_grad()
def test_causal_lm_loss_equals_transformers(tmp_path):
    ours = tiny_lm()
    ref = reference(ours, tmp_path)
    ids = batch(1000)
    labels = ids.clone()
    labels[:, :4] = -100
    assert abs(ours(ids, labels=labels).loss.item() - ref(ids, labels=labels).loss.item()) < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("side", ["right", "left"])
def test_token_classification_equals_transformers(tmp_path, side):
    torch.manual_seed(0)
    cfg = tiny_config(id2label={0: "O", 1: "B-Chemical", 2: "I-Chemical", 3: "B-Disease", 4: "I-Disease"})
    ours = BioGptForTokenClassification(cfg).eval()
    ref = reference(ours, tmp_path, "BioGptForTokenClassification")
    assert ref.config.num_labels == 5
    ids, mask = padded(batch(1000), [12, 9, 5], side)
    labels = torch.randint(0, 5, ids.shape)
    got = ours(ids, attention_mask=mask, labels=labels)
    want = ref(ids, attention_mask=mask, position_ids=hf_positions(mask), labels=labels)
    real = mask.bool()
    assert (got.logits[real] - want.logits[real]).abs().max() < TOL_TINY
    assert abs(got.loss.item() - want.loss.item()) < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification", "regression"])
def test_sequence_classification_equals_transformers(tmp_path, side, problem):
    torch.manual_seed(0)
    n = 1 if problem == "regression" else 3
    cfg = tiny_config(id2label={i: f"L{i}" for i in range(n)}, problem_type=problem)
    ours = BioGptForSequenceClassification(cfg).eval()
    ref = reference(ours, tmp_path, "BioGptForSequenceClassification")
    ids, mask = padded(batch(1000), [12, 6, 9], side)
    if problem == "single_label_classification":
        labels = torch.tensor([0, 2, 1])
    elif problem == "multi_label_classification":
        labels = torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]])
    else:
        labels = torch.tensor([0.5, -1.0, 2.0])
    got = ours(ids, attention_mask=mask, labels=labels)
    want = ref(ids, attention_mask=mask, position_ids=hf_positions(mask), labels=labels)
    assert got.logits.shape == (3, n)
    assert (got.logits - want.logits).abs().max() < TOL_TINY
    assert abs(got.loss.item() - want.loss.item()) < 1e-5
    # pooling picks the last real token for either padding side
    alone = ours(ids[1:2][mask[1:2].bool()].view(1, -1)).logits
    assert (got.logits[1] - alone[0]).abs().max() < TOL_TINY


@torch.no_grad()
def test_base_model_and_heads_share_weights(tmp_path):
    lm = tiny_lm()
    lm.save_pretrained(tmp_path)
    base = BioGptModel.from_pretrained(tmp_path)
    ref = transformers.BioGptModel.from_pretrained(str(tmp_path)).eval()
    ids = batch(1000)
    assert (base(ids).last_hidden_state - ref(ids).last_hidden_state).abs().max() < TOL_TINY
    assert lm.output_projection.weight is lm.biogpt.embed_tokens.weight
    # a causal-LM checkpoint loads into a classification model: body kept, head newly initialised
    clf = BioGptForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert clf.config.num_labels == 4 and torch.isfinite(clf(ids).logits).all()
    assert torch.equal(clf.biogpt.embed_tokens.weight, lm.biogpt.embed_tokens.weight)


@torch.no_grad()
def test_dtype_and_positions_limits(tmp_path):
    lm = tiny_lm()
    lm.save_pretrained(tmp_path)
    half = BioGptForCausalLM.from_pretrained(tmp_path, dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    ids = batch(1000)
    assert (half(ids).logits.float() - lm(ids).logits).abs().max() < 0.1
    with pytest.raises(ValueError, match="max_position_embeddings"):
        lm(torch.full((1, 129), 5))


@pytest.mark.slow
@torch.no_grad()
def test_full_size_logits_equal_transformers(tmp_path):
    """The real 347M shapes with random weights: fp32 logits within 1e-3 (right and left padding)."""
    torch.manual_seed(0)
    cfg = BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours = BioGptForCausalLM(cfg).eval()
    ours.save_pretrained(tmp_path)
    ref = transformers.BioGptForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids = batch(42384, B=2, T=64)
    for side in ("right", "left"):
        pids, mask = padded(ids, [64, 40], side)
        got = ours(pids, attention_mask=mask).logits
        want = ref(pids, attention_mask=mask, position_ids=hf_positions(mask)).logits
        real = mask.bool()
        assert (got[real] - want[real]).abs().max() < TOL_FULL, side


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = batch(1000)
    grads = []
    for checkpointing in (False, True):
        model = tiny_lm(seed=3).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


# ------------------------------------------------------------------------------ the plain reference
def test_modules_are_the_plain_torch_modules():
    """The reference network is built of nn.Linear / nn.LayerNorm / nn.Embedding (subclasses only
    for the two embeddings' scaling and offset), so torch.compile, peft and hooks see them."""
    from torch import nn

    model = tiny_lm()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is nn.Linear for m in linears)
    assert all(type(m) is nn.LayerNorm for m in model.modules() if isinstance(m, nn.LayerNorm))
    assert {type(m).__name__ for m in model.modules() if isinstance(m, nn.Embedding)} == {
        "BioGptScaledWordEmbedding",
        "BioGptLearnedPositionalEmbedding",
    }
    with torch.no_grad(), torch.profiler.profile() as prof:  # a no-grad CPU forward is plain torch
        model(batch(1000))
    assert "mkldnn::_linear_pointwise" not in {e.key for e in prof.key_averages()}


def test_modeling_imports_no_fast_path():
    """modeling.py is the reference network: it imports nothing from generation, the fast paths
    or kernels (tests/test_imports.py checks the source; this checks a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, biogpt.model.modeling; "
        "print(sorted(m for m in sys.modules if m.startswith(('biogpt.model.generation', 'biogpt.model.fast', 'triton'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
