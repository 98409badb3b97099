"""model/training.py: the AdamW grouping and the training step (eager here; the captured CUDA
graph variant runs in tests/test_cuda.py and the GPU suite)."""

from __future__ import annotations

import copy

import pytest
import torch

from model.training import TrainStep, adamw

from .helpers import tiny_lm


def test_adamw_groups_skip_decay_for_biases_and_norms():
    model = tiny_lm()
    opt = adamw(model, lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert not opt.defaults.get("fused")  # fused only on CUDA


def test_eager_step_equals_the_hand_written_step():
    torch.manual_seed(0)
    model = tiny_lm().train()
    twin = copy.deepcopy(model)
    batch = {"input_ids": torch.randint(4, 1000, (4, 16))}
    batch["labels"] = batch["input_ids"]
    step = TrainStep(model, adamw(model, lr=1e-3), bf16=False, max_grad_norm=0.5)
    loss = step(batch)

    opt = torch.optim.AdamW(
        [{"params": [p for p in twin.parameters() if p.ndim >= 2], "weight_decay": 0.01},
         {"params": [p for p in twin.parameters() if p.ndim < 2], "weight_decay": 0.0}], lr=1e-3,
    )
    want = twin(**batch).loss
    want.backward()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
    opt.step()
    assert torch.allclose(loss, want.detach())
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_repeated_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_lm().train()
    batch = {"input_ids": torch.randint(4, 1000, (4, 16))}
    batch["labels"] = batch["input_ids"]
    step = TrainStep(model, adamw(model, lr=3e-3), bf16=False)
    losses = [float(step(batch)) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_captured_step_matches_eager_steps_on_cuda():
    torch.manual_seed(0)
    model = tiny_lm().cuda().train()
    twin = copy.deepcopy(model)
    batches = [{"input_ids": torch.randint(4, 1000, (4, 16), device="cuda")} for _ in range(6)]
    for b in batches:
        b["labels"] = b["input_ids"]
    graph = TrainStep(model, adamw(model, lr=1e-3, capturable=True), bf16=False, graph=True)
    eager = TrainStep(twin, adamw(twin, lr=1e-3), bf16=False)
    for b in batches:
        a, e = graph(b), eager(b)
        assert torch.allclose(a, e, atol=1e-4)
    assert graph.graph is not None
