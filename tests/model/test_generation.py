"""Token-identical generation with transformers' generate on the same weights (fp32)."""

from __future__ import annotations

import logging

import pytest
import torch

from biogpt.model import BioGptConfig, BioGptForCausalLM
from biogpt.model.generation import TextStreamer

from tests.helpers import CASES, diverse_lm, eos_heavy_lm, make_batch, tiny_lm

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()





@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for name, model in (("random", tiny_lm(vocab_size=1000)), ("eos-heavy", eos_heavy_lm()), ("diverse", diverse_lm())):
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, transformers.BioGptForCausalLM.from_pretrained(str(path)).eval())
    return out


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static-step"])
@pytest.mark.parametrize("kind", ["random", "eos-heavy", "diverse"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "greedy")
def test_same_tokens_as_transformers(models, kind, padded, options, static):
    """static-step: the CUDA-graph decode step's static-shape code (full-capacity masked
    attention, device-held write position, bucketed rows), run eagerly on the CPU."""
    ours, ref = models[kind]
    ids, mask = make_batch(ours.config.vocab_size, padded=padded)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=24, cuda_graph=static, **options)
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=24, pad_token_id=1, **options)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.equal(got, want)


def test_eos_heavy_model_finishes_rows_at_different_steps(models):
    ours, _ = models["eos-heavy"]
    ids, mask = make_batch(60, B=6, seed=0, padded=False)
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=30)
    new = out[:, ids.shape[1] :]
    finished = [(row == 2).any().item() for row in new]
    assert any(finished) and not all(finished)  # mixed: the finishing logic is exercised
    for row in new:  # after EOS only padding
        hits = (row == 2).nonzero().flatten()
        if len(hits):
            assert (row[hits[0] + 1 :] == 1).all()


def test_seeded_sampling_is_reproducible(models):
    ours, ref = models["random"]
    ids, mask = make_batch(1000)
    options = dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8, max_new_tokens=16, num_return_sequences=2)
    torch.manual_seed(123)
    a = ours.generate(ids, attention_mask=mask, **options)
    torch.manual_seed(123)
    b = ours.generate(ids, attention_mask=mask, **options)
    torch.manual_seed(124)
    c = ours.generate(ids, attention_mask=mask, **options)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[0] == 8
    torch.manual_seed(123)  # and the same draws as transformers for the same seed
    assert torch.equal(a, ref.generate(ids, attention_mask=mask, pad_token_id=1, **options))


def test_prefix_allowed_tokens_fn_constrains_output(models):
    ours, ref = models["random"]
    ids, mask = make_batch(1000)
    allowed = [10, 11, 12, 2]

    def fn(batch_id, sent):
        return allowed

    got = ours.generate(ids, attention_mask=mask, max_new_tokens=10, prefix_allowed_tokens_fn=fn)
    assert set(got[:, ids.shape[1] :].flatten().tolist()) <= set(allowed) | {1}
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=1, prefix_allowed_tokens_fn=fn)
    assert torch.equal(got, want)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=3, prefix_allowed_tokens_fn=fn)
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=3, pad_token_id=1, prefix_allowed_tokens_fn=fn)
    assert torch.equal(got, want)


def test_streamer_receives_the_generated_text(models, tokenizer):
    ours, _ = models["random"]
    model = tiny_lm(vocab_size=42384)
    enc = tokenizer("COVID-19 is", return_tensors="pt")
    pieces: list[str] = []
    out = model.generate(enc.input_ids, max_new_tokens=12, streamer=TextStreamer(tokenizer, pieces.append))
    new_text = tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True)
    assert "".join(pieces).strip() == new_text.strip()
    assert len(pieces) > 1


def test_errors_are_clear():
    model = tiny_lm()
    ids = torch.randint(4, 1000, (1, 120))
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings"):
        model.generate(ids, max_new_tokens=20)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(ids[:, :5], num_beams=2, num_return_sequences=3)
    with pytest.raises(TypeError, match="unexpected keyword arguments: num_beam"):
        model.generate(ids[:, :5], num_beam=2)
    with pytest.raises(ValueError, match="greedy decoding returns one sequence"):
        model.generate(ids[:, :5], num_return_sequences=2)


def test_transformers_options_that_change_nothing_are_accepted(caplog):
    """A script written for transformers passes its defaults (use_cache=True,
    return_dict_in_generate=False, inputs=...) and gets the same tokens."""
    model = tiny_lm()
    ids = torch.randint(4, 1000, (2, 6), generator=torch.Generator().manual_seed(1))
    want = model.generate(ids, max_new_tokens=8)
    same = model.generate(ids, max_new_tokens=8, use_cache=True, return_dict_in_generate=False, output_scores=False)
    assert torch.equal(same, want)
    assert torch.equal(model.generate(inputs=ids, max_new_tokens=8), want)
    with caplog.at_level(logging.INFO, logger="biogpt.model.generation"):
        assert torch.equal(model.generate(ids, max_new_tokens=8, use_cache=False), want)
    assert "use_cache=False" in caplog.text
    with pytest.raises(TypeError, match="input_ids or inputs"):
        model.generate(ids, inputs=ids)
    with pytest.raises(TypeError, match="input_ids \\(or inputs\\) or inputs_embeds"):
        model.generate(max_new_tokens=8)


def test_a_transformers_generation_config_is_read_by_its_field_names():
    model = tiny_lm()
    ids = torch.randint(4, 1000, (2, 6), generator=torch.Generator().manual_seed(2))
    theirs = transformers.GenerationConfig(max_new_tokens=7, num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2)
    want = model.generate(ids, max_new_tokens=7, num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2)
    assert torch.equal(model.generate(ids, generation_config=theirs), want)
    shorter = model.generate(ids, num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2, max_new_tokens=3)
    assert torch.equal(model.generate(ids, generation_config=theirs, max_new_tokens=3), shorter)  # keywords still win
    assert not torch.equal(shorter, want)
    with pytest.raises(TypeError, match="generation_config must be a GenerationConfig, got dict"):
        model.generate(ids, generation_config={"max_new_tokens": 3})


def test_default_length_is_transformers_20_new_tokens():
    model = tiny_lm()
    ids = torch.randint(4, 1000, (1, 5))
    assert model.generate(ids).shape[1] <= 25
    assert model.generate(ids, max_length=12).shape[1] <= 12


@pytest.mark.slow
def test_full_size_greedy_and_beam_equal_transformers(tmp_path):
    torch.manual_seed(0)
    ours = BioGptForCausalLM(BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    ours.save_pretrained(tmp_path)
    ref = transformers.BioGptForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids, mask = make_batch(42384, B=3, P=16)
    for options in (dict(), dict(num_beams=5)):
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=12, **options)
        want = ref.generate(ids, attention_mask=mask, max_new_tokens=12, pad_token_id=1, **options)
        assert torch.equal(got, want), options


def test_static_steps_are_kept_per_bucket_and_bounded():
    from biogpt.model.generation import static

    model = tiny_lm()
    ids = torch.randint(4, 1000, (3, 6))
    first = model.generate(ids, max_new_tokens=10, cuda_graph=True)
    assert len(static.decoders_of(model)) == 1
    assert torch.equal(model.generate(ids, max_new_tokens=10, cuda_graph=True), first)  # reused, same result
    assert len(static.decoders_of(model)) == 1
    for rows in (1, 2, 5, 9, 17):
        model.generate(torch.randint(4, 1000, (rows, 6)), max_new_tokens=4, cuda_graph=True)
    assert len(static.decoders_of(model)) == static.MAX_GRAPHS
    assert static.bucket(33, static.GRAPH_ROW_BUCKETS, 64) == 40
    assert static.bucket(300, static.GRAPH_ROW_BUCKETS, 64) == 320
    assert "_static_decoders" not in model.__dict__  # kept beside the model, not on it


def test_padded_prompt_pass_gives_the_eager_logits_and_cache():
    """StaticDecoder.prefill (the captured prompt pass; eager here): prompts right-padded to the
    length bucket give the eager pass's last-token logits and the same cache over the prompt's
    columns; where it does not pay or fit it declines (None)."""
    from biogpt.model.fast.network import FastNetwork
    from biogpt.model.generation import StaticDecoder, prefill, static
    from biogpt.model.kv_cache import KVCache

    model = diverse_lm()
    dec = StaticDecoder(model, torch.device("cpu"), 4, 128, capture=False)
    with torch.inference_mode():
        for rows, P in ((3, 7), (1, 16), (2, 9)):
            ids = torch.randint(4, 1000, (rows, P), generator=torch.Generator().manual_seed(P))
            got = dec.prefill(ids)
            cache = KVCache.for_model(model.config, rows, P, dtype=model.dtype, device="cpu")
            want = prefill(FastNetwork(model), ids, None, cache)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(dec.cache.kv[:, :, :rows, :, :P], cache.kv, rtol=1e-5, atol=1e-5)
        assert sorted(dec.prefill_graphs) == [16]  # one padded length served all three
        assert dec.prefill(torch.randint(4, 1000, (4, 20))) is None  # 4 rows x 32 > PREFILL_GRAPH_TOKENS
        assert static.PREFILL_GRAPH_TOKENS < 4 * 32
        small = StaticDecoder(model, torch.device("cpu"), 1, 128, capture=False)
        assert small.prefill(torch.randint(4, 1000, (1, 40))) is not None  # 1 row x 48
        assert small.prefill(torch.randint(4, 1000, (1, 70))) is None  # 1 row x 80 > 64


@pytest.mark.parametrize("options", [{}, {"do_sample": True, "top_k": 0}, {"no_repeat_ngram_size": 2}], ids=["greedy", "sample", "ngram"])
def test_generate_with_the_captured_prompt_pass_gives_the_eager_tokens(monkeypatch, options):
    """generate on a decoder whose captures are emulated (helpers.emulate_decoder_capture): the
    prompt pass goes through StaticDecoder.prefill and the tokens are eager generate's."""
    from biogpt.model.generation import StaticDecoder, search

    from tests.helpers import emulate_decoder_capture

    model = diverse_lm()
    emulate_decoder_capture(monkeypatch)
    with torch.inference_mode():
        dec = StaticDecoder(model, torch.device("cpu"), 1, 128, capture=True, kernels="torch")
    monkeypatch.setattr(search, "static_decoder", lambda *args: dec)
    ids = torch.randint(4, 1000, (1, 5), generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    got = model.generate(ids, max_new_tokens=10, **options)
    monkeypatch.undo()
    assert list(dec.prefill_graphs) == [16]
    torch.manual_seed(0)
    assert torch.equal(got, model.generate(ids, max_new_tokens=10, **options))


def test_capture_warm_up_leaves_the_decode_state_alone(monkeypatch):
    """On a GPU a capture first runs the step twice (warm-up), which advances the live decode
    state; emulate that on the CPU and check the tokens do not move."""
    from biogpt.model.generation import static

    def capture_like_cuda(self, body):
        for _ in range(2):
            body()
        return None  # replays then run the same body eagerly

    model = diverse_lm()
    ids, mask = make_batch(1000, padded=True)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=20, cuda_graph=False)
    monkeypatch.setattr(static.StaticDecoder, "_capture", capture_like_cuda)
    for options in (dict(), dict(min_new_tokens=5)):
        static.decoders_of(model).clear()
        got = model.generate(ids, attention_mask=mask, max_new_tokens=20, cuda_graph=True, **options)
        ref = model.generate(ids, attention_mask=mask, max_new_tokens=20, cuda_graph=False, **options)
        assert torch.equal(got, ref), options
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=20, cuda_graph=True), want)


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static-step"])
def test_fused_qkv_network_gives_the_same_tokens(models, static):
    """The GPU decode network (q, k and v as one projection over a copy of their weights,
    keys and values written with one copy), forced on the CPU: same tokens as transformers,
    logits within fp32 rounding of the reference's, and the model's parameters untouched."""
    from biogpt.model.fast.network import FastNetwork
    from biogpt.model.generation import steps
    from biogpt.model.kv_cache import KVCache

    ours, ref = models["diverse"]
    ids, mask = make_batch(ours.config.vocab_size, padded=True)
    net = FastNetwork(ours, fuse_qkv=True)
    assert net.fused_qkv
    with torch.inference_mode():
        cache = KVCache.for_model(ours.config, ids.shape[0], ids.shape[1], dtype=ours.dtype, device="cpu")
        got = steps.prefill(net, ids, mask, cache)
        want = ours(ids, attention_mask=mask).logits[:, -1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for options in (dict(), dict(num_beams=4), dict(min_new_tokens=5)):
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=20, cuda_graph=static, **options)
        want = ref.generate(ids, attention_mask=mask, max_new_tokens=20, pad_token_id=1, **options)
        assert torch.equal(got, want), options


@pytest.mark.slow
@pytest.mark.parametrize("mode", [True, "layers"], ids=["step", "layers"])
def test_compiled_static_step_matches_the_eager_step(mode, monkeypatch):
    """StaticDecoder(compile_step=True): torch.compile (inductor) of the static step, per-row
    write positions and cache written in place; same logits and cache as the eager step. With
    q/k/v fused, as on a GPU (the network's fused copy, forced here through network_for).
    compile_step="layers": one compiled layer serves every layer (each reads its own cache
    view), so the model compiles once, not once per layer."""
    from torch._dynamo.utils import counters

    from biogpt.model.fast import network
    from biogpt.model.generation import StaticDecoder

    torch._dynamo.reset()
    counters.clear()
    model = tiny_lm(1, vocab_size=1000, initializer_range=0.2, tie_word_embeddings=False, num_hidden_layers=4)
    real = network.network_for
    monkeypatch.setattr("biogpt.model.generation.static.network_for", lambda m, fuse_qkv: real(m, fuse_qkv=True))
    dev = torch.device("cpu")
    compiled = StaticDecoder(model, dev, 2, 128, capture=False, compile_step=mode)
    eager = StaticDecoder(model, dev, 2, 128, capture=False)
    with torch.inference_mode():
        for d in (compiled, eager):
            d.write_pos.copy_(torch.tensor([3, 7]))
            d.positions.copy_(torch.tensor([3, 5]))
            d.tokens.copy_(torch.tensor([5, 9]))
        for _ in range(4):
            a, b = compiled.run_step().clone(), eager.run_step().clone()
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(compiled.cache.kv, eager.cache.kv, rtol=1e-5, atol=1e-5)
            assert torch.equal(compiled.write_pos, eager.write_pos)
            for d in (compiled, eager):
                d.tokens.copy_(a.argmax(-1))
    assert compiled.write_pos.tolist() == [7, 11]
    assert counters["stats"]["unique_graphs"] == 1 and not counters["recompiles"]  # one compilation in all


def test_compile_step_is_validated_and_said_to_be_ignored_without_a_static_decoder(caplog):
    model = tiny_lm()
    ids = torch.tensor([[2, 5, 6]])
    with pytest.raises(ValueError, match="compile_step must be True, False or 'layers'"):
        model.generate(ids, max_new_tokens=2, compile_step="fast")
    with caplog.at_level("WARNING", logger="biogpt.model.generation"):
        got = model.generate(ids, max_new_tokens=4, compile_step=True)  # a CPU: eager steps
    assert torch.equal(got, model.generate(ids, max_new_tokens=4))
    assert "compile_step applies to the captured (CUDA-graph) decode step; ignored here (cuda_graph=None, device cpu)" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("mode", [True, "layers"], ids=["step", "layers"])
def test_generate_with_a_compiled_step_gives_the_eager_tokens(mode):
    """generate(compile_step=...): the static decoder's step goes through torch.compile (the
    greedy loop included, as inside the GPU graph; here run eagerly with cuda_graph=True), fp32,
    same tokens as plain eager generate; a compiled and a plain decoder are separate buckets."""
    torch._dynamo.reset()
    model = tiny_lm(1, vocab_size=1000, initializer_range=0.2, num_hidden_layers=2)
    ids = torch.randint(4, 1000, (2, 7), generator=torch.Generator().manual_seed(3))
    want = model.generate(ids, max_new_tokens=12, cuda_graph=False)
    got = model.generate(ids, max_new_tokens=12, cuda_graph=True, compile_step=mode)
    plain = model.generate(ids, max_new_tokens=12, cuda_graph=True)
    assert torch.equal(got, want) and torch.equal(plain, want)
    from biogpt.model.generation import static

    decoders = list(static.decoders_of(model).values())
    assert len(decoders) == 2 and sum(bool(d.compiled_layers) or d.step_fn != d._step for d in decoders) == 1
