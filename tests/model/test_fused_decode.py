"""The fused one-row decode layer (biogpt.model.fast: fused, triton_*, tuning) and its selection
by the static decoder (biogpt.model.generation.kernel_choice).

On a CPU the Triton kernels run under Triton's interpreter (TRITON_INTERPRET=1, set here before
the kernels are defined; nothing else in the test session imports them): the same kernel code a
GPU compiles, executed with NumPy, so these tests check the kernels' arithmetic and addressing.
Speed and the captured "auto" choice on a real GPU are tests/model/test_cuda.py's."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="Triton is not installed (the test extra installs it)")

from biogpt.model.fast import fused, triton_common, triton_linear, triton_step, tuning  # noqa: E402
from biogpt.model.fast.network import FastNetwork  # noqa: E402
from biogpt.model.generation import GenerationConfig, StaticDecoder, kernel_choice, search, static  # noqa: E402
from biogpt.model.kv_cache import KVCache  # noqa: E402

from tests.helpers import diverse_lm, emulate_decoder_capture, tiny_lm  # noqa: E402

# float32: the kernels sum in a different order than ATen (~1e-7 relative). float16: results
# are rounded where the plain step rounds them, so they match the reference to a unit or two
# of float16's last place. (bfloat16 is left to the GPU tests: the interpreter converts to
# bfloat16 by truncating, a GPU rounds.)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])


def _inputs(dtype, m=2, k=100, n=72, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) / k**0.5).to(dtype)
    b = (torch.randn(n, generator=g) * 0.1).to(dtype)
    ln = torch.nn.LayerNorm(k).to(dtype)
    with torch.no_grad():
        ln.weight.add_(torch.randn(k, generator=g).to(dtype) * 0.2)
        ln.bias.add_(torch.randn(k, generator=g).to(dtype) * 0.2)
    return x, w, b, ln


@DTYPES
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_new"])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
@pytest.mark.parametrize("config", [None, (4, 64, 4, False), (8, 64, 4, True)], ids=["rule", "rolled", "unrolled"])
@pytest.mark.parametrize("pdl", [False, True], ids=["", "pdl"])
def test_row_linear_computes_what_the_plain_layers_compute(dtype, activation, layer_norm, config, pdl):
    """K = 100 and N = 72: neither a multiple of the blocks, so the masked edges are exercised;
    two rows, so the row stride is; K looped over (two 64-wide blocks) and unrolled. With PDL
    the unrolled kernel reads its whole weight slice at once, before waiting (the interpreter
    runs the wait as nothing: the arithmetic and addressing are what is checked here)."""
    x, w, b, ln = _inputs(dtype)
    with torch.no_grad():
        h = ln(x) if layer_norm else x
        want = F.linear(h, w, b)
        if activation:
            want = F.gelu(want, approximate="tanh" if activation == "gelu_new" else "none")
    out = torch.full_like(want, float("nan"))
    triton_linear.row_linear(x, w, b, out=out, layer_norm=ln if layer_norm else None, activation=activation, config=config, pdl=pdl)
    torch.testing.assert_close(out, want, **TOL[dtype])


@DTYPES
@pytest.mark.parametrize("config, pdl", [(None, False), ((8, 64, 4, True), True)], ids=["rule", "unrolled-pdl"])
def test_row_linear_adds_into_the_residual_in_place(dtype, config, pdl):
    x, w, b, _ = _inputs(dtype)
    residual = torch.randn(2, 72).to(dtype)
    want = residual + F.linear(x, w, b)
    out = residual.clone()
    assert triton_linear.row_linear(x, w, b, out=out, residual=True, config=config, pdl=pdl) is out
    torch.testing.assert_close(out, want, **TOL[dtype])


@DTYPES
def test_fused_head_is_the_final_layer_norm_and_the_lm_head(dtype):
    """No bias (the tied LM head), LayerNorm in the prologue, N not a multiple of the block."""
    model = diverse_lm().to(dtype)
    x = torch.randn(3, model.config.hidden_size).to(dtype)
    with torch.no_grad():
        want = model.output_projection(model.biogpt.layer_norm(x))
    assert model.output_projection.bias is None
    torch.testing.assert_close(fused.FusedHead(FastNetwork(model), config=None)(x), want, **TOL[dtype])


@DTYPES
@pytest.mark.parametrize("pdl", [False, True], ids=["", "pdl"])
def test_step_prologue_gives_the_models_embeddings_and_the_steps_mask(dtype, pdl):
    """Embeddings as the model computes them (word x scale, + position at offset 2), the mask
    the plain static step builds (kept and written keys: 0, others -inf), positions advanced."""
    model = diverse_lm().to(dtype)
    tokens, positions = torch.tensor([5, 900, 2]), torch.tensor([0, 7, 40])
    write_pos = torch.tensor([3, 64, 100])
    key_mask = torch.ones(3, 128, dtype=torch.bool)
    key_mask[1, :4] = False  # left padding
    with torch.no_grad():
        want_x = model.biogpt.embed_tokens(tokens[:, None]) + model.biogpt.embed_positions(positions[:, None])
    allowed = key_mask & (torch.arange(128)[None, :] <= write_pos[:, None])
    want_bias = torch.zeros(3, 128, dtype=dtype).masked_fill(~allowed, float("-inf"))
    moved = positions.clone()
    x, bias = triton_step.step_prologue(model.biogpt, tokens, moved, write_pos, key_mask, pdl=pdl)
    assert torch.equal(x, want_x) and torch.equal(bias, want_bias)
    assert moved.tolist() == [1, 8, 41]


@pytest.mark.parametrize("config, pdl", [(None, False), ((8, 64, 4, True), True)], ids=["rule", "unrolled-pdl"])
def test_row_linear_writes_keys_and_values_into_the_cache_at_each_rows_column(config, pdl):
    """The q/k/v projection: outputs [0, C) are the query, [C, 2C) keys, [2C, 3C) values; each
    row's keys and values land in its own cache column, and nothing else in the cache changes."""
    torch.manual_seed(0)
    B, H, S, D = 3, 4, 10, 8
    C = H * D
    x, w, b, ln = _inputs(torch.float32, m=B, k=C, n=3 * C)
    cache = torch.randn(2, B, H, S, D)
    before = cache.clone()
    columns = torch.tensor([2, 7, 0])
    q = torch.empty(B, C)
    triton_linear.row_linear(x, w, b, out=q, layer_norm=ln, kv=(cache, columns), config=config, pdl=pdl)
    with torch.no_grad():
        qkv = F.linear(ln(x), w, b)  # (B, 3C)
    torch.testing.assert_close(q, qkv[:, :C], **TOL[torch.float32])
    want = before.clone()
    for row, col in enumerate(columns.tolist()):
        want[:, row, :, col] = qkv[row, C:].view(2, H, D)
    torch.testing.assert_close(cache, want, **TOL[torch.float32])


def test_row_linear_rejects_strided_weights():
    x, w, b, _ = _inputs(torch.float32)
    with pytest.raises(ValueError, match="contiguous"):
        triton_linear.row_linear(x, w.t().contiguous().t(), b, out=torch.empty(2, 72))


@DTYPES
@pytest.mark.parametrize("pdl, split", [(False, 0), (True, 0), (False, 64), (True, 64), (False, 128)], ids=["", "pdl", "split64", "pdl-split64", "split128"])
def test_decode_attention_computes_what_sdpa_computes(dtype, pdl, split):
    """Three rows of a four-row cache, 128 of its 192 columns read: a row whose first 100 keys are
    masked (left padding: a whole 64-column block with no key), one that sees 5 keys, one that
    sees 70. Blocks after a row's last written column are never read: NaN there changes nothing.
    Split over the cache (64 columns a program: two programs a head and row, the first with no
    key for row 0, the second with none for row 1), the last program of each combines, twice
    in a row: the counts it keeps are left zeroed for the next launch."""
    g = torch.Generator().manual_seed(0)
    B, H, S, D = 3, 4, 128, 16
    kv = torch.randn(2, 4, H, 192, D, generator=g).to(dtype)
    q = torch.randn(B, H * D, generator=g).to(dtype)
    allowed = torch.ones(B, S, dtype=torch.bool)
    allowed[0, :100] = False
    allowed[1, 5:] = False
    allowed[2, 70:] = False
    last = torch.tensor([127, 4, 69])
    bias = torch.zeros(B, S, dtype=dtype).masked_fill(~allowed, float("-inf"))
    want = F.scaled_dot_product_attention(
        q.view(B, 1, H, D).transpose(1, 2), kv[0, :B, :, :S], kv[1, :B, :, :S], attn_mask=bias[:, None, None, :]
    )  # (B, H, 1, D)
    kv[:, 1, :, 64:] = float("nan")  # row 1's second block: after its last written column
    counts = torch.zeros(B * H, dtype=torch.int32)
    for _ in range(2):
        got = triton_step.decode_attention(q, kv, bias, span=S, last=last, out=torch.empty_like(q), pdl=pdl, split=split, counts=counts)
        torch.testing.assert_close(got, want.transpose(1, 2).reshape(B, H * D), **TOL[dtype])
        assert not counts.any()
    with pytest.raises(ValueError, match="multiple of 64"):
        triton_step.decode_attention(q, kv, bias[:, :100], span=100, last=last, out=torch.empty_like(q))
    with pytest.raises(ValueError, match="split must be a multiple of 64 columns, got 96"):
        triton_step.decode_attention(q, kv, bias, span=S, last=last, out=torch.empty_like(q), split=96)
    with pytest.raises(ValueError, match="int32 counts for 12"):
        triton_step.decode_attention(q, kv, bias, span=S, last=last, out=torch.empty_like(q), split=64, counts=torch.zeros(4, dtype=torch.int32))


def test_launch_config_spreads_the_outputs_over_the_multiprocessors(monkeypatch):
    """Every (N, K) of BioGPT and BioGPT-Large on an H100 (132 multiprocessors): at least two
    programs per multiprocessor wherever four outputs per program allow it, about TILE_ELEMENTS
    weights per loop iteration, K unrolled only where a program's weights fit its registers."""
    shapes = [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096), (4800, 1600), (1600, 1600), (6400, 1600), (1600, 6400)]
    for n, k in shapes:
        block_n, block_k, warps, unroll = tuning.launch_config(n, k, 132)
        assert -(-n // block_n) >= 2 * 132 or block_n == 4, (n, k)
        assert block_k <= max(64, triton_linear.TILE_ELEMENTS // block_n) and block_k & (block_k - 1) == 0
        assert warps == 4 and unroll == (block_n * k <= triton_linear.UNROLL_ELEMENTS)
    assert tuning.launch_config(3072, 1024, 132) == (8, 512, 4, True)
    assert tuning.launch_config(1024, 4096, 132) == (4, 1024, 4, False)  # 4 x 4096: rolled
    assert tuning.launch_config(1600, 6400, 132) == (4, 1024, 4, False)  # sm_90: 243 registers unrolled
    assert tuning.launch_config(3072, 1024, 132, overrides={(3072, 1024): (16, 128, 8, False)}) == (16, 128, 8, False)


@pytest.fixture
def few_programs(monkeypatch):
    """Model-level tests: the widest row blocks (as for a GPU with one multiprocessor), so the
    interpreter runs a few programs per launch instead of dozens; the narrow blocks' edges are
    the row_linear tests' above."""
    monkeypatch.setattr(triton_linear, "sm_count", lambda device: 1)
    monkeypatch.setattr(fused, "sm_count", lambda device: 1)


@DTYPES
@pytest.mark.parametrize(
    "act, attention, pdl, split",
    [("gelu", "triton", False, 0), ("gelu_new", "triton", False, 0), ("gelu", "sdpa", False, 0), ("gelu", "triton", True, 0), ("gelu", "triton", True, 64)],
    ids=["gelu", "gelu_new", "sdpa", "pdl", "pdl-split64"],
)
def test_fused_static_step_matches_the_plain_static_step(dtype, act, attention, pdl, split, few_programs):
    """Several decode steps of the static decoder (3 rows in a bucket of 4, rows at different
    columns) with the fused layers and with torch's: same logits, same cache, same positions."""
    model = tiny_lm(hidden_act=act).to(dtype)
    plain = StaticDecoder(model, torch.device("cpu"), 4, 128, capture=False)
    fused_dec = StaticDecoder(model, torch.device("cpu"), 4, 128, capture=False, kernels="triton")
    assert (plain.kernels, fused_dec.kernels) == ("torch", "triton")
    fused_dec.fused = fused.fused_step(fused_dec.net, fused_dec.cache, attention=attention, pdl=pdl, split=split)
    assert fused_dec.fused.head is not None and fused_dec.fused.head.pdl == pdl  # the LM head too
    assert all(layer.pdl == pdl for layer in fused_dec.fused.layers)
    for dec in (plain, fused_dec):
        dec.write_pos.copy_(torch.tensor([0, 3, 5, 0]))
        dec.positions.copy_(torch.tensor([0, 3, 5, 0]))
        dec.tokens.copy_(torch.tensor([7, 8, 9, 0]))
    with torch.inference_mode():
        for _ in range(3):
            a, b = plain.run_step().clone(), fused_dec.run_step().clone()
            torch.testing.assert_close(b[:3], a[:3], **TOL[dtype])
            torch.testing.assert_close(fused_dec.cache.kv[:, :, :3], plain.cache.kv[:, :, :3], **TOL[dtype])
            assert torch.equal(fused_dec.write_pos, plain.write_pos) and torch.equal(fused_dec.positions, plain.positions)
            for dec in (plain, fused_dec):
                dec.tokens.copy_(a.argmax(-1))


@pytest.mark.parametrize(
    "options",
    [{}, {"padded": True}, {"do_sample": True, "top_k": 0}, {"num_beams": 2}],
    ids=["greedy", "padded", "sample", "beam2"],
)
def test_generate_with_fused_kernels_gives_the_plain_tokens(options, few_programs):
    """generate(decode_kernels="triton") on the static step (cuda_graph=True runs it eagerly on
    a CPU), float32: the tokens of the plain eager generate, greedy with its in-graph loop,
    padded prompts, sampling (same seed), beam search (its cache reordering)."""
    options = dict(options)
    padded = options.pop("padded", False)
    model = diverse_lm()
    ids = torch.randint(4, 1000, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) if padded else None
    torch.manual_seed(3)
    got = model.generate(ids, attention_mask=mask, max_new_tokens=6, cuda_graph=True, decode_kernels="triton", **options)
    torch.manual_seed(3)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=6, **options)
    assert torch.equal(got, want)
    kernels = {key[-1]: dec.kernels for key, dec in static.decoders_of(model).items()}
    assert kernels == {"triton": "triton"}


def test_decode_kernels_are_validated_and_an_impossible_triton_request_says_why(caplog):
    model = tiny_lm()
    ids = torch.tensor([[2, 5, 6]])
    with pytest.raises(ValueError, match="decode_kernels must be one of auto, torch, triton"):
        model.generate(ids, max_new_tokens=2, decode_kernels="cuda")
    with pytest.raises(ValueError, match="exclude each other"):
        model.generate(ids, max_new_tokens=2, decode_kernels="triton", compile_step=True)
    relu = tiny_lm(hidden_act="relu")
    with pytest.raises(ValueError, match="decode_kernels='triton': hidden_act 'relu' has no fused kernel"):
        relu.generate(ids, max_new_tokens=2, cuda_graph=True, decode_kernels="triton")
    with caplog.at_level("WARNING", logger="biogpt.model.generation"):
        got = model.generate(ids, max_new_tokens=3, decode_kernels="triton")  # no static step on a CPU
    assert torch.equal(got, model.generate(ids, max_new_tokens=3))
    assert "decode_kernels='triton' applies to the captured (CUDA-graph) decode step; ignored here" in caplog.text


def test_unavailable_reasons(monkeypatch):
    model = tiny_lm()
    cpu = torch.device("cpu")
    assert fused.unavailable_reason(model, cpu) is None  # under the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert fused.unavailable_reason(model, cpu) == "the Triton kernels need a CUDA device (got cpu)"
    monkeypatch.setattr(fused, "triton", None)
    assert fused.unavailable_reason(model, cpu) == "Triton is not installed"
    monkeypatch.undo()
    odd = tiny_lm(hidden_size=48, num_attention_heads=4)
    assert fused.unavailable_reason(odd, cpu) == "head_dim 12 is not a power of two (the attention kernel's vector width)"
    model.biogpt.layers[1].fc2.bias = None
    assert "not plain biased linear layers" in fused.unavailable_reason(model, cpu)


def test_auto_is_measured_only_for_a_captured_step_of_few_rows():
    model = tiny_lm()
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    pick = kernel_choice.decode_kernels
    assert pick(model, cpu, 1, GenerationConfig()) == "torch"  # nothing captured to measure
    assert pick(model, cuda, 1, GenerationConfig()) == "auto"
    assert pick(model, cuda, kernel_choice.AUTO_MAX_ROWS * 2, GenerationConfig()) == "torch"
    assert pick(model, cuda, 1, GenerationConfig(compile_step=True)) == "torch"
    assert pick(model, cuda, 1, GenerationConfig(decode_kernels="torch")) == "torch"
    assert pick(model, cpu, 8, GenerationConfig(decode_kernels="triton")) == "triton"


class _FakeGraph:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.mark.parametrize(
    "measured, expected, warnings",
    [
        ({"triton": (1e-3, 0.6), "triton-sdpa": (1e-3, 0.7)}, "triton", []),
        ({"triton": (1e-3, 0.8), "triton-sdpa": (1e-3, 0.7)}, "triton-sdpa", []),
        ({"triton": (1e-3, 1.3), "triton-sdpa": (1e-3, 1.25)}, "torch", []),
        ({"triton": (0.5, 0.6), "triton-sdpa": (1e-3, 0.7)}, "triton-sdpa", ["'triton': logits differ from torch's by 5.00e-01"]),
        ({"triton": RuntimeError("ptxas failed"), "triton-sdpa": (float("nan"), 0.7)}, "torch",
         ["decode kernels 'triton' unavailable (RuntimeError: ptxas failed)", "'triton-sdpa': logits differ from torch's by nan"]),
    ],
    ids=["triton-fastest", "sdpa-attention-fastest", "torch-fastest", "one-disagrees", "fails-and-nan"],
)
def test_auto_keeps_the_fastest_step_whose_logits_agree(monkeypatch, caplog, measured, expected, warnings):
    """kernel_choice.choose_kernels with the GPU parts (capture, replay, CUDA-event timing)
    replaced: the decision and the report."""
    model = tiny_lm().half()
    dec = StaticDecoder(model, torch.device("cpu"), 1, 128, capture=False)
    plain_logits = torch.ones(1, 1000, dtype=torch.float16)
    dec.graph, dec.logits = _FakeGraph("torch"), plain_logits
    net = FastNetwork(model, fuse_qkv=True)
    candidates = {name: fused.fused_step(net, dec.cache, attention=name.removeprefix("triton-") or "triton") for name in measured}

    def capture(body):
        name = next(n for n, step in candidates.items() if step is dec.fused)
        if isinstance(measured[name], Exception):
            raise measured[name]
        dec.logits = torch.zeros(1, 1000, dtype=torch.float16)
        return _FakeGraph(name)

    def replay(graph, logits):
        error = 0.0 if graph.name == "torch" else measured[graph.name][0]
        return torch.ones(1, 1000) * (1 + error)

    monkeypatch.setattr(dec, "_capture_keeping_state", capture)
    monkeypatch.setattr(dec, "_replay_from_same_state", replay)
    monkeypatch.setattr(dec, "_replay_ms", lambda graphs: [1.2 if g.name == "torch" else measured[g.name][1] for g in graphs])
    with caplog.at_level("WARNING", logger="biogpt.model.generation"):
        kernel_choice.choose_kernels(dec, candidates, lambda: None)
    assert dec.kernels == expected == dec.kernel_report["kernels"] == dec.graph.name
    assert dec.fused is candidates.get(expected)
    assert (dec.logits is plain_logits) == (expected == "torch")
    assert dec.kernel_report["torch_ms"] == 1.2
    for name, value in measured.items():
        if isinstance(value, Exception):
            assert dec.kernel_report[f"{name}_failed"] == f"RuntimeError: {value}"
        elif value[0] <= kernel_choice.FUSED_TOLERANCE[torch.float16]:
            assert dec.kernel_report[f"{name}_ms"] == value[1]
        else:  # disagrees: not timed
            assert f"{name}_ms" not in dec.kernel_report and f"{name}_error" in dec.kernel_report
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(messages) == len(warnings) and all(w in m for w, m in zip(warnings, messages)), messages


@pytest.mark.parametrize(
    "fused_ms, pdl_gain, expected", [(0.5, 0.0, "triton"), (0.5, 0.25, "triton+pdl"), (1.5, 0.0, "torch")], ids=["fused-faster", "pdl-faster", "fused-slower"]
)
def test_auto_on_an_emulated_capture_measures_real_steps_and_generates_the_plain_tokens(monkeypatch, few_programs, fused_ms, pdl_gain, expected):
    """decode_kernels="auto" end to end on the CPU (captures emulated, see helpers), only the
    timing given. The logits check compares the real plain and fused steps (the interpreter
    counts as able to launch dependently: its waits do nothing, so all four fused steps are
    candidates); generation then runs the kept step inside the greedy loop, its greedy kernel
    launched as the step's are, and gives the plain eager tokens. A tie keeps the earlier
    candidate: PDL is kept only when it measured faster."""
    model = diverse_lm()
    emulate_decoder_capture(monkeypatch)

    def replay_ms(self, graphs):
        return [1.0 if g.fused is None else fused_ms + (g.fused.attention == "sdpa") - pdl_gain * g.fused.pdl for g in graphs]

    monkeypatch.setattr(StaticDecoder, "_replay_ms", replay_ms)
    with torch.inference_mode():
        dec = StaticDecoder(model, torch.device("cpu"), 1, 128, capture=True, kernels="auto")
    report = dec.kernel_report
    assert report["kernels"] == dec.kernels == expected
    names = ("triton", "triton-sdpa", "triton+pdl", "triton-sdpa+pdl")
    for name in names:  # real steps, computed differently: close, not equal
        assert 0 < report[f"{name}_error"] < kernel_choice.FUSED_TOLERANCE[torch.float32]
    assert [report[f"{name}_ms"] for name in ("torch", *names)] == [1.0, fused_ms, fused_ms + 1, fused_ms - pdl_gain, fused_ms + 1 - pdl_gain]
    assert report["attention_split"] == 0  # nothing tuned here: the attention kernel unsplit
    assert (dec.fused is not None) == (expected != "torch")
    assert dec.fused is None or (dec.fused.pdl, dec.fused.attention) == (expected.endswith("+pdl"), "triton")
    monkeypatch.setattr(search, "static_decoder", lambda *args: dec)
    ids = torch.randint(4, 1000, (1, 6), generator=torch.Generator().manual_seed(2))
    got = model.generate(ids, max_new_tokens=8)  # the static path (the decoder above) for greedy search
    monkeypatch.undo()
    assert dec.greedy_loop.graphs and next(iter(dec.greedy_loop.graphs.values()))[0].fused is dec.fused
    assert torch.equal(got, model.generate(ids, max_new_tokens=8))


def test_a_decoder_builds_the_fused_variant_it_is_named_after(monkeypatch):
    """StaticDecoder(kernels=NAME) for each of auto's candidates (benchmarks/gpu_kernels.py
    measures them one by one); a `split` option replaces the tuned attention split."""
    model = tiny_lm()
    for name, options in kernel_choice.FUSED_VARIANTS.items():
        dec = StaticDecoder(model, torch.device("cpu"), 1, 128, capture=False, kernels=name, fused_options={"split": 64})
        assert dec.kernels == name
        assert (dec.fused.attention, dec.fused.pdl) == (options.get("attention", "triton"), options.get("pdl", False))
        assert dec.fused.split == (64 if dec.fused.attention == "triton" else 0)


def test_pdl_is_offered_only_where_it_can_run(monkeypatch):
    """Programmatic dependent launch: under the interpreter (its waits are no-ops) always; on a
    GPU from compute capability 9.0 with a Triton that has grid dependency control; the launch
    option passed only then (an older Triton rejects even launch_pdl=False)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert triton_common.pdl_unavailable_reason(cpu) is None
    assert triton_common.launch_options(True) == {}  # the interpreter launches plainly
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert triton_common.launch_options(True) == {"launch_pdl": True} and triton_common.launch_options(False) == {}
    assert triton_common.pdl_unavailable_reason(cpu) == "programmatic dependent launch needs a CUDA device (got cpu)"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 0))
    assert triton_common.pdl_unavailable_reason(cuda) == "programmatic dependent launch needs compute capability 9.0 or later (this GPU has 8.0)"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    assert triton_common.pdl_unavailable_reason(cuda) is None
    monkeypatch.setattr(triton_common, "_HAS_GDC", False)
    assert "has no grid dependency control (3.3 or later has)" in triton_common.pdl_unavailable_reason(cuda)
    monkeypatch.setattr(triton_common, "triton", None)
    assert triton_common.pdl_unavailable_reason(cuda) == "Triton is not installed"


@pytest.fixture
def fresh_tuning(monkeypatch, tmp_path):
    """An empty tuning table and cache directory for this test; tiny models tuned too."""
    monkeypatch.setenv("BIOGPT_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "MIN_TUNED_BYTES", 0)
    monkeypatch.setattr(tuning, "_TUNED", {})
    monkeypatch.setattr(tuning, "_TUNED_SPLIT", {})
    monkeypatch.setattr(tuning, "_TUNED_LOADED", False)
    return tmp_path / "fused_decode.json"


def test_candidate_configs_start_from_the_rule_and_stay_within_the_row():
    for n, k in [(3072, 1024), (1024, 4096), (4800, 1600), (96, 32)]:
        configs = tuning.candidate_configs(n, k, 132)
        assert configs[0] == tuning.launch_config(n, k, 132) and len(set(configs)) == len(configs) >= 4
        assert configs[1] == (*configs[0][:3], not configs[0][3])  # the rule's tile with the other loop form
        for bn, bk, warps, unroll in configs:
            assert bk & (bk - 1) == 0 and 64 <= bk <= max(64, 2 * k) and bn >= 2 and warps in (4, 8)


def test_candidate_configs_hold_the_configurations_an_h200_sweep_found_fastest():
    """BENCHMARKS.md, run 3 (`benchmarks/gpu_kernels.py --sweep`, 18 configurations a shape):
    the fastest per shape. All but the 347M LM head's (4 rows a program against the rule's 32)
    must be among what `tune` times on any GPU with 132 multiprocessors."""
    winners = {
        (3072, 1024): (4, 256, 4, False), (1024, 1024): (4, 512, 4, True), (4096, 1024): (8, 256, 4, False),
        (1024, 4096): (2, 2048, 4, True), (4800, 1600): (8, 512, 4, True), (1600, 1600): (4, 1024, 4, False),
        (6400, 1600): (8, 256, 4, True), (1600, 6400): (4, 1024, 4, True), (57717, 1600): (32, 128, 4, True),
    }  # fmt: skip
    for (n, k), best in winners.items():
        assert best in tuning.candidate_configs(n, k, 132), (n, k)


def test_tune_keeps_the_fastest_configuration_per_shape_and_remembers_it_on_disk(fresh_tuning, monkeypatch, caplog):
    """Each candidate runs for real (under the interpreter: its output is checked here), the
    timer's figures decide, the table is saved, a new process (empty table) reads it instead of
    timing again, and row_linear then launches with the tuned configuration; the same for the
    kernels launched dependently (the interpreter counts as able to: a second, shorter round per
    shape, kept under its own key) and for the attention kernel's split over the cache, which
    the fused step then uses."""
    model = tiny_lm().half()
    cfg = model.config
    key = tuning.device_key(model.device, model.dtype)
    launched: list = []
    real_linear, real_attention = tuning.row_linear, tuning.decode_attention

    def spy_linear(*args, config=None, pdl=False, **kw):
        launched.append((config, pdl))
        return real_linear(*args, config=config, pdl=pdl, **kw)

    def spy_attention(*args, split=0, **kw):
        launched.append(f"split {split}")
        return real_attention(*args, split=split, **kw)

    monkeypatch.setattr(tuning, "row_linear", spy_linear)
    monkeypatch.setattr(tuning, "decode_attention", spy_attention)
    calls: list = []

    def timer(fn, launches):  # the last candidate of each shape, and the split of 128, are the fastest
        assert launches == 20  # through 2 weight copies here (on a GPU: enough to leave the L2 cache cold)
        out = fn()
        assert torch.isfinite(out.float()).all()
        calls.append(launched[-1])
        return 1.0 if launched[-1] == "split 128" else 100.0 - len(calls)

    with caplog.at_level("WARNING", logger="biogpt.model.fast"):
        seconds = tuning.tune(model.config, model.device, model.dtype, timer=timer)
    assert seconds > 0
    assert f"timing the fused decode kernels on this GPU ({key}), once per machine; kept in {fresh_tuning}" in caplog.text
    shapes = tuning.projection_shapes(cfg)
    pdl_rounds = {}
    for n, k in shapes:
        best, rule = tuning.candidate_configs(n, k, 132)[-1], tuning.launch_config(n, k, 132)
        assert tuning._TUNED[(key, n, k)] == best
        pdl_rounds[(n, k)] = list(dict.fromkeys([best, (*best[:3], not best[3]), rule, (*rule[:3], not rule[3])]))
        assert tuning._TUNED[(key + "|pdl", n, k)] == pdl_rounds[(n, k)][-1]
    plain_calls = [c for c in calls if isinstance(c, tuple) and not c[1]]
    pdl_calls = [c[0] for c in calls if isinstance(c, tuple) and c[1]]
    assert len(plain_calls) == sum(len(tuning.candidate_configs(n, k, 132)) for n, k in set(shapes))
    assert pdl_calls == [c for shape in dict.fromkeys(shapes) for c in pdl_rounds[shape]]
    assert calls[-len(tuning.ATTENTION_SPLITS) :] == [f"split {s}" for s in tuning.ATTENTION_SPLITS]
    saved = json.loads(fresh_tuning.read_text())
    assert {(e["n"], e["k"]): tuple(e["config"]) for e in saved["configs"] if e["device"] == key} == {
        (n, k): tuning._TUNED[(key, n, k)] for n, k in shapes
    }
    assert saved["attention"] == [{"device": key, "heads": cfg.num_attention_heads, "head_dim": cfg.head_dim, "split": 128}]
    monkeypatch.setattr(tuning, "_TUNED", {})
    monkeypatch.setattr(tuning, "_TUNED_SPLIT", {})
    monkeypatch.setattr(tuning, "_TUNED_LOADED", False)
    assert tuning.tune(model.config, model.device, model.dtype, timer=lambda fn, launches: pytest.fail("timed again")) == 0.0
    n, k = shapes[0]
    assert tuning.launch_config(n, k, 132, key) == tuning.candidate_configs(n, k, 132)[-1]
    assert tuning.launch_config(n, k, 132, key, pdl=True) == pdl_rounds[(n, k)][-1]
    cache = KVCache.for_model(cfg, 2, 128, dtype=model.dtype, device=torch.device("cpu"))
    net = FastNetwork(model, fuse_qkv=True)
    step = fused.fused_step(net, cache)
    assert step.split == 128 and all(layer.split == 128 for layer in step.layers)
    assert step.layers[0].counts.shape == (2 * cfg.num_attention_heads,) and step.layers[0].counts is step.layers[1].counts
    assert fused.fused_step(net, cache, attention="sdpa").split == 0  # torch's attention: nothing to split
    assert tuning.launch_config(n, k, 132, key, overrides={(n, k): (16, 128, 8, True)}) == (16, 128, 8, True)  # an override wins
    assert step.layers[0].configs["qkv"] == tuning.launch_config(3 * cfg.hidden_size, cfg.hidden_size, 132, key)  # the tuned one
    pinned = fused.fused_step(net, cache, configs={(n, k): (16, 128, 8, True)}, split=64)
    assert pinned.split == 64 and pinned.layers[0].configs["qkv"] == (16, 128, 8, True)


def test_small_models_are_not_tuned(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOGPT_CACHE", str(tmp_path))
    small = tiny_lm().half()
    assert tuning.tune(small.config, small.device, small.dtype, timer=lambda fn, launches: pytest.fail("timed")) == 0.0
    assert not (tmp_path / "fused_decode.json").exists()


def test_a_tuning_cache_from_before_the_split_attention_times_only_the_attention(fresh_tuning, monkeypatch):
    """A file of launch configurations without attention entries, on a GPU that cannot launch
    dependently: only the attention's splits are timed."""
    monkeypatch.setattr(tuning, "pdl_unavailable_reason", lambda device: "compute capability 8.0")
    model = tiny_lm().half()
    key = tuning.device_key(model.device, model.dtype)
    configs = [{"device": key, "n": n, "k": k, "config": [4, 64, 4, False]} for n, k in tuning.projection_shapes(model.config)]
    fresh_tuning.write_text(json.dumps({"configs": configs}))
    timed: list = []
    assert tuning.tune(model.config, model.device, model.dtype, timer=lambda fn, launches: (timed.append(fn()), 1.0)[1]) > 0
    assert len(timed) == len(tuning.ATTENTION_SPLITS)  # the projections' configurations were read, not timed
    assert tuning.attention_split(model.config.num_attention_heads, model.config.head_dim, model.device, model.dtype) == 0  # a tie: no split


def test_a_damaged_tuning_cache_is_measured_again_with_a_warning(fresh_tuning, caplog):
    fresh_tuning.write_text("{not json")
    model = tiny_lm().half()
    with caplog.at_level("WARNING", logger="biogpt.model.fast"):
        assert tuning.tune(model.config, model.device, model.dtype, timer=lambda fn, launches: (fn(), 1.0)[1]) > 0
    assert "launch configurations will be timed again" in caplog.text
    assert json.loads(fresh_tuning.read_text())["configs"]  # rewritten


@pytest.mark.parametrize("eos, ban", [([2], True), ([2], False), ([2, 7], True), ([], False)], ids=["ban", "no-ban", "two-eos", "no-eos"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_greedy_kernel_picks_what_the_torch_body_picks(eos, ban, dtype):
    """greedy_graph.GreedyLoop.body with the fused step (one greedy kernel) and without (torch's
    kernels), from the same state: ties across and within the kernel's vocabulary blocks (the
    first maximum wins), an end-of-sequence id as the maximum (banned or taken), a finished row
    (pad), per-row last columns. The decode step itself is stubbed: only the token choice differs.
    The third decoder's step is launched dependently (PDL), so is its greedy kernel."""
    model = tiny_lm(vocab_size=9000).to(dtype)  # 9000 > 2 blocks of GREEDY_BLOCK_V
    decoders = [StaticDecoder(model, torch.device("cpu"), 4, 128, capture=False, kernels=k) for k in ("torch", "triton", "triton")]
    decoders[2].fused = fused.fused_step(decoders[2].net, decoders[2].cache, pdl=True)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 9000, generator=g).to(dtype)
    scores[0, [5000, 8500]] = 9.0  # a tie across blocks: 5000
    scores[1, [100, 101]] = 9.0  # a tie within a block: 100
    scores[2, 2] = 9.0  # end of sequence is the best token
    if len(eos) > 1:
        scores[3, 7] = 9.0
    step_logits = torch.randn(4, 9000, generator=g).to(dtype)
    eos_t, pad = torch.tensor(eos, dtype=torch.long), torch.tensor(1)
    results = []
    for dec in decoders:
        loop = dec.greedy_loop
        loop._make_buffers()
        dec.step_fn = lambda: step_logits
        loop.next_logits.copy_(scores)
        loop.unfinished.copy_(torch.tensor([True, False, True, True]))
        loop.last_col.fill_(20)
        loop.cur.fill_(10)
        loop.min_col.fill_(12)
        loop.out.zero_()
        with torch.inference_mode():
            loop.body(eos_t, pad, ban)
        results.append((dec.tokens.clone(), loop.out.clone(), loop.last_col.clone(), loop.unfinished.clone(), loop.cur.clone(), loop.next_logits.clone()))
    for a, b, c in zip(*results):
        assert torch.equal(a, b) and torch.equal(a, c), (a, b, c)
    tokens, _, last_col, unfinished, cur, _ = results[1]
    assert tokens[0] == 5000 and tokens[1] == 1  # row 1 finished: pad
    if ban and eos:  # before min_col: row 2's best token is banned
        assert tokens[2] != 2 and unfinished[2] and last_col[2] == 20
    else:
        assert tokens[2] == 2 and (unfinished[2] == (not eos)) and last_col[2] == (10 if eos else 20)
    assert cur.item() == 11


def test_replay_timing_runs_each_step_in_turn_from_the_middle_of_the_cache(monkeypatch):
    """StaticDecoder._replay_ms with CUDA events emulated by the host clock: rounds of one replay
    per graph, every replay from write position capacity // 2, the state put back afterwards."""
    import time

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            self.t = 0.0

        def record(self) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end: "Event") -> float:
            return (end.t - self.t) * 1000

    class Graph:
        def __init__(self, name: str) -> None:
            self.name = name

        def replay(self) -> None:
            order.append((self.name, int(dec.write_pos[0]), int(dec.positions[0])))
            dec.write_pos += 1  # a step advances the state
            time.sleep(0.002 if self.name == "slow" else 0.0005)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    dec = StaticDecoder(tiny_lm(), torch.device("cpu"), 1, 128, capture=False)
    dec.write_pos.fill_(7)
    order: list = []
    fast, slow = dec._replay_ms([Graph("fast"), Graph("slow")])
    assert 0 < fast < slow
    assert order[:4] == [("fast", 64, 64), ("slow", 64, 64), ("fast", 64, 64), ("slow", 64, 64)]
    assert len(order) == 2 * (kernel_choice.AUTO_REPLAYS + 2)
    assert dec.write_pos.item() == 7 and dec.positions.item() == 0


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--candidates", "--pdl", "--dtypes", "fp16"], ["--pdl", "--dtypes", "bf16,fp32"]], ids=["fp16-candidates", "bf16-fp32"])
def test_every_kernel_compiles_for_an_h100(args):
    """Triton's GPU compiler (down to a cubin, with its bundled ptxas) accepts every kernel at
    BioGPT's and BioGPT-Large's shapes for sm_90: what the interpreter tests cannot show. In a
    subprocess: this module runs the kernels under the interpreter, which does not compile."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    pytest.importorskip("triton.backends.nvidia", reason="Triton without its CUDA backend")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.fused_compile", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "0 failed" in summary and "kernels compiled for sm_90" in summary, summary
