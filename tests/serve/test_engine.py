"""The serving engine (biogpt_cli/serve/engine.py): requests sharing decode steps get the tokens
`generate` gives each alone, per-row options do not leak between rows, and faults stay with the
request that caused them."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
import torch

from biogpt.serve import engine as engine_module
from biogpt.serve.engine import Engine, EngineStopped, QueueFull, SamplingParams, TokenEvent, openai_penalties

from tests.helpers import EOS, LENGTHS, alone, diverse_lm, prompts_of

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = dict(temperature=0.0)


@pytest.fixture(scope="module")
def model():
    return diverse_lm()


def started(model, **options) -> Engine:
    options.setdefault("eos_token_id", EOS)
    engine = Engine(model, **options)
    engine.start()
    return engine


async def collect(handle) -> list[TokenEvent]:
    return [event async for event in handle]


def tokens(events: list[TokenEvent]) -> list[int]:
    return [e.token_id for e in events if e.token_id is not None]


async def run_all(engine: Engine, jobs: list[tuple[list[int], SamplingParams]]) -> list[list[TokenEvent]]:
    handles = [engine.submit(p, params) for p, params in jobs]
    return list(await asyncio.gather(*(collect(h) for h in handles)))


def check_ending(events: list[TokenEvent], params: SamplingParams, stops) -> None:
    assert all(e.finish_reason is None for e in events[:-1])
    last = events[-1]
    if last.token_id in stops:
        assert last.finish_reason == "stop"
    else:
        assert last.finish_reason == "length" and len(events) == params.max_tokens


def test_concurrent_greedy_requests_get_generates_tokens(model):
    prompts = prompts_of(model.config.vocab_size, LENGTHS)
    limits = [20, 3, 17, 20, 1, 9, 20, 12, 20, 5, 14]
    engine = started(model, max_rows=3)
    try:
        jobs = [(p, SamplingParams(max_tokens=n, **GREEDY)) for p, n in zip(prompts, limits)]
        got = asyncio.run(run_all(engine, jobs))
    finally:
        engine.shutdown()
    lengths = set()
    for (p, params), events in zip(jobs, got):
        assert tokens(events) == alone(model, p, params.max_tokens), p
        check_ending(events, params, EOS)
        lengths.add(len(events))
    assert len(lengths) > 3  # rows were refilled at many different steps


def test_greedy_equals_plain_generate_with_the_models_own_end_token(model):
    """No eos_token_id given: the model's config's, as `model.generate(ids, max_new_tokens=N,
    do_sample=False)` uses."""
    prompts = prompts_of(model.config.vocab_size, [4, 11, 7, 2], seed=5)
    engine = Engine(model, max_rows=2)
    engine.start()
    try:
        got = asyncio.run(run_all(engine, [(p, SamplingParams(max_tokens=10, **GREEDY)) for p in prompts]))
    finally:
        engine.shutdown()
    for p, events in zip(prompts, got):
        want = model.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False)[0, len(p) :].tolist()
        assert tokens(events) == want[: len(events)]
        assert len(events) == 10 or events[-1].token_id == model.config.eos_token_id


def test_seeded_sampling_is_reproducible_whatever_else_runs(model):
    prompt = prompts_of(model.config.vocab_size, [6], seed=7)[0]
    params = SamplingParams(max_tokens=15, temperature=0.8, top_p=0.9, seed=1234, ignore_eos=True)
    engine = started(model, max_rows=4)
    try:
        solo = asyncio.run(run_all(engine, [(prompt, params)]))[0]
        others = prompts_of(model.config.vocab_size, [3, 9, 12, 5, 8], seed=8)
        traffic = [(q, SamplingParams(max_tokens=7 + i, temperature=1.0 + 0.1 * i, top_k=5 * i)) for i, q in enumerate(others)]
        traffic += [(q, SamplingParams(max_tokens=4, **GREEDY)) for q in others[:2]]
        mixed = asyncio.run(run_all(engine, traffic[:3] + [(prompt, params)] + traffic[3:]))[3]
    finally:
        engine.shutdown()
    assert tokens(solo) == tokens(mixed)
    assert len(solo) == 15
    # and it is what generate samples for it under the same seed (same processors, same draws)
    torch.manual_seed(1234)
    want = model.generate(
        torch.tensor([prompt]), max_new_tokens=15, do_sample=True, temperature=0.8, top_p=0.9, top_k=0, eos_token_id=[]
    )
    assert tokens(solo) == want[0, len(prompt) :].tolist()


def test_per_row_options_mixed_in_one_batch(model):
    vocab = model.config.vocab_size
    p = prompts_of(vocab, [5, 8, 6, 9, 4, 7], seed=11)
    penalised = SamplingParams(max_tokens=16, repetition_penalty=1.5, no_repeat_ngram_size=2, **GREEDY)
    at_least = SamplingParams(max_tokens=12, min_tokens=8, **GREEDY)
    plain = SamplingParams(max_tokens=12, **GREEDY)
    engine = started(model, max_rows=6)
    try:
        first = asyncio.run(run_all(engine, [(p[2], plain)]))[0]
        stop_at = tokens(first)[2]  # a token the plain request reaches at its third step
        stopped = SamplingParams(max_tokens=12, stop_token_ids=(stop_at,), **GREEDY)
        endless = SamplingParams(max_tokens=25, ignore_eos=True, **GREEDY)
        biased = SamplingParams(max_tokens=4, logit_bias=((321, 100.0),), **GREEDY)
        options = [penalised, at_least, stopped, endless, biased, plain]
        got = asyncio.run(run_all(engine, list(zip(p, options))))
    finally:
        engine.shutdown()
    assert tokens(got[0]) == alone(model, p[0], 16, repetition_penalty=1.5, no_repeat_ngram_size=2)
    assert tokens(got[1]) == alone(model, p[1], 12, min_new_tokens=8)
    assert len(got[1]) >= 8
    assert tokens(got[2]) == tokens(first)[: tokens(first).index(stop_at) + 1]
    assert got[2][-1].finish_reason == "stop"
    assert tokens(got[3]) == alone(model, p[3], 25, eos_token_id=[])
    assert got[3][-1].finish_reason == "length"
    assert tokens(got[4]) == [321] * 4
    assert tokens(got[5]) == alone(model, p[5], 12)


def test_a_temperature_near_zero_is_greedy(model):
    prompt = prompts_of(model.config.vocab_size, [8], seed=25)[0]
    engine = started(model, max_rows=1)
    try:
        got = asyncio.run(run_all(engine, [(prompt, SamplingParams(max_tokens=10, temperature=1e-9, top_p=0.5))]))[0]
    finally:
        engine.shutdown()
    assert tokens(got) == alone(model, prompt, 10)


def test_logprobs_are_those_of_the_processed_distribution(model):
    prompt = prompts_of(model.config.vocab_size, [7], seed=12)[0]
    engine = started(model, max_rows=2)
    try:
        greedy = asyncio.run(run_all(engine, [(prompt, SamplingParams(max_tokens=6, logprobs=3, ignore_eos=True, **GREEDY))]))[0]
        hot = SamplingParams(max_tokens=6, temperature=0.5, top_k=4, logprobs=8, seed=3, ignore_eos=True)
        sampled = asyncio.run(run_all(engine, [(prompt, hot)]))[0]

        async def score(ids):
            return await engine.run_exclusive(lambda: engine.score_prompt(ids, 3))

        reference = asyncio.run(score(prompt + tokens(greedy)))
    finally:
        engine.shutdown()
    for e, (lp, top) in zip(greedy, reference[len(prompt) :]):
        assert len(e.top_logprobs) == 3 and max(e.top_logprobs.values()) == pytest.approx(e.logprob)
        assert e.logprob == pytest.approx(lp, abs=1e-4)
        assert sorted(e.top_logprobs) == sorted(top)
    for e in sampled:
        # top-k = 4 leaves four tokens; the others have no finite logprob and are left out
        assert len(e.top_logprobs) == 4 and e.token_id in e.top_logprobs
        assert math.isclose(sum(math.exp(v) for v in e.top_logprobs.values()), 1.0, rel_tol=1e-4)


def test_openai_penalties_count_only_generated_tokens():
    ids = torch.tensor([[5, 5, 7, 5, 9]])  # prompt [5, 5], output [7, 5, 9]
    scores = torch.zeros(1, 10)
    out = openai_penalties(0.5, 0.25, prompt_length=2)(ids, scores)
    want = torch.zeros(1, 10)
    want[0, [7, 5, 9]] = -0.75
    assert torch.equal(out, want)


def test_cancel_frees_the_row_for_the_next_request(model):
    prompts = prompts_of(model.config.vocab_size, [5, 6], seed=13)
    engine = started(model, max_rows=1)

    async def scenario():
        long = engine.submit(prompts[0], SamplingParams(max_tokens=100, ignore_eos=True, **GREEDY))
        waiting = engine.submit(prompts[1], SamplingParams(max_tokens=5, **GREEDY))
        seen = []
        async for event in long:
            seen.append(event)
            if len(seen) == 2:
                long.cancel()
                made = len(long._request.tokens)  # what the engine had chosen when it was told
        assert len(long._request.tokens) <= made + 1  # the row went within one step
        return seen, await collect(waiting)

    try:
        seen, after = asyncio.run(scenario())
        assert engine.stats() == {"queue_depth": 0, "rows_busy": 0, "max_rows": 1}
    finally:
        engine.shutdown()
    assert seen[-1].finish_reason == "abort" and len(seen) < 10
    assert tokens(after) == alone(model, prompts[1], 5)


def test_leaving_the_iteration_cancels_and_a_queued_cancel_is_answered_at_once(model):
    prompts = prompts_of(model.config.vocab_size, [5, 6], seed=14)
    engine = started(model, max_rows=1)

    async def scenario():
        long = engine.submit(prompts[0], SamplingParams(max_tokens=100, ignore_eos=True, **GREEDY))
        queued = engine.submit(prompts[1], SamplingParams(max_tokens=5, **GREEDY))
        queued.cancel()
        queued_events = await collect(queued)
        async for _ in long:
            break  # the client went away
        while engine.stats()["rows_busy"]:
            await asyncio.sleep(0.01)
        return queued_events

    try:
        queued_events = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert [e.finish_reason for e in queued_events] == ["abort"] and queued_events[0].token_id is None


def test_a_request_that_raises_fails_alone(model, monkeypatch):
    real = engine_module.row_processors

    def failing(params, **kw):
        if params.seed == 13:
            raise RuntimeError("injected")
        return real(params, **kw)

    monkeypatch.setattr(engine_module, "row_processors", failing)
    prompts = prompts_of(model.config.vocab_size, [5, 8, 6], seed=15)
    engine = started(model, max_rows=3)
    try:
        jobs = [(prompts[0], SamplingParams(max_tokens=8, **GREEDY)), (prompts[1], SamplingParams(max_tokens=8, seed=13)),
                (prompts[2], SamplingParams(max_tokens=8, **GREEDY))]  # fmt: skip
        got = asyncio.run(run_all(engine, jobs))
        again = asyncio.run(run_all(engine, jobs[:1]))[0]
    finally:
        engine.shutdown()
    assert [e.finish_reason for e in got[1]] == ["error"] and "injected" in got[1][0].error
    assert tokens(got[0]) == alone(model, prompts[0], 8) == tokens(again)
    assert tokens(got[2]) == alone(model, prompts[2], 8)


def test_bad_requests_are_refused_at_submit(model):
    engine = started(model, max_rows=1)

    async def scenario():
        vocab, positions = model.config.vocab_size, model.config.max_position_embeddings
        bad = [
            ([], SamplingParams()),
            ([2, vocab], SamplingParams()),
            ([2] * 10, SamplingParams(max_tokens=positions - 9)),
            ([2], SamplingParams(max_tokens=0)),
            ([2], SamplingParams(top_p=0.0)),
            ([2], SamplingParams(logit_bias=((vocab, 1.0),))),
            ([2], SamplingParams(num_beams=2, logprobs=1)),
        ]
        for prompt, params in bad:
            with pytest.raises(ValueError):
                engine.submit(prompt, params)
        ok = engine.submit([2] * 10, SamplingParams(max_tokens=positions - 10, **GREEDY))  # exactly fits
        return await collect(ok)

    try:
        assert asyncio.run(scenario())[-1].finish_reason in ("stop", "length")
    finally:
        engine.shutdown()


def test_queue_limit_and_run_exclusive(model):
    engine = started(model, max_rows=1, max_queue=2)
    entered, release = threading.Event(), threading.Event()

    def block() -> str:
        entered.set()
        release.wait(30)
        return "released"

    async def scenario():
        blocker = asyncio.ensure_future(engine.run_exclusive(block))
        while not entered.is_set():  # the scheduler is inside the blocker: nothing else runs
            await asyncio.sleep(0.01)
        a = engine.submit([2, 5, 6], SamplingParams(max_tokens=3, **GREEDY))
        b = engine.submit([2, 7], SamplingParams(max_tokens=3, **GREEDY))
        with pytest.raises(QueueFull):
            engine.submit([2, 8], SamplingParams(max_tokens=3, **GREEDY))
        assert engine.stats()["queue_depth"] == 2
        release.set()
        assert await blocker == "released"
        answers = await collect(a), await collect(b)
        with pytest.raises(ZeroDivisionError):
            await engine.run_exclusive(lambda: 1 / 0)
        return answers

    try:
        a, b = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert tokens(a) == alone(model, [2, 5, 6], 3) and tokens(b) == alone(model, [2, 7], 3)


def test_score_prompt_gives_each_tokens_logprob_given_those_before(model):
    prompt = prompts_of(model.config.vocab_size, [6], seed=16)[0]
    engine = started(model, max_rows=1)
    try:
        scored = asyncio.run(_score(engine, prompt))
        plain = asyncio.run(_score(engine, prompt, None))
    finally:
        engine.shutdown()
    assert scored[0] == (None, None)
    assert [top for _, top in plain[1:]] == [None] * (len(prompt) - 1) and [lp for lp, _ in plain] == [lp for lp, _ in scored]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0], -1)
    for i in range(1, len(prompt)):
        lp, top = scored[i]
        assert lp == pytest.approx(float(logp[i - 1, prompt[i]]), abs=1e-5)
        assert list(top) == torch.topk(logp[i - 1], 2).indices.tolist()


async def _score(engine, prompt, top=2):
    return await engine.run_exclusive(lambda: engine.score_prompt(prompt, top))


def test_beam_requests_run_through_generate(model):
    prompt = prompts_of(model.config.vocab_size, [6], seed=17)[0]
    engine = started(model, max_rows=2)
    try:
        got = asyncio.run(run_all(engine, [(prompt, SamplingParams(max_tokens=9, num_beams=3, **GREEDY)),
                                           (prompt, SamplingParams(max_tokens=9, **GREEDY))]))  # fmt: skip
    finally:
        engine.shutdown()
    want = model.generate(torch.tensor([prompt]), max_new_tokens=9, num_beams=3, eos_token_id=EOS)[0, len(prompt) :].tolist()
    ends = [i for i, t in enumerate(want) if t in EOS]
    assert tokens(got[0]) == (want[: ends[0] + 1] if ends else want)
    assert tokens(got[1]) == alone(model, prompt, 9)


def test_shutdown_drains_in_flight_requests_then_refuses(model):
    prompts = prompts_of(model.config.vocab_size, LENGTHS[:6], seed=18)
    engine = started(model, max_rows=2)

    async def scenario():
        handles = [engine.submit(p, SamplingParams(max_tokens=10, **GREEDY)) for p in prompts]
        engine.shutdown(drain=True)  # blocks this loop: the events wait in its queue meanwhile
        with pytest.raises(EngineStopped):
            engine.submit(prompts[0], SamplingParams())
        with pytest.raises(EngineStopped):
            await engine.run_exclusive(lambda: None)
        return [await collect(h) for h in handles]

    got = asyncio.run(scenario())
    for p, events in zip(prompts, got):
        assert tokens(events) == alone(model, p, 10)


def test_shutdown_without_drain_aborts(model):
    prompts = prompts_of(model.config.vocab_size, [5, 6, 7], seed=19)
    engine = started(model, max_rows=1)

    async def scenario():
        handles = [engine.submit(p, SamplingParams(max_tokens=100, ignore_eos=True, **GREEDY)) for p in prompts]
        engine.shutdown(drain=False)
        return [await collect(h) for h in handles]

    got = asyncio.run(scenario())
    assert all(events[-1].finish_reason == "abort" for events in got)
    assert all(len(events) < 100 for events in got)


def test_a_failing_prefill_fails_only_its_request(model, monkeypatch):
    real = engine_module.prefill_into

    def failing(model_, dec, slots, prompts, pad, scores):
        if any(p[-1] == 999 for p in prompts):
            raise IndexError("injected")
        return real(model_, dec, slots, prompts, pad, scores)

    monkeypatch.setattr(engine_module, "prefill_into", failing)
    prompts = prompts_of(model.config.vocab_size, [5, 5, 5], seed=20)
    prompts[1][-1] = 999
    engine = started(model, max_rows=3)
    try:
        got = asyncio.run(run_all(engine, [(p, SamplingParams(max_tokens=6, **GREEDY)) for p in prompts]))
    finally:
        engine.shutdown()
    assert [e.finish_reason for e in got[1]] == ["error"] and "IndexError" in got[1][0].error
    for i in (0, 2):
        assert tokens(got[i]) == alone(model, prompts[i], 6)


def test_generate_between_steps_leaves_the_rows_in_flight_alone(model):
    """cuda_graph=True on a CPU: the engine's static step comes from the model's store of steps,
    where a generate() of the same bucket would find it and reset it; the engine keeps its own."""
    prompt = prompts_of(model.config.vocab_size, [7], seed=21)[0]
    other = prompts_of(model.config.vocab_size, [9], seed=22)[0]
    engine = started(model, max_rows=1, cuda_graph=True)

    async def scenario():
        handle = engine.submit(prompt, SamplingParams(max_tokens=40, ignore_eos=True, **GREEDY))
        side = []
        events = []
        async for event in handle:
            events.append(event)
            if len(events) % 10 == 5:
                side.append(await engine.run_exclusive(lambda: generated(model, other, 12, cuda_graph=True)))
        return events, side

    try:
        events, side = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert tokens(events) == alone(model, prompt, 40, eos_token_id=[])
    assert len(side) == 4 and all(s == generated(model, other, 12, cuda_graph=False) for s in side)


def generated(model, prompt: list[int], max_new: int, **options) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new, eos_token_id=[], **options)
    return out[0, len(prompt) :].tolist()


def test_queued_beam_requests_are_cancelled_and_aborted(model):
    prompt = prompts_of(model.config.vocab_size, [6], seed=23)[0]
    engine = started(model, max_rows=1)
    entered, release = threading.Event(), threading.Event()

    async def scenario():
        blocker = asyncio.ensure_future(engine.run_exclusive(lambda: entered.set() or release.wait(30)))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        first = engine.submit(prompt, SamplingParams(max_tokens=5, num_beams=2, **GREEDY))
        second = engine.submit(prompt, SamplingParams(max_tokens=5, num_beams=2, **GREEDY))
        first.cancel()
        assert engine.stats()["queue_depth"] == 1
        cancelled = await collect(first)
        release.set()
        await blocker
        return cancelled, await collect(second)

    try:
        cancelled, done = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert [e.finish_reason for e in cancelled] == ["abort"]
    assert done[-1].finish_reason in ("stop", "length") and len(done) <= 5


def test_many_clients_with_cancels_lose_and_duplicate_nothing(model):
    vocab = model.config.vocab_size
    prompts = prompts_of(vocab, [3 + (7 * i) % 17 for i in range(40)], seed=24)
    # every third request sampled with its own seed, the others greedy
    params = [SamplingParams(max_tokens=4 + i % 13, **(dict(seed=i, temperature=0.9) if i % 3 == 1 else GREEDY)) for i in range(40)]
    engine = started(model, max_rows=4, max_queue=64)

    async def client(i: int) -> list[TokenEvent]:
        await asyncio.sleep(0.001 * (i % 7))  # arrivals spread while decoding runs
        handle = engine.submit(prompts[i], params[i])
        events = []
        async for event in handle:
            events.append(event)
            if i % 5 == 0 and len(events) == 3 and event.finish_reason is None:
                handle.cancel()
        return events

    async def scenario():
        return await asyncio.gather(*(client(i) for i in range(40)))

    try:
        got = asyncio.run(scenario())
        sampled_alone = {i: tokens(asyncio.run(run_all(engine, [(prompts[i], params[i])]))[0]) for i in range(1, 40, 3)}
        assert engine.stats() == {"queue_depth": 0, "rows_busy": 0, "max_rows": 4}
    finally:
        engine.shutdown()
    for i, events in enumerate(got):
        assert [e.finish_reason is not None for e in events].count(True) == 1 and events[-1].finish_reason, i
        want = sampled_alone[i] if i % 3 == 1 else alone(model, prompts[i], params[i].max_tokens)
        if i % 5 == 0 and events[-1].finish_reason == "abort":  # cancelled: a prefix of its answer
            assert len(tokens(events)) >= 3 and tokens(events) == want[: len(tokens(events))], i
        else:
            assert tokens(events) == want, i


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_captured_step_serves_the_same_tokens():
    model = diverse_lm().cuda()
    prompts = prompts_of(model.config.vocab_size, LENGTHS)
    engine = started(model, max_rows=3)
    seeded = SamplingParams(max_tokens=12, temperature=0.7, seed=5, ignore_eos=True)
    try:
        assert engine._dec is not None and engine._dec.graph is not None  # the captured step
        greedy = asyncio.run(run_all(engine, [(p, SamplingParams(max_tokens=20, **GREEDY)) for p in prompts]))
        solo = asyncio.run(run_all(engine, [(prompts[0], seeded)]))[0]
        traffic = [(p, SamplingParams(max_tokens=9, seed=i)) for i, p in enumerate(prompts[1:4])]
        mixed = asyncio.run(run_all(engine, traffic + [(prompts[0], seeded)]))[-1]
    finally:
        engine.shutdown()
    for p, events in zip(prompts, greedy):
        assert tokens(events) == alone(model, p, 20)
    assert tokens(solo) == tokens(mixed)


def test_busy_rows_are_kept_first_and_a_step_runs_only_their_bucket(model, monkeypatch):
    """Requests ending in the middle of the rows hand their rows to the last busy ones (keys and
    all), and each step runs the smallest row bucket holding the busy rows: 8 requests of
    staggered lengths on 8 rows step 8, then 4, 2, 1 rows as they end. Every request still gets
    generate's tokens for it alone."""
    from biogpt.model.generation.static import StaticDecoder

    steps: list[tuple[int, int]] = []  # (rows stepped, rows busy)
    run_step = StaticDecoder.run_step

    def recording(self, span=None, *, rows=None):
        steps.append((rows, engine.stats()["rows_busy"]))
        return run_step(self, span, rows=rows)

    monkeypatch.setattr(StaticDecoder, "run_step", recording)
    prompts = prompts_of(model.config.vocab_size, [6, 9, 4, 12, 7, 5, 10, 8], seed=21)
    limits = [3, 25, 6, 20, 1, 12, 30, 9]  # short ones first and in the middle: rows move
    engine = started(model, max_rows=8)
    try:
        jobs = [(p, SamplingParams(max_tokens=n, ignore_eos=True, **GREEDY)) for p, n in zip(prompts, limits)]
        got = asyncio.run(run_all(engine, jobs))
    finally:
        engine.shutdown()
    for (p, params), events in zip(jobs, got):
        assert tokens(events) == alone(model, p, params.max_tokens, eos_token_id=[]), p
    stepped = [rows for rows, _ in steps]
    assert all(rows in (1, 2, 4, 8) and busy <= rows for rows, busy in steps)
    # the scheduler may start on the first request before the others are queued: rows grow to 8,
    # then shrink as requests end
    peak = stepped.index(8)
    assert stepped[peak:] == sorted(stepped[peak:], reverse=True) and stepped[-1] == 1
    assert {8, 4, 2, 1} <= set(stepped[peak:])
