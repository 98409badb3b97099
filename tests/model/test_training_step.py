"""model/training.py: the AdamW grouping and the training step (eager here; the captured CUDA
graph variant runs in tests/test_cuda.py and the GPU suite)."""

from __future__ import annotations

import copy

import pytest
import torch

from biogpt.model.training import TrainStep, adamw

from tests.helpers import graph_and_eager_steps, tiny_lm


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


# ------------------------------------------------------------------ padding for captured steps
def _heads(seed: int = 0) -> dict:
    """One tiny model per head the trainer trains, with a batch that is already partly padded."""
    from biogpt.model import BioGptForSequenceClassification, BioGptForTokenClassification

    from tests.helpers import tiny_config

    torch.manual_seed(seed)
    ids = torch.randint(4, 1000, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids = ids.masked_fill(mask == 0, 1)
    token_labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    labels3 = {0: "a", 1: "b", 2: "c"}
    return {
        "lm": (tiny_lm(seed), {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}),
        "token": (BioGptForTokenClassification(tiny_config(id2label=labels3)), {"input_ids": ids, "attention_mask": mask, "labels": token_labels}),
        "sequence": (BioGptForSequenceClassification(tiny_config(id2label=labels3)), {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1])}),
        "multilabel": (BioGptForSequenceClassification(tiny_config(id2label=labels3, problem_type="multi_label_classification")),
                       {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])}),
        "no mask": (tiny_lm(seed), {"input_ids": ids, "labels": ids}),
    }


def _assert_same_loss_and_gradients(model, want_batch, got_batch) -> None:
    """The loss within 1e-5 and every gradient within 1e-4 (relative) of `want_batch`'s."""
    results = []
    for b in (want_batch, got_batch):
        model.zero_grad(set_to_none=True)
        loss = model(**b).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), got_grads, want_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("head", ["lm", "token", "sequence", "multilabel", "no mask"])
def test_padding_to_a_bucket_changes_neither_loss_nor_gradients(head):
    from biogpt.model.training import pad_to_length

    model, batch = _heads()[head]
    model.train()
    padded = pad_to_length(batch, 64, pad_token_id=model.config.pad_token_id)
    assert padded["input_ids"].shape == (3, 64) and padded["attention_mask"][:, 9:].eq(0).all()
    if batch["labels"].shape == batch["input_ids"].shape:
        assert padded["labels"].shape == (3, 64) and padded["labels"][:, 9:].eq(-100).all()
    else:
        assert padded["labels"] is batch["labels"]
    _assert_same_loss_and_gradients(model, batch, padded)


@pytest.mark.parametrize("head", ["lm", "token", "sequence", "multilabel"])
def test_dropping_a_right_padding_mask_changes_neither_loss_nor_gradients(head):
    from biogpt.model.training import drop_right_padding_mask, pad_to_length

    model, batch = _heads()[head]
    model.train()
    batch = pad_to_length(batch, 16, pad_token_id=model.config.pad_token_id)
    bare = drop_right_padding_mask(batch)
    assert "attention_mask" not in bare and bare["input_ids"] is batch["input_ids"]
    _assert_same_loss_and_gradients(model, batch, bare)


def test_a_mask_that_is_not_only_right_padding_is_kept():
    from biogpt.model.training import drop_right_padding_mask

    _, batch = _heads()["token"]
    left = {**batch, "attention_mask": batch["attention_mask"].flip(1)}
    assert drop_right_padding_mask(left) is left
    labelled = {**batch, "labels": batch["labels"].masked_fill(batch["attention_mask"] == 0, 2)}
    assert drop_right_padding_mask(labelled) is labelled  # the mask keeps those labels out of the loss
    assert drop_right_padding_mask({"input_ids": batch["input_ids"]}) == {"input_ids": batch["input_ids"]}


def test_padded_length_rounds_up_within_the_position_limit():
    from biogpt.model.training import pad_to_length, padded_length

    assert [padded_length(n, limit=1024) for n in (1, 64, 65, 1000, 1024)] == [64, 64, 128, 1024, 1024]
    assert padded_length(1000, limit=1010) == 1010 and padded_length(50, limit=40) == 50
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long)}
    assert pad_to_length(batch, 5, pad_token_id=1) is batch


# ------------------------------------------------------------------ no host synchronisation
class _SyncDetector(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that make the host wait for a device value (fatal inside a CUDA graph
    capture): reading a scalar, and ops whose output shape depends on values."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "repeat_interleave")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.SYNCING:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("head", ["lm", "token", "sequence", "multilabel"])
def test_the_captured_step_makes_no_host_synchronisation(head, monkeypatch):
    """What a capture runs (TrainStep._eager: forward, backward, clipping) on every head the
    trainer uses, on the CPU, with a CUDA graph capture emulated (the model then looks at no
    mask values); the optimizer's capturability is torch's own (fused capturable AdamW on
    CUDA). Outside a capture the padding mask check syncs: the detector must see it, so it is
    not blind."""
    from biogpt.model import modeling

    model, batch = _heads()[head]
    model.train()

    def step() -> list[str]:
        model.zero_grad(set_to_none=True)
        with _SyncDetector() as detector:
            model(**batch).loss.float().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        return detector.seen

    assert "_local_scalar_dense" in step()
    monkeypatch.setattr(modeling, "_capturing_cuda_graph", lambda: True)
    assert step() == []


def test_loading_optimizer_state_keeps_this_optimizers_settings():
    from biogpt.model.training import load_optimizer_state

    model = tiny_lm().train()
    batch = {"input_ids": torch.randint(4, 1000, (2, 8))}
    batch["labels"] = batch["input_ids"]
    eager = adamw(model, lr=2e-3)
    TrainStep(model, eager, bf16=False)(batch)
    saved = eager.state_dict()

    graphed = adamw(model, lr=5e-4, capturable=True)  # what a CUDA-graph run builds
    load_optimizer_state(graphed, saved)
    for group in graphed.param_groups:
        assert group["capturable"] is True
        assert isinstance(group["lr"], torch.Tensor) and float(group["lr"]) == pytest.approx(2e-3)
    assert all(s["step"].dtype == torch.float32 and float(s["step"]) == 1.0 for s in graphed.state.values())

    back = adamw(model, lr=1e-4)  # and the other way: a tensor learning rate becomes a float
    load_optimizer_state(back, graphed.state_dict())
    assert all(not g.get("capturable") and g["lr"] == pytest.approx(2e-3) for g in back.param_groups)
    assert all(s["step"].device.type == "cpu" for s in back.state.values())


# ------------------------------------------------------------------ graph mode, emulated on the CPU
def _shaped_batches(shapes):
    g = torch.Generator().manual_seed(0)
    out = []
    for rows, length in shapes:
        ids = torch.randint(4, 1000, (rows, length), generator=g)
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0
        out.append({"input_ids": ids.masked_fill(mask == 0, 1), "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return out


SHAPES = [(4, 16), (2, 32), (4, 16), (4, 32), (2, 32), (4, 16), (4, 32), (2, 32), (4, 16)]


def test_graph_mode_captures_each_shape_at_its_second_use_and_replays_it(monkeypatch):
    from tests.helpers import emulate_cuda_graph_training

    emulate_cuda_graph_training(monkeypatch)
    model, twin, graph, eager = graph_and_eager_steps()
    replays = []
    for batch in _shaped_batches(SHAPES):
        assert torch.allclose(graph(batch), eager(batch), rtol=1e-5, atol=1e-6)
        replays.append(graph.replays)
    # each shape eager at first use; captured (and replayed) at its second
    assert replays == [0, 0, 1, 1, 2, 3, 4, 5, 6] and len(graph.graphs) == 3 and graph.pool == "pool"
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_graph_mode_beyond_max_graphs_and_after_a_failed_capture_runs_eagerly(monkeypatch, caplog):
    import biogpt.model.training as training

    from tests.helpers import emulate_cuda_graph_training

    emulate_cuda_graph_training(monkeypatch)
    model = tiny_lm().train()
    step = TrainStep(model, adamw(model, lr=1e-3), bf16=False, graph=True, warmup=0, max_graphs=1)
    for batch in _shaped_batches(SHAPES):
        step(batch)
    assert len(step.graphs) == 1 and step.replays == 3  # only (4, 16) captured: at its 2nd, 3rd and 4th use

    def broken(fn, *, pool):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(training, "capture_graph", broken)
    torch.manual_seed(0)
    model = tiny_lm().train()
    twin = copy.deepcopy(model)
    step = TrainStep(model, adamw(model, lr=1e-3), bf16=False, graph=True, warmup=0)
    eager = TrainStep(twin, adamw(twin, lr=1e-3), bf16=False)
    for batch in _shaped_batches(SHAPES):
        assert torch.allclose(step(batch), eager(batch), rtol=1e-5, atol=1e-6)
    assert step.capture_failed == "RuntimeError: operation not permitted when stream is capturing"
    assert step.replays == 0 and not step.graphs
    assert sum("could not capture" in r.message for r in caplog.records) == 1


@pytest.mark.slow
def test_gpu_suite_trainer_row_runs_on_the_cpu_with_graphs_emulated(tmp_path, monkeypatch):
    """benchmarks/run.py's `trainer` part, dry-run on the CPU (tiny model, graphs emulated): the
    code a GPU session runs once per lend must not fail on a name or a shape there."""
    pytest.importorskip("transformers")
    from benchmarks.run import trainer_rows
    from biogpt.model import BioGptForCausalLM

    from tests.helpers import emulate_cuda_graph_training, tiny_config

    steps = emulate_cuda_graph_training(monkeypatch)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    # short rows (the real ones make 8 x 700 x 42k logits): batch widths 27-87, padded to 64 or 128
    monkeypatch.setattr("benchmarks.continuous.load_lengths", lambda n: [(20 + 12 * (i // 8) + i % 5, 3) for i in range(n)])
    BioGptForCausalLM(tiny_config(vocab_size=42384, max_position_embeddings=1024)).save_pretrained(tmp_path, tokenizer=False)
    res = trainer_rows(tmp_path, torch.device("cpu"), repeats=1, quick=True)
    (step,) = steps
    assert sorted(key[1][1] for key in step.graphs) == [(8, 64), (8, 128)] and step.replays >= 6
    assert res.ours[0] > 0 and res.theirs[0] > 0 and "2 captured shapes" in res.note


def test_graph_mode_gradient_accumulation_matches_eager_accumulation(monkeypatch):
    from tests.helpers import emulate_cuda_graph_training

    emulate_cuda_graph_training(monkeypatch)
    model, twin, graph, eager = graph_and_eager_steps(max_grad_norm=0.05)
    a, b = _shaped_batches([(4, 16), (2, 32)])
    for group in ([a, b], [a, b, a], [b], [a, b]):  # the last micro-batch count of an epoch may differ
        for batch in group:
            got, want = graph.accumulate(batch, scale=1 / len(group)), eager.accumulate(batch, scale=1 / len(group))
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
        for (name, x), y in zip(model.named_parameters(), twin.parameters()):  # clipping and Adam hide a scale
            assert torch.allclose(x.grad, y.grad, rtol=1e-4, atol=1e-7), name
        graph.update()
        eager.update()
    # each shape eager at first use, then replayed; the update captured at its second use
    assert graph.shapes == 2 and ("update",) in graph.graphs and graph.replays == 6 and graph.batches == 8
    for (name, x), y in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(x, y, atol=1e-5), name
    with pytest.raises(ValueError, match="accumulate"):
        graph(a)


def test_eager_accumulation_of_one_batch_is_one_step():
    torch.manual_seed(0)
    model = tiny_lm().train()
    twin = copy.deepcopy(model)
    (batch,) = _shaped_batches([(4, 16)])
    one, two = TrainStep(model, adamw(model, lr=1e-3), bf16=False), TrainStep(twin, adamw(twin, lr=1e-3), bf16=False)
    for _ in range(3):
        assert torch.equal(one(batch), two.accumulate(batch))
        two.update()
    for x, y in zip(model.parameters(), twin.parameters()):
        assert torch.equal(x, y)


def test_graphs_are_dropped_when_the_weights_move(monkeypatch, caplog):
    """A graph holds the weights' addresses: after a parameter gets new storage (a move, a
    conversion, a user replacing `.data`), old graphs must not be replayed."""
    from tests.helpers import emulate_cuda_graph_training

    emulate_cuda_graph_training(monkeypatch)
    model, twin, graph, eager = graph_and_eager_steps()
    a, b = _shaped_batches([(4, 16), (2, 32)])
    for batch in (a, b, a, b):
        graph(batch), eager(batch)
    assert len(graph.graphs) == 2
    caplog.set_level("INFO", logger="biogpt.model.training")
    with torch.no_grad():  # q, k, v re-homed: new addresses, same values
        for layer in model.biogpt.layers:
            for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                p.weight.data = p.weight.data.clone()
    for batch in (a, b):
        assert torch.allclose(graph(batch), eager(batch), rtol=1e-5, atol=1e-6)
    assert "2 captured graphs dropped" in caplog.text
    assert len(graph.graphs) == 2 and graph.weights == tuple(p.data_ptr() for p in model.parameters())  # recaptured
    model.generate(a["input_ids"][:1, :4], max_new_tokens=2)  # generation moves nothing: nothing dropped
    graph(a)
    assert caplog.text.count("dropped") == 1
