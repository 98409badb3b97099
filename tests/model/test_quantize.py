"""Reduced-precision paths: int8 weight-only and bfloat16, with stated tolerances."""

from __future__ import annotations

import json

import pytest
import torch

from biogpt.model import BioGptConfig, BioGptForCausalLM
from biogpt.model.fast.network import FastNetwork
from biogpt.model.fast.quantize import Bf16Linear, Int8Linear, quantize_int8

from tests.helpers import FIXTURES

INT8_TOLERANCE = 0.02  # relative L2 error of teacher-forced logits vs fp32
BF16_TOLERANCE = 0.02


def abstracts(n: int = 4) -> list[str]:
    docs = json.loads((FIXTURES / "bc5cdr_test_sample.json").read_text(encoding="utf-8"))
    return [d["title"] + " " + d["abstract"] for d in list(docs.values())[:n]]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("small", num_hidden_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BioGptForCausalLM(cfg).eval()


@torch.no_grad()
def test_int8_logits_close_to_fp32_on_real_abstracts(small_model, tokenizer, tmp_path):
    small_model.save_pretrained(tmp_path, tokenizer=tokenizer)
    q = quantize_int8(BioGptForCausalLM.from_pretrained(tmp_path))
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == 2 * 6  # q, k, v, out, fc1, fc2 per layer
    assert sum(isinstance(m, Bf16Linear) for m in q.modules()) == 1  # the LM head
    # generation runs q, k and v as one int8 layer (one kernel call per step and layer)
    assert all(isinstance(layer.qkv, Int8Linear) for layer in FastNetwork(q).layers)
    for text in abstracts():
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :256]
        err = relative_error(q(ids).logits, small_model(ids).logits)
        assert err < INT8_TOLERANCE, err
    out = q.generate(ids[:, :20], max_new_tokens=5)
    assert out.shape == (1, 25)


@torch.no_grad()
def test_bf16_logits_close_to_fp32(small_model, tokenizer, tmp_path):
    small_model.save_pretrained(tmp_path, tokenizer=tokenizer)
    half = BioGptForCausalLM.from_pretrained(tmp_path, dtype="bfloat16")
    for text in abstracts(2):
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :256]
        assert relative_error(half(ids).logits, small_model(ids).logits) < BF16_TOLERANCE


@torch.no_grad()
def test_int8_decode_steps_close_to_fp32_on_real_abstracts(small_model, tokenizer, tmp_path):
    """One token per call, as generation runs: on CPUs with AVX-512 VNNI the int8 layers take
    the kernel of cpu_kernels.py here, elsewhere torch's on dequantized weights; same bound."""
    from biogpt.model.kv_cache import KVCache

    small_model.save_pretrained(tmp_path, tokenizer=tokenizer)
    q = quantize_int8(BioGptForCausalLM.from_pretrained(tmp_path))
    ids = tokenizer(abstracts(1)[0], return_tensors="pt").input_ids[:, :128]
    cache = KVCache.for_model(q.config, 1, ids.shape[1], dtype=torch.float32, device="cpu")
    steps = torch.cat([q(ids[:, i : i + 1], past_key_values=cache, use_cache=True).logits for i in range(ids.shape[1])], 1)
    assert relative_error(steps, small_model(ids).logits) < INT8_TOLERANCE
    assert relative_error(steps, q(ids).logits) < INT8_TOLERANCE  # the several-row path agrees too


@pytest.mark.slow
@torch.no_grad()
def test_int8_347m_shapes_within_bound_on_a_real_abstract(tokenizer):
    """The real BioGPT shapes (random weights, as the benchmark): full sequence (dequantized
    bfloat16 path) and decode steps (the int8 kernel where the CPU has it) within 2%."""
    from biogpt.model.kv_cache import KVCache

    torch.manual_seed(0)
    fp32 = BioGptForCausalLM(BioGptConfig.from_preset("biogpt")).eval()
    q = quantize_int8(fp32)
    ids = tokenizer(" ".join(abstracts(2)), return_tensors="pt").input_ids[:, :200]
    base = fp32(ids).logits
    assert relative_error(q(ids).logits, base) < INT8_TOLERANCE
    cache = KVCache.for_model(q.config, 1, ids.shape[1], dtype=torch.float32, device="cpu")
    steps = torch.cat([q(ids[:, i : i + 1], past_key_values=cache, use_cache=True).logits for i in range(ids.shape[1])], 1)
    assert relative_error(steps, base) < INT8_TOLERANCE
