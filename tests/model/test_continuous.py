"""Continuous batching (model/continuous.py): every prompt gets the tokens `generate` gives it
alone, however the rows are shared and refilled."""

from __future__ import annotations

import pytest
import torch

from biogpt.model.continuous import build_decoder, generate_continuous, prefill_into

from tests.helpers import EOS, LENGTHS, alone, diverse_lm, finished, prompts_of, tiny_lm


@pytest.fixture(scope="module")
def model():
    return diverse_lm()


@pytest.mark.parametrize("rows", [1, 3, 4, 16])
@pytest.mark.parametrize("every", [1, 4])
def test_each_prompt_gets_its_own_greedy_tokens(model, rows, every):
    prompts = prompts_of(model.config.vocab_size, LENGTHS)
    got = finished(generate_continuous(model, prompts, rows=rows, max_new_tokens=20, refill_every=every, eos_token_id=EOS))
    assert sorted(got) == list(range(len(prompts)))  # every prompt exactly once
    lengths = set()
    for i, p in enumerate(prompts):
        assert got[i] == alone(model, p, 20), i
        lengths.add(len(got[i]))
    assert len(lengths) > 3  # outputs of many lengths: rows really were refilled at different steps


def test_min_new_tokens_and_per_prompt_limits(model):
    prompts = prompts_of(model.config.vocab_size, LENGTHS, seed=1)
    limits = [3, 20, 1, 7, 20, 2, 11, 20, 5, 9, 20]
    got = finished(generate_continuous(model, prompts, rows=3, max_new_tokens=limits, min_new_tokens=4, eos_token_id=EOS))
    for i, p in enumerate(prompts):
        assert got[i] == alone(model, p, limits[i], min_new_tokens=min(4, limits[i])), i
        assert len(got[i]) <= limits[i]


def test_prefill_budget_splits_refills_without_changing_tokens(model):
    prompts = prompts_of(model.config.vocab_size, LENGTHS, seed=2)
    want = finished(generate_continuous(model, prompts, rows=4, max_new_tokens=12, eos_token_id=EOS))
    got = finished(generate_continuous(model, prompts, rows=4, max_new_tokens=12, max_prefill_tokens=16, eos_token_id=EOS))
    assert got == want


def test_outputs_that_never_end_stop_at_the_limit_and_at_the_last_position():
    model = tiny_lm(vocab_size=1000, max_position_embeddings=40)
    prompts = prompts_of(1000, [30, 5, 36, 12])
    got = finished(generate_continuous(model, prompts, rows=2, max_new_tokens=8, eos_token_id=[]))
    assert [len(got[i]) for i in range(4)] == [8, 8, 4, 8]  # prompt 2 runs out of positions
    for i, p in enumerate(prompts):
        want = model.generate(torch.tensor([p]), max_new_tokens=len(got[i]), eos_token_id=[], cuda_graph=False)
        assert got[i] == want[0, len(p) :].tolist()


def test_same_tokens_on_the_static_step_with_the_gpu_network(model, monkeypatch):
    """The static step as a GPU builds it (q/k/v as one projection over the network's copy),
    forced on the CPU."""
    from biogpt.model.fast.network import network_for

    monkeypatch.setattr("biogpt.model.generation.static.network_for", lambda m, fuse_qkv: network_for(m, fuse_qkv=True))
    prompts = prompts_of(model.config.vocab_size, LENGTHS, seed=3)
    got = finished(generate_continuous(model, prompts, rows=3, max_new_tokens=15, refill_every=8, eos_token_id=EOS))
    monkeypatch.undo()
    for i, p in enumerate(prompts):
        assert got[i] == alone(model, p, 15), i


def test_sharing_the_static_step_with_generate(model, monkeypatch):
    """On a GPU the engine replays the bucket's step that `generate` captured (and its greedy
    graph lives on the same decoder). Emulated on the CPU (cuda_graph=True: the shared decoder,
    capture warm-up runs included): alternating the two gives each its own right answer."""
    from biogpt.model.generation import static

    def capture_like_cuda(self, body):
        for _ in range(2):  # the warm-up runs advance the decoder's state, as on a GPU
            body()
        return None

    monkeypatch.setattr(static.StaticDecoder, "_capture", capture_like_cuda)
    static.decoders_of(model).clear()
    prompts = prompts_of(model.config.vocab_size, LENGTHS, seed=5)
    batch = torch.tensor([p[:3] for p in prompts[:8]])
    want_batch = model.generate(batch, max_new_tokens=12, cuda_graph=False, eos_token_id=EOS)
    for _ in range(2):
        assert torch.equal(model.generate(batch, max_new_tokens=12, cuda_graph=True, eos_token_id=EOS), want_batch)
        got = finished(generate_continuous(model, prompts, rows=8, max_new_tokens=12, eos_token_id=EOS, cuda_graph=True))
        for i, p in enumerate(prompts):
            assert got[i] == alone(model, p, 12), i
    assert len(static.decoders_of(model)) >= 1
    static.decoders_of(model).clear()


@pytest.mark.parametrize("emulate_capture", [False, True])
def test_attention_reads_only_the_columns_in_use(model, monkeypatch, emulate_capture):
    """Steps attend over the first columns of the cache that any row uses, rounded up (one
    graph per rounded span on a GPU, captured mid-run with warm-up runs that must not move the
    live state). Spans rounded to 8 columns here so that many differ; same tokens."""
    from biogpt.model.generation import static

    if emulate_capture:

        class Replay:  # a "graph" whose replay runs the captured body eagerly
            def __init__(self, body):
                self.replay = body

        def capture(self, body):
            for _ in range(2):  # warm-up runs, as a CUDA capture does: they move the live state
                body()
            return Replay(body)

        monkeypatch.setattr(static.StaticDecoder, "_capture", capture)
    monkeypatch.setattr(static, "GRAPH_LENGTH_STEP", 8)
    spans = []
    real = static.StaticDecoder._step

    def recording(self, span=None):
        spans.append(span)
        return real(self, span)

    monkeypatch.setattr(static.StaticDecoder, "_step", recording)
    prompts = prompts_of(model.config.vocab_size, LENGTHS, seed=6)
    got = finished(generate_continuous(model, prompts, rows=3, max_new_tokens=20, eos_token_id=EOS, cuda_graph=False))
    monkeypatch.undo()
    for i, p in enumerate(prompts):
        assert got[i] == alone(model, p, 20), i
    used = {s for s in spans if s is not None}
    assert len(used) >= 3 and max(used) <= 40  # several spans, all far below the 128-column cache


def test_the_callers_code_does_not_run_in_inference_mode(model):
    """The engine is a generator: its inference mode must not leak into the loop around it."""
    prompts = prompts_of(model.config.vocab_size, LENGTHS[:5])
    seen = 0
    for _ in generate_continuous(model, prompts, rows=2, max_new_tokens=6, eos_token_id=EOS):
        assert not torch.is_inference_mode_enabled()
        x = torch.ones(2, requires_grad=True)
        (x * 2).sum().backward()  # autograd works between completions
        seen += 1
    assert seen == 5


def test_errors_name_the_problem(model):
    with pytest.raises(ValueError, match="rows"):
        list(generate_continuous(model, [[2, 5]], rows=0))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        list(generate_continuous(model, [[2, 5], []]))
    with pytest.raises(ValueError, match="2 max_new_tokens for 3 prompts"):
        list(generate_continuous(model, [[2, 5]] * 3, max_new_tokens=[4, 4]))
    with pytest.raises(ValueError, match="positions"):
        list(generate_continuous(model, [[2] * model.config.max_position_embeddings]))
    assert list(generate_continuous(model, [])) == []


# ------------------------------------------------------------------ the commands' use of it
def test_task_generation_gives_the_static_batches_outputs(tokenizer):
    """extract-relations / eval -m: continuous batching of a window equals generate_outputs."""
    from biogpt.tasks import get_task
    from biogpt.tasks.runner import continuous_applies, generate_continuously, generate_outputs

    model = tiny_lm(vocab_size=len(tokenizer), seed=4)
    task = get_task("bc5cdr")
    texts = ["Famotidine-associated delirium.", "Lithium caused tremor in two patients treated for mania.",
             "No adverse events.", "Cocaine and heart attacks: a series of six cases with chest pain and arrhythmia."]
    inputs = [[tokenizer.eos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    decoding = {"max_new_tokens": 10}
    assert continuous_applies(task, decoding, constrained=False)
    assert not continuous_applies(task, {"num_beams": 5}, constrained=False)
    assert not continuous_applies(task, decoding, constrained=True)
    got = dict(generate_continuously(model, tokenizer, inputs, task=task, decoding=decoding, rows=3))
    for i, x in enumerate(inputs):
        want = generate_outputs(model, tokenizer, [x], task=task, decoding=decoding)[0]
        assert got[i] == want, i


def test_generate_command_records_equal_the_static_path(tokenizer, monkeypatch):
    from biogpt.commands import generate as command
    from biogpt.io import Record
    from biogpt.model.generation import GenerationConfig

    model = tiny_lm(vocab_size=len(tokenizer), seed=5)
    items = [Record(id=str(i), text=t) for i, t in enumerate(["COVID-19 is", "Aspirin", "The patient was given a dose of", "x"])]
    options = GenerationConfig(max_new_tokens=9, min_new_tokens=2)
    assert command.continuous_applies(options)
    assert not command.continuous_applies(GenerationConfig(max_new_tokens=9, num_beams=3))
    assert not command.continuous_applies(GenerationConfig(max_new_tokens=9, do_sample=True))
    drop = lambda records: [[{k: v for k, v in r.items() if k != "tokens_per_second"} for r in rs] for rs in records]  # noqa: E731
    got = drop(command.generate_records(items, model=model, tokenizer=tokenizer, options=options, batch_size=2))
    monkeypatch.setattr(command, "continuous_applies", lambda options: False)
    want = drop(command.generate_records(items, model=model, tokenizer=tokenizer, options=options, batch_size=2))
    assert got == want
    assert [rs[0]["id"] for rs in got] == ["0", "1", "2", "3"]


def test_benchmark_job_helpers_count_the_same_useful_tokens():
    """benchmarks/continuous.py (also the GPU suite's `job` part): static batches and continuous
    batching of the BC5CDR-length job produce every target token, no more."""
    from benchmarks.continuous import make_job, run_continuous, run_static

    model = tiny_lm(vocab_size=1000, max_position_embeddings=1024)
    prompts, targets = make_job(12, 1000)
    assert [len(p) for p in prompts] == sorted(len(p) for p in prompts) and min(targets) > 0
    prompts = [p[:24] for p in prompts]  # short prompts: a fast test
    seen = []

    def static(ids, mask, new):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, eos_token_id=[])
        seen.append(out.shape[1] - ids.shape[1])
        return out

    assert run_static(static, prompts, targets, 4, "cpu") == sum(targets)
    assert seen == [max(targets[i : i + 4]) for i in range(0, 12, 4)]
    assert run_continuous(model, prompts, targets, 4) == sum(targets)


def test_a_step_of_the_first_rows_equals_those_rows_of_a_full_step(model):
    """StaticDecoder.run_step(rows=n), the serving engine's step at low load: the first n rows'
    logits equal those of a step of every row (float rounding: the kernels block by batch size),
    their write positions and positions advance, and the other rows' buffers and cache are left
    as they were. Only a row bucket may be asked for."""
    with torch.inference_mode():
        dec = build_decoder(model, torch.device("cpu"), 8, 128, False)
        assert (dec.rows, dec.rows_for(0), dec.rows_for(1), dec.rows_for(3), dec.rows_for(8)) == (8, 1, 1, 4, 8)
        scores = torch.zeros(dec.rows, model.config.vocab_size)
        prompts = prompts_of(model.config.vocab_size, LENGTHS[:8])
        prefill_into(model, dec, list(range(8)), prompts, 1, scores)
        dec.tokens.copy_(scores.argmax(-1))
        state = [t.clone() for t in (dec.write_pos, dec.positions, dec.cache.kv)]
        full = dec.run_step(32).clone()
        for n in (1, 2, 4):
            for buffer, saved in zip((dec.write_pos, dec.positions, dec.cache.kv), state):
                buffer.copy_(saved)
            part = dec.run_step(32, rows=n)
            assert part.shape == (n, model.config.vocab_size)
            torch.testing.assert_close(part, full[:n], rtol=1e-5, atol=1e-5)
            assert torch.equal(dec.write_pos[:n], state[0][:n] + 1) and torch.equal(dec.positions[:n], state[1][:n] + 1)
            assert torch.equal(dec.write_pos[n:], state[0][n:]) and torch.equal(dec.positions[n:], state[1][n:])
            assert torch.equal(dec.cache.kv[:, :, n:], state[2][:, :, n:])
            assert not torch.equal(dec.cache.kv[:, :, :n], state[2][:, :, :n])  # this step's keys written
        with pytest.raises(ValueError, match="steps 4"):
            dec.run_step(32, rows=3)
