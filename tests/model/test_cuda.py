"""GPU paths: CUDA-graph decoding gives the eager tokens. Skipped without a CUDA device (CI);
run on a GPU machine with `python -m pytest tests/model/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch

from biogpt.model.generation.static import decoders_of

from tests.helpers import diverse_lm, eos_heavy_lm, graph_and_eager_steps, tiny_lm
from tests.helpers import CASES, make_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def cuda_models(tmp_path_factory):
    out = {}
    for name, model in (("random", tiny_lm(vocab_size=1000)), ("eos-heavy", eos_heavy_lm()), ("diverse", diverse_lm())):
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        ref = transformers.BioGptForCausalLM.from_pretrained(str(path)).eval().cuda()
        out[name] = (model.cuda(), ref)
    return out


@pytest.mark.parametrize("kind", ["random", "eos-heavy", "diverse"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "greedy")
def test_cuda_graph_tokens_equal_eager_and_transformers(cuda_models, kind, padded, options):
    ours, ref = cuda_models[kind]
    ids, mask = (t.cuda() for t in make_batch(ours.config.vocab_size, padded=padded))
    graph = ours.generate(ids, attention_mask=mask, max_new_tokens=24, **options)  # graphs on by default
    eager = ours.generate(ids, attention_mask=mask, max_new_tokens=24, cuda_graph=False, **options)
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=24, pad_token_id=1, **options)
    assert torch.equal(graph, eager)
    assert torch.equal(graph.cpu(), want.cpu())


def test_graphs_are_captured_once_per_bucket_and_dropped_when_weights_move():
    model = tiny_lm().cuda()
    ids = torch.randint(4, 1000, (3, 10), device="cuda")
    model.generate(ids, max_new_tokens=20)
    model.generate(ids[:2, :7], max_new_tokens=30)  # 2 rows -> bucket 2; 37 positions -> capacity 128
    model.generate(ids, max_new_tokens=40)  # same bucket as the first call (4 rows, 128)
    assert len(decoders_of(model)) == 2
    model.half()  # new storage: an old graph would read freed memory
    out = model.generate(ids, max_new_tokens=20)
    assert len(decoders_of(model)) == 3 and out.shape == (3, 30)


def test_training_mode_and_cuda_graph_false_decode_eagerly():
    model = tiny_lm().cuda()
    ids = torch.randint(4, 1000, (1, 6), device="cuda")
    model.generate(ids, max_new_tokens=5, cuda_graph=False)
    assert not decoders_of(model)


@pytest.mark.parametrize("every", [1, 8])
@pytest.mark.parametrize("span_step", [128, 8])
def test_continuous_batching_on_the_captured_step_equals_eager_generate(every, span_step, monkeypatch):
    """The refill engine replays the bucket's captured step (graph) with per-row positions, and
    (span_step 8) graphs of partial attention spans captured mid-run: each prompt's tokens equal
    eager generate on it alone, fp32."""
    from biogpt.model.continuous import generate_continuous
    from biogpt.model.generation import static

    from tests.helpers import EOS, LENGTHS, alone, finished, prompts_of

    monkeypatch.setattr(static, "GRAPH_LENGTH_STEP", span_step)
    model = diverse_lm().cuda()
    prompts = prompts_of(model.config.vocab_size, LENGTHS)
    got = finished(generate_continuous(model, prompts, rows=3, max_new_tokens=20, eos_token_id=EOS, refill_every=every))
    decoders = list(decoders_of(model).values())
    assert any(d.graph is not None for d in decoders)
    if span_step == 8:
        assert any(d.span_graphs for d in decoders)
    monkeypatch.undo()
    for i, p in enumerate(prompts):
        assert got[i] == alone(model, p, 20), i


@pytest.mark.parametrize("mode", [True, "layers"], ids=["compiled-step", "compiled-layers"])
def test_compiled_captured_step_gives_the_eager_tokens(cuda_models, mode):
    """generate(compile_step=...): the compiled step inside the captured greedy graph, fp32, gives
    eager generate's tokens and transformers' (padded and unpadded prompts)."""
    ours, ref = cuda_models["diverse"]
    for padded in (False, True):
        ids, mask = (t.cuda() for t in make_batch(ours.config.vocab_size, padded=padded))
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=24, compile_step=mode)
        eager = ours.generate(ids, attention_mask=mask, max_new_tokens=24, cuda_graph=False)
        want = ref.generate(ids, attention_mask=mask, max_new_tokens=24, pad_token_id=1)
        assert torch.equal(got, eager) and torch.equal(got.cpu(), want.cpu()), padded
    compiled = [d for d in decoders_of(ours).values() if d.compiled_layers or d.step_fn != d._step]
    assert compiled and all(d.graph is not None for d in compiled)


@pytest.mark.parametrize("kind", ["random", "diverse"])
@pytest.mark.parametrize("options", [dict(), dict(num_beams=4), dict(no_repeat_ngram_size=2)], ids=["greedy", "beam4", "ngram"])
def test_fused_decode_kernels_give_the_eager_tokens(cuda_models, kind, options):
    """generate(decode_kernels="triton"): the fused Triton layers inside the captured step, fp32,
    give eager generate's tokens and transformers' (padded and unpadded prompts, 4 rows or 16)."""
    ours, ref = cuda_models[kind]
    for padded in (False, True):
        ids, mask = (t.cuda() for t in make_batch(ours.config.vocab_size, padded=padded))
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=24, decode_kernels="triton", **options)
        eager = ours.generate(ids, attention_mask=mask, max_new_tokens=24, cuda_graph=False, **options)
        want = ref.generate(ids, attention_mask=mask, max_new_tokens=24, pad_token_id=1, **options)
        assert torch.equal(got, eager) and torch.equal(got.cpu(), want.cpu()), padded
    fused = [d for d in decoders_of(ours).values() if d.kernels == "triton"]
    assert fused and all(d.graph is not None for d in fused)


def _needs_pdl() -> None:
    from biogpt.model.fast import triton_common

    reason = triton_common.pdl_unavailable_reason(torch.device("cuda"))
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("n, k", [(3072, 1024), (1024, 4096), (4800, 1600), (1600, 6400)])
@pytest.mark.parametrize("pdl", [False, True], ids=["", "pdl"])
def test_fused_row_linear_on_the_gpu_matches_torch(dtype, n, k, pdl):
    """The fused kernel at the real models' shapes, compiled for this GPU: LayerNorm + GELU
    prologue/epilogue and the in-place residual, against torch's layers (stated tolerances: a
    unit or two of the dtype's last place relative to the outputs' scale). PDL: launched as a
    programmatic dependent launch, in the rule's configuration and unrolled (the whole weight
    slice requested before the wait)."""
    import torch.nn.functional as F

    from biogpt.model.fast import triton_linear

    if pdl:
        _needs_pdl()

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, k, device="cuda", generator=g).to(dtype)
    w = (torch.randn(n, k, device="cuda", generator=g) / k**0.5).to(dtype)
    b = (torch.randn(n, device="cuda", generator=g) * 0.1).to(dtype)
    ln = torch.nn.LayerNorm(k, device="cuda", dtype=dtype)
    tol = {torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}[dtype]
    configs = [None, (2, 512, 4, True)] if pdl else [None]
    with torch.no_grad():
        for config in configs:
            want = F.gelu(F.linear(ln(x), w, b))
            got = triton_linear.row_linear(x, w, b, out=torch.empty_like(want), layer_norm=ln, activation="gelu", config=config, pdl=pdl)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)
            residual = torch.randn(1, n, device="cuda", generator=g).to(dtype)
            want = residual + F.linear(x, w, b)
            got = triton_linear.row_linear(x, w, b, out=residual.clone(), residual=True, config=config, pdl=pdl)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("heads, span", [(16, 384), (25, 1024)])
@pytest.mark.parametrize("split", [0, 64, 256])
def test_fused_decode_attention_on_the_gpu_matches_sdpa(dtype, heads, span, split):
    """The Triton attention kernel at the real models' head counts (head size 64), one row with
    a left-padded prefix and one without, against torch's SDPA on the same cache. Split over
    the cache (the last program of a head and row combines the others' partials, found by an
    atomic count): 30 launches back to back, every one right and the counts left zeroed, so a
    combination reading a partial not yet visible would show."""
    import torch.nn.functional as F

    from biogpt.model.fast import triton_step

    g = torch.Generator(device="cuda").manual_seed(0)
    B, D = 2, 64
    kv = torch.randn(2, 4, heads, span + 128, D, device="cuda", generator=g).to(dtype)
    q = torch.randn(B, heads * D, device="cuda", generator=g).to(dtype)
    bias = torch.zeros(B, span, device="cuda", dtype=dtype)
    bias[0, :150] = float("-inf")
    bias[:, span - 40 :] = float("-inf")
    last = torch.full((B,), span - 41, device="cuda")  # the last 40 columns: not written yet
    want = F.scaled_dot_product_attention(q.view(B, 1, heads, D).transpose(1, 2), kv[0, :B, :, :span], kv[1, :B, :, :span], attn_mask=bias[:, None, None, :])
    want = want.transpose(1, 2).reshape(B, heads * D)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    counts = torch.zeros(B * heads, dtype=torch.int32, device="cuda")
    outs = [
        triton_step.decode_attention(q, kv, bias, span=span, last=last, out=torch.empty_like(q), split=split, counts=counts) for _ in range(30)
    ]
    for got in outs:
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert not counts.any()


def test_greedy_kernel_on_the_gpu_picks_what_torch_picks():
    """The fused step's greedy kernel at BioGPT's vocabulary (11 blocks), fp16 scores with ties
    and a banned end-of-sequence id, against the torch body (tests/model/test_fused_decode.py has the
    CPU version with finished rows and several EOS ids)."""
    from biogpt.model.generation import StaticDecoder

    model = tiny_lm(vocab_size=42384).to(device="cuda", dtype=torch.float16)
    decoders = [StaticDecoder(model, torch.device("cuda"), 2, 128, capture=False, kernels=k) for k in ("torch", "triton")]
    g = torch.Generator(device="cuda").manual_seed(0)
    scores = torch.randn(2, 42384, device="cuda", generator=g).half()
    scores[0, [7000, 40000]] = 8.0
    scores[1, 2] = 9.0  # EOS, banned before min_col
    step_logits = torch.randn(2, 42384, device="cuda", generator=g).half()
    eos, pad = torch.tensor([2], device="cuda"), torch.tensor(1, device="cuda")
    results = []
    for dec in decoders:
        loop = dec.greedy_loop
        loop._make_buffers()
        dec.step_fn = lambda: step_logits
        loop.next_logits.copy_(scores)
        loop.cur.fill_(3)
        loop.min_col.fill_(5)
        with torch.inference_mode():
            loop.body(eos, pad, True)
        results.append((dec.tokens.clone(), loop.out.clone(), loop.unfinished.clone(), loop.last_col.clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert results[1][0][0].item() == 7000 and results[1][0][1].item() != 2


def test_auto_decode_kernels_report_the_measurement_and_keep_the_tokens():
    """The default ("auto") at one row measures both captured steps and keeps one; either way
    the tokens are eager generate's (fp32) and the report says what was measured."""
    model = diverse_lm().cuda()
    ids = torch.randint(4, 1000, (1, 8), device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    got = model.generate(ids, max_new_tokens=30)
    assert torch.equal(got, model.generate(ids, max_new_tokens=30, cuda_graph=False))
    (dec,) = decoders_of(model).values()
    report = dec.kernel_report
    from biogpt.model.fast import triton_common

    names = ["triton", "triton-sdpa"]
    if triton_common.pdl_unavailable_reason(torch.device("cuda")) is None:  # Hopper: the same launched dependently
        names += ["triton+pdl", "triton-sdpa+pdl"]
    assert report["kernels"] == dec.kernels in ("torch", *names), report
    for name in names:
        assert report[f"{name}_error"] < 1e-4 and report[f"{name}_ms"] > 0, report
    assert report["torch_ms"] > 0
    assert (dec.fused is not None) == (dec.kernels != "torch")
    print(report)


@pytest.mark.parametrize("attention, split", [("triton", 0), ("triton", 64), ("sdpa", 0)], ids=["triton", "triton-split64", "sdpa"])
def test_dependently_launched_fused_step_gives_the_eager_tokens(monkeypatch, attention, split):
    """The fused step with every Triton kernel a programmatic dependent launch, captured in the
    greedy graph (auto made to keep it): a kernel reading what the previous one has not finished
    writing would change the tokens. fp32, 60 new tokens over 4 rows' prompts one at a time and
    a real model's 16 heads (the attention kernel's grid); the attention split over the cache
    too (its count buffer shared by the layers, zeroed by each launch)."""
    _needs_pdl()
    from biogpt.model.fast import fused, tuning
    from biogpt.model.generation import StaticDecoder, kernel_choice

    wanted = "triton+pdl" if attention == "triton" else "triton-sdpa+pdl"
    monkeypatch.setattr(kernel_choice, "FUSED_VARIANTS", {wanted: kernel_choice.FUSED_VARIANTS[wanted]})  # auto's only candidate
    monkeypatch.setattr(StaticDecoder, "_replay_ms", lambda self, graphs: [1.0] + [0.1] * (len(graphs) - 1))  # ... kept
    monkeypatch.setattr(fused, "attention_split", lambda *args: split)  # instead of what tune chose
    monkeypatch.setattr(tuning, "tune", lambda *args, **kw: 0.0)  # (a minute of compilations at this width; not what is tested)
    # diverse_lm's continuations at BioGPT's width (initializer scaled down to keep the outputs' spread)
    model = tiny_lm(0, vocab_size=1000, initializer_range=0.05, tie_word_embeddings=False, hidden_size=1024, num_attention_heads=16, intermediate_size=4096).cuda()
    for seed in range(4):
        ids = torch.randint(4, 1000, (1, 5 + seed), device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed))
        got = model.generate(ids, max_new_tokens=60)
        assert torch.equal(got, model.generate(ids, max_new_tokens=60, cuda_graph=False)), seed
    decoders = list(decoders_of(model).values())
    assert decoders and all(d.kernels == wanted and d.fused.pdl and d.fused.split == split for d in decoders), [d.kernel_report for d in decoders]


def test_short_unpadded_prompts_take_the_captured_prompt_pass():
    """One or two rows of a few tokens: the prompt pass is a captured graph (padded to 16), fp32
    tokens equal eager generate's and transformers' (tests/model/test_generation.py checks the
    padded pass's logits and cache on the CPU)."""
    from biogpt.model.generation import static

    ours = tiny_lm(vocab_size=1000).cuda()
    for rows, P in ((1, 8), (2, 5), (1, 16)):
        ids = torch.randint(4, 1000, (rows, P), device="cuda")
        got = ours.generate(ids, max_new_tokens=20)
        assert torch.equal(got, ours.generate(ids, max_new_tokens=20, cuda_graph=False)), (rows, P)
    decoders = [d for d in decoders_of(ours).values() if d.prefill_graphs]
    assert decoders and all(g is not None for d in decoders for g, *_ in d.prefill_graphs.values())
    assert all(set(d.prefill_graphs) == {16} for d in decoders)
    assert static.PREFILL_LENGTH_STEP == 16


def test_fp16_fused_qkv_step_matches_the_unfused_step():
    """fp16 decode step of the GPU network (q, k and v as one projection over its own copy of
    their weights) gives the three-projection step's logits within fp16 rounding, and the
    model's q/k/v parameters keep their storage."""
    from biogpt.model.fast.network import FastNetwork
    from biogpt.model.generation import StaticDecoder

    model = diverse_lm().to(device="cuda", dtype=torch.float16)
    pointers = [p.data_ptr() for p in model.parameters()]
    logits = []
    for fuse in (True, False):
        with torch.inference_mode():
            dec = StaticDecoder(model, torch.device("cuda"), 4, 128, capture=False)
            assert dec.net.fused_qkv
            if not fuse:
                dec.net = FastNetwork(model)
            dec.write_pos.fill_(5)
            dec.positions.fill_(5)
            dec.tokens.copy_(torch.tensor([5, 9, 11, 13], device="cuda"))
            logits.append(dec.run_step().float())
    a, b = logits
    assert ((a - b).norm() / b.norm()).item() < 1e-2
    assert pointers == [p.data_ptr() for p in model.parameters()]


def test_plain_forward_leaves_layer_inputs_alone():
    """A forward hook sees a layer's input as it was given (activation patching relies on it),
    in a plain forward and in generation (where a hooked layer runs as the reference layer)."""
    model = diverse_lm().cuda()
    ids, mask = (t.cuda() for t in make_batch(model.config.vocab_size))
    seen = {}
    layer = model.biogpt.layers[1]
    layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("before", args[0].clone()))
    layer.register_forward_hook(lambda m, args, out: seen.__setitem__("after", args[0].clone()))
    with torch.no_grad():
        model(ids, attention_mask=mask)
    assert torch.equal(seen["before"], seen["after"])


# ------------------------------------------------------------------ training: captured steps
def _token_rows(n: int = 24) -> list[dict[str, list[int]]]:
    """Lengths from 5 to 124 tokens (the tiny preset has 128 positions): batches of 4 fall in
    the 64- and 128-token buckets."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for i in range(n):
        length = 5 + (i * 37) % 120
        ids = torch.randint(3, 100, (length,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [t % 3 for t in ids]})
    return rows


def _token_model(seed: int = 0, dropout: float = 0.0):
    from biogpt.model import BioGptConfig, BioGptForTokenClassification

    torch.manual_seed(seed)
    config = BioGptConfig.from_preset("tiny", vocab_size=100, id2label={0: "O", 1: "B-X", 2: "I-X"},
                                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BioGptForTokenClassification(config)


def test_captured_training_steps_per_shape_match_eager_steps():
    model, twin, graph, eager = graph_and_eager_steps(device="cuda")
    for rows, length in [(4, 64), (2, 128), (4, 64), (4, 128), (2, 128), (4, 64), (4, 128), (2, 128), (4, 64)]:
        ids = torch.randint(4, 1000, (rows, length), device="cuda")
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0
        batch = {"input_ids": ids.masked_fill(mask == 0, 1), "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
        assert torch.allclose(graph(batch), eager(batch), rtol=1e-4, atol=1e-5)
    # each shape: eager at its 1st use, captured and replayed at its 2nd, replayed after:
    # (4, 64) x4 -> 3 replays, (2, 128) x3 -> 2, (4, 128) x2 -> 1
    assert len(graph.graphs) == 3 and graph.replays == 6 and graph.capture_failed is None
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-4), name


def test_captured_gradient_accumulation_matches_eager_accumulation():
    model, twin, graph, eager = graph_and_eager_steps(device="cuda")
    batches = []
    for rows, length in [(4, 64), (2, 128)]:
        ids = torch.randint(4, 1000, (rows, length), device="cuda")
        batches.append({"input_ids": ids, "labels": ids})
    a, b = batches
    for group in ([a, b], [a, b, a], [b], [a, b], [b, a]):
        for batch in group:
            got, want = graph.accumulate(batch, scale=1 / len(group)), eager.accumulate(batch, scale=1 / len(group))
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
        for x, y in zip(model.parameters(), twin.parameters()):
            assert torch.allclose(x.grad, y.grad, rtol=1e-3, atol=1e-6)
        graph.update()
        eager.update()
    assert graph.shapes == 2 and ("update",) in graph.graphs and graph.replays == 8 and graph.capture_failed is None
    for (name, x), y in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(x, y, atol=1e-4), name


@pytest.mark.parametrize("accum", [1, 3])
def test_trainer_replays_captured_steps_and_trains_like_the_eager_loop(tmp_path, accum):
    import json

    from biogpt.training import Trainer, TrainingArgs

    from tests.helpers import collate

    runs = {}
    for graph in (True, False):
        args = TrainingArgs(output_dir=str(tmp_path / str(graph)), epochs=3 * accum, lr=1e-3, batch_size=4, seed=3, cuda_graph=graph, grad_accum=accum)
        trainer = Trainer(_token_model(), args, _token_rows(), collate, device=torch.device("cuda"), quiet=True)
        summary = trainer.train()
        lines = [json.loads(x) for x in (tmp_path / str(graph) / "metrics.jsonl").read_text().splitlines()]
        runs[graph] = (summary, [r["loss"] for r in lines if "loss" in r])
    summary, losses = runs[True]
    assert summary["cuda_graph"]["replayed_batches"] > 0 and summary["cuda_graph"]["capture_failed"] is None
    assert "cuda_graph" not in runs[False][0]
    assert losses == pytest.approx(runs[False][1], rel=1e-3)


def test_trainer_with_captured_steps_resumes_like_an_uninterrupted_run(tmp_path):
    """Dropout on: a resumed run (its first steps eager, then captured) draws the same masks as
    the uninterrupted one (replays advance the generator as eager steps do)."""
    import json

    from biogpt.training import Trainer, TrainingArgs

    from tests.helpers import collate

    def losses(out):
        return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r}

    def args(out, **kw):
        return TrainingArgs(output_dir=str(out), epochs=3, lr=1e-3, batch_size=4, seed=3, **kw)

    cuda = torch.device("cuda")
    Trainer(_token_model(dropout=0.2), args(tmp_path / "a"), _token_rows(), collate, device=cuda, quiet=True).train()
    out = tmp_path / "b"
    Trainer(_token_model(dropout=0.2), args(out, save_steps=9), _token_rows(), collate, device=cuda, quiet=True).train()
    resumed = Trainer(_token_model(seed=5, dropout=0.2), args(out), _token_rows(), collate, device=cuda, quiet=True)
    summary = resumed.train(resume=out / "checkpoints" / "step-9")
    assert summary["cuda_graph"]["replayed_batches"] > 0
    # other dropout masks would move the loss by percents; 1e-3 leaves room for the atomics of
    # CUDA's embedding and attention backward (not bitwise reproducible on a GPU)
    assert losses(out) == pytest.approx(losses(tmp_path / "a"), rel=1e-3)


def test_generation_between_captured_training_steps_recaptures_them():
    """GPU generation fuses q/k/v (new addresses for their weights): the training graphs captured
    before must be dropped, not replayed on freed memory; training goes on like the eager twin."""
    model, twin, graph, eager = graph_and_eager_steps(device="cuda")
    ids = torch.randint(4, 1000, (4, 64), device="cuda")
    batch = {"input_ids": ids, "labels": ids}
    for _ in range(3):
        assert torch.allclose(graph(batch), eager(batch), rtol=1e-4, atol=1e-5)
    before = graph.weights
    for m in (model, twin):
        m.eval()
        m.generate(ids[:1, :8], max_new_tokens=4)
        m.train()
    assert tuple(p.data_ptr() for p in model.parameters()) != before  # fused by generation
    for _ in range(3):
        assert torch.allclose(graph(batch), eager(batch), rtol=1e-4, atol=1e-5)
    assert graph.weights != before and graph.replays >= 3
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-4), name
