"""The HTTP layer of `biogpt serve` (biogpt.serve.app) against the real Engine and tiny models
with the real vocabulary: OpenAI's shapes, greedy text equal to `model.generate` + decode,
streaming, stop strings, logprobs, echo scoring, embeddings, task endpoints, auth, limits and
every error in OpenAI's shape."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from biogpt.model import BioGptConfig, BioGptForSequenceClassification, BioGptForTokenClassification, BioGptTokenizer  # noqa: E402
from biogpt.serve.app import create_app  # noqa: E402
from biogpt.serve.embeddings import embed_ids  # noqa: E402
from biogpt.serve.engine import Engine, EngineStopped, QueueFull, SamplingParams  # noqa: E402
from biogpt.serve.models import ServedModel  # noqa: E402
from tests.helpers import tiny_lm  # noqa: E402

PROMPT = "Aspirin reduces the risk of"
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def tokenizer():
    return BioGptTokenizer.from_pretrained("microsoft/biogpt")


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(vocab_size=42384, initializer_range=0.2, tie_word_embeddings=False)


def heads(tokenizer) -> dict[str, ServedModel]:
    torch.manual_seed(0)
    tag_cfg = BioGptConfig.from_preset("tiny", vocab_size=42384, id2label={0: "O", 1: "B-Chemical", 2: "I-Chemical"})
    cls_cfg = BioGptConfig.from_preset("tiny", vocab_size=42384, id2label={0: "neg", 1: "pos"})
    return {
        "tagger": ServedModel("tagger", BioGptForTokenClassification(tag_cfg).eval(), tokenizer, None, "token-classification", None, 2),
        "classifier": ServedModel("classifier", BioGptForSequenceClassification(cls_cfg).eval(), tokenizer, None,
                                  "sequence-classification", None, 3),
    }


def build(lm, tokenizer, *, api_key=None, origins=(), max_body=1 << 20, cap=100, timeout=60.0, max_queue=64):
    engine = Engine(lm, max_rows=4, max_queue=max_queue, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    models = {"tiny": ServedModel("tiny", lm, tokenizer, engine, "causal-lm", None, 1), **heads(tokenizer)}
    app = create_app(models, default="tiny", api_key=api_key, allowed_origins=list(origins), max_body_bytes=max_body,
                     max_tokens_cap=cap, request_timeout=timeout)
    return app, engine


@pytest.fixture(scope="module")
def client(lm, tokenizer):
    app, _ = build(lm, tokenizer)
    with TestClient(app) as c:
        yield c


def reference(lm, tokenizer, prompt: str, max_new: int) -> tuple[str, list[int]]:
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = lm.generate(ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    tokens = out[0, ids.shape[1]:].tolist()
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
    return tokenizer.decode(tokens, skip_special_tokens=True), tokens


def is_error(r, status: int, param=None, code=None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def sse(text: str) -> list:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# ---------------------------------------------------------------------------- completions
def test_greedy_completion_equals_generate_and_openai_shape(client, lm, tokenizer):
    want, tokens = reference(lm, tokenizer, PROMPT, 12)
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["text"] == want and choice["logprobs"] is None
    assert choice["finish_reason"] == ("stop" if tokens[-1] == tokenizer.eos_token_id else "length")
    n_prompt = len(tokenizer(PROMPT)["input_ids"])
    assert body["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": len(tokens), "total_tokens": n_prompt + len(tokens)}


def test_prompt_forms_token_ids_and_lists(client, lm, tokenizer):
    other = "Metformin is used to treat"
    ids = tokenizer(other)["input_ids"]
    r = client.post("/v1/completions", json={"prompt": [PROMPT, other], "max_tokens": 6, "temperature": 0})
    texts = [c["text"] for c in r.json()["choices"]]
    assert texts == [reference(lm, tokenizer, PROMPT, 6)[0], reference(lm, tokenizer, other, 6)[0]]
    r1 = client.post("/v1/completions", json={"prompt": ids, "max_tokens": 6, "temperature": 0})
    r2 = client.post("/v1/completions", json={"prompt": [ids, ids], "max_tokens": 6, "temperature": 0})
    assert r1.json()["choices"][0]["text"] == texts[1]
    assert [c["text"] for c in r2.json()["choices"]] == [texts[1]] * 2 and [c["index"] for c in r2.json()["choices"]] == [0, 1]


def test_n_with_seed_is_reproducible_and_each_sample_uses_seed_plus_i(client):
    req = {"prompt": PROMPT, "max_tokens": 10, "temperature": 1.0, "n": 3, "seed": 7, "ignore_eos": True}
    a, b = client.post("/v1/completions", json=req).json(), client.post("/v1/completions", json=req).json()
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]
    assert [c["index"] for c in a["choices"]] == [0, 1, 2] and a["usage"]["completion_tokens"] == 30
    # choice i is sampled with seed + i (as vLLM does)
    single = client.post("/v1/completions", json={**req, "n": 1, "seed": 8}).json()
    assert single["choices"][0]["text"] == a["choices"][1]["text"]


def test_stop_string_cuts_the_text(client, lm, tokenizer):
    full, _ = reference(lm, tokenizer, PROMPT, 20)
    words = full.split()
    assert len(words) > 3, full
    stop = words[2]
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "stop": [stop, "@@never@@"]})
    choice = r.json()["choices"][0]
    assert choice["text"] == full[: full.index(stop)] and choice["finish_reason"] == "stop"
    streamed = sse(client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "stop": stop,
                                                        "stream": True}).text)
    assert "".join(c["choices"][0]["text"] for c in streamed) == choice["text"]
    assert streamed[-1]["choices"][0]["finish_reason"] == "stop"


def test_streaming_matches_the_non_streamed_text_with_usage(client, lm, tokenizer):
    want, tokens = reference(lm, tokenizer, PROMPT, 15)
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 15, "temperature": 0, "stream": True,
                                             "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse(r.text)
    text_chunks, usage = chunks[:-1], chunks[-1]
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in text_chunks)
    assert "".join(c["choices"][0]["text"] for c in text_chunks) == want
    assert text_chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(tokens)


def test_streaming_n_choices_each_complete(client):
    req = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0.8, "seed": 3, "n": 2}
    plain = client.post("/v1/completions", json=req).json()
    chunks = sse(client.post("/v1/completions", json={**req, "stream": True}).text)
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
        assert "".join(c["text"] for c in mine) == plain["choices"][i]["text"]
        assert mine[-1]["finish_reason"] is not None


def test_logprobs_legacy_object(client, tokenizer):
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 5, "temperature": 0, "logprobs": 3, "ignore_eos": True})
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == 5
    for tok, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert logprob <= 0 and 1 <= len(top) <= 3
        assert max(top, key=top.get) == tok  # greedy: the chosen token is the likeliest
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0


def test_echo_with_max_tokens_zero_scores_the_prompt(client, lm, tokenizer):
    ids = tokenizer(PROMPT)["input_ids"]
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["text"] == tokenizer.decode(ids, skip_special_tokens=True)
    lp = choice["logprobs"]
    assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    want = [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]
    assert lp["token_logprobs"][1:] == pytest.approx(want, abs=1e-4)
    assert r.json()["usage"]["completion_tokens"] == 0


def test_streamed_echo_and_logprobs_match_the_plain_answer(client):
    req = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "echo": True, "logprobs": 2, "ignore_eos": True}
    plain = client.post("/v1/completions", json=req).json()["choices"][0]
    chunks = [c["choices"][0] for c in sse(client.post("/v1/completions", json={**req, "stream": True}).text)]
    assert "".join(c["text"] for c in chunks) == plain["text"]
    for key in ("tokens", "token_logprobs", "text_offset"):
        assert sum((c["logprobs"][key] for c in chunks if c["logprobs"]), []) == plain["logprobs"][key], key
    assert plain["logprobs"]["token_logprobs"][0] is None  # the first prompt token has no context


def test_null_options_take_openai_defaults(client, lm, tokenizer):
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": None, "temperature": None, "top_p": None, "seed": 1})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 16


def test_echo_prepends_the_prompt(client, lm, tokenizer):
    want, _ = reference(lm, tokenizer, PROMPT, 6)
    text = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "echo": True}).json()["choices"][0]["text"]
    assert text.startswith(PROMPT) and text.endswith(want)


def test_logit_bias_and_penalties_reach_the_engine(client, tokenizer):
    token = tokenizer.convert_tokens_to_ids("aspirin</w>")
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 3, "temperature": 0, "ignore_eos": True,
                                             "logit_bias": {str(token): 100}, "logprobs": 0})
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"] == ["aspirin"] * 3
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 3, "temperature": 0, "ignore_eos": True,
                                             "logit_bias": {str(token): 100}, "frequency_penalty": 2.0, "presence_penalty": 2.0,
                                             "logprobs": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["logprobs"]["tokens"] == ["aspirin"] * 3  # +100 outweighs -4


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "extra, param",
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"suffix": "and then"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"max_tokens": 101}, "max_tokens"),  # the server's cap
        ({"max_tokens": 100, "prompt": "word " * 60}, "max_tokens"),  # past the model's 128 positions
        ({"prompt": [0, 99999999]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"max_token": 5}, "max_token"),  # unknown field: named, never ignored
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"num_beams": 2, "temperature": 0.5}, "temperature"),
    ],
)
def test_bad_completion_requests_are_400_naming_the_field(client, extra, param):
    is_error(client.post("/v1/completions", json={"prompt": PROMPT, **extra}), 400, param=param)


def test_default_and_noop_values_are_accepted(client):
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2, "suffix": None, "best_of": 1, "user": "u", "n": 1,
                                             "logit_bias": {}, "frequency_penalty": 0, "presence_penalty": 0, "stop": None, "echo": False,
                                             "top_p": 1, "stream": False, "logprobs": None})
    assert r.status_code == 200, r.text


def test_http_errors_in_openai_shape(client):
    is_error(client.post("/v1/completions", json={"model": "gpt-4", "prompt": "x"}), 404, param="model", code="model_not_found")
    is_error(client.get("/v1/completions"), 405)
    is_error(client.get("/nowhere"), 404)
    is_error(client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)
    err = is_error(client.post("/v1/chat/completions", json={"model": "tiny", "messages": []}), 404)
    assert "/v1/completions" in err["message"]
    is_error(client.post("/v1/completions", json={"model": "tagger", "prompt": "x"}), 400, param="model")


def test_body_over_the_limit_is_413_before_parsing(lm, tokenizer):
    app, _ = build(lm, tokenizer, max_body=200)
    with TestClient(app) as c:
        is_error(c.post("/v1/completions", content=b"{" + b" " * 300 + b"}", headers={"content-type": "application/json"}), 413)

        def chunks():
            yield b'{"prompt": "'
            yield b"x" * 300
            yield b'"}'

        is_error(c.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"}), 413)
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 200


def test_queue_full_is_429_with_retry_after_and_engine_failure_is_500_alone(lm, tokenizer, monkeypatch):
    app, engine = build(lm, tokenizer)
    with TestClient(app) as c:
        real = engine.submit
        monkeypatch.setattr(engine, "submit", lambda *a, **k: (_ for _ in ()).throw(QueueFull()))
        r = c.post("/v1/completions", json={"prompt": PROMPT})
        is_error(r, 429)
        assert r.headers["retry-after"] == "1"
        monkeypatch.setattr(engine, "submit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        assert "boom" in is_error(c.post("/v1/completions", json={"prompt": PROMPT}), 500)["message"]
        monkeypatch.setattr(engine, "submit", lambda *a, **k: (_ for _ in ()).throw(EngineStopped()))
        is_error(c.post("/v1/completions", json={"prompt": PROMPT}), 503)
        monkeypatch.setattr(engine, "submit", real)
        assert c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}).status_code == 200


def test_an_exception_inside_the_engine_fails_that_request_alone(lm, tokenizer, monkeypatch):
    app, engine = build(lm, tokenizer)
    with TestClient(app) as c:
        real = engine._choose

        def choose(row, scores, greedy_token):
            if 777 in row.request.prompt:
                raise RuntimeError("row failure")
            return real(row, scores, greedy_token)

        monkeypatch.setattr(engine, "_choose", choose)
        is_error(c.post("/v1/completions", json={"prompt": [2, 777, 5], "max_tokens": 3}), 500)
        events = c.post("/v1/completions", json={"prompt": [2, 777, 5], "max_tokens": 3, "stream": True}).text
        assert sse(events)[-1]["error"]["type"] == "server_error"
        assert c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}).status_code == 200


def test_request_timeout_cancels_and_answers_408(lm, tokenizer):
    app, engine = build(lm, tokenizer, timeout=0.05, cap=120)
    with TestClient(app) as c:
        r = c.post("/v1/completions", json={"prompt": [2, 5], "max_tokens": 120, "ignore_eos": True, "n": 8})
        if r.status_code == 200:  # this machine decoded 960 tokens in 50 ms: nothing to time out
            pytest.skip("too fast to time out")
        is_error(r, 408, code="request_timeout")
        deadline = time.time() + 5
        while engine.stats()["rows_busy"] and time.time() < deadline:
            time.sleep(0.01)
        assert engine.stats() == {"queue_depth": 0, "rows_busy": 0, "max_rows": 4}


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_the_engine_aborts_says_abort_not_length(tokenizer, stream):
    # a stop without drain (or a drain past its timeout) ends the requests in flight
    # unfinished: their choice says "abort", as vLLM's does, never "length"
    import threading

    app, engine = build(tiny_lm(vocab_size=42384, max_position_embeddings=1024), tokenizer, cap=1000)
    answers = []
    with TestClient(app) as c:
        body = {"prompt": [2, 5], "max_tokens": 1000, "ignore_eos": True, "temperature": 0, "stream": stream}
        asking = threading.Thread(target=lambda: answers.append(c.post("/v1/completions", json=body)))
        asking.start()
        deadline = time.time() + 30
        while not engine.stats()["rows_busy"] and time.time() < deadline:
            time.sleep(0.005)
        engine.shutdown(drain=False)
        asking.join(30)
    (r,) = answers
    assert r.status_code == 200, r.text
    if stream:
        chunks = [e for e in sse(r.text) if e["choices"]]
        reasons = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"][0]["finish_reason"]]
        assert reasons == ["abort"] and chunks[-1]["choices"][0]["finish_reason"] == "abort"
    else:
        (choice,) = r.json()["choices"]
        assert choice["finish_reason"] == "abort"
        assert r.json()["usage"]["completion_tokens"] < 1000


@pytest.mark.parametrize("model", ["tagger", "tiny"])  # a head model (worker thread), an engine's model (run_exclusive)
def test_request_timeout_bounds_a_whole_task_request(lm, tokenizer, monkeypatch, model):
    # thirty documents of 0.1 s each against a 1 s limit: the request answers 408 at the limit
    # (not one limit per document), and the documents not yet run never run
    import biogpt.commands.extract_relations as extract_relations
    import biogpt.heads as heads_module

    calls = []

    def slow(real):
        def run(*args, **kwargs):
            calls.append(1)
            time.sleep(0.1)
            return real(*args, **kwargs)
        return run

    monkeypatch.setattr(heads_module, "tag_batch", slow(heads_module.tag_batch))  # one pass per short document
    monkeypatch.setattr(extract_relations, "relations_record", slow(extract_relations.relations_record))
    app, engine = build(lm, tokenizer, timeout=1.0)
    docs = [f"Aspirin induced ulcers in patient {i}." for i in range(30)]
    with TestClient(app) as c:
        start = time.time()
        if model == "tagger":
            r = c.post("/v1/tag", json={"model": "tagger", "input": docs})
        else:
            r = c.post("/v1/extract-relations", json={"task": "bc5cdr", "input": docs, "max_new_tokens": 2})
        is_error(r, 408, code="request_timeout")
        assert time.time() - start < 3
        time.sleep(0.5)  # the document running at the limit ends; no other starts
        ran = len(calls)
        time.sleep(0.5)
        assert len(calls) == ran < len(docs)
        if model == "tiny":
            assert engine.stats()["queue_depth"] == 0
        # the model is free again
        ok = c.post("/v1/tag", json={"model": "tagger", "input": "Aspirin."}) if model == "tagger" else \
            c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
        assert ok.status_code == 200, ok.text


# ---------------------------------------------------------------------------- other endpoints
def test_health_models_and_draining(lm, tokenizer):
    app, _ = build(lm, tokenizer)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        data = c.get("/v1/models").json()
        assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["tiny", "tagger", "classifier"]
        assert all(m["object"] == "model" and "created" in m and "owned_by" in m for m in data["data"])
        assert c.get("/v1/models/tagger").json()["kind"] == "token-classification"
        is_error(c.get("/v1/models/nope"), 404, code="model_not_found")
        app.state.draining = True
        is_error(c.get("/health"), 503)
        is_error(c.post("/v1/completions", json={"prompt": PROMPT}), 503)


def test_metrics(client):
    client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 3, "temperature": 0})
    client.post("/v1/completions", json={"model": "nope", "prompt": PROMPT})
    text = client.get("/metrics").text
    assert 'biogpt_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'biogpt_requests_total{endpoint="/v1/completions",status="404"}' in text
    for name in ("biogpt_prompt_tokens_total", "biogpt_generation_tokens_total", "biogpt_queue_depth", "biogpt_rows_busy",
                 "biogpt_time_to_first_token_seconds_bucket", "biogpt_request_latency_seconds_bucket"):
        assert name in text, name


def test_embeddings_float_and_base64(client, lm, tokenizer):
    texts = ["Aspirin", "Metformin treats diabetes"]
    want = embed_ids(lm, [tokenizer(t)["input_ids"] for t in texts])
    r = client.post("/v1/embeddings", json={"input": texts})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny" and body["usage"]["prompt_tokens"] > 0
    got = torch.tensor([d["embedding"] for d in body["data"]])
    assert torch.allclose(got, want, atol=1e-6)
    b64 = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()["data"]
    raw = base64.b64decode(b64[1]["embedding"])
    assert torch.tensor(struct.unpack(f"<{len(raw) // 4}f", raw)).allclose(want[1])
    ids = tokenizer("Aspirin")["input_ids"]
    assert torch.allclose(torch.tensor(client.post("/v1/embeddings", json={"input": ids}).json()["data"][0]["embedding"]), want[0], atol=1e-6)
    head = client.post("/v1/embeddings", json={"model": "tagger", "input": texts}).json()  # a head model: its decoder's states
    assert len(head["data"]) == 2 and head["model"] == "tagger"
    is_error(client.post("/v1/embeddings", json={"input": texts, "dimensions": 3}), 400, param="dimensions")
    is_error(client.post("/v1/embeddings", json={"input": "word " * 200}), 400, param="input")


def test_openai_client_against_the_app(client, lm, tokenizer):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    want, _ = reference(lm, tokenizer, PROMPT, 8)
    assert api.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text == want
    vec = api.embeddings.create(model="tiny", input="Aspirin").data[0].embedding  # base64 by default
    assert torch.allclose(torch.tensor(vec), embed_ids(lm, [tokenizer("Aspirin")["input_ids"]])[0], atol=1e-6)
    with pytest.raises(openai.NotFoundError):
        api.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError):
        api.completions.create(model="tiny", prompt="x", max_tokens=-1)


def test_task_endpoints(client):
    doc = {"id": "d1", "title": "Aspirin and ulcers.", "abstract": "Aspirin induced gastric ulcers in rats."}
    r = client.post("/v1/extract-relations", json={"task": "bc5cdr", "input": [doc, "Cisplatin caused nephrotoxicity."],
                                                   "max_new_tokens": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "bc5cdr" and [d["id"] for d in body["data"]] == ["d1", "input:2"]
    assert set(body["data"][0]) == {"id", "relations", "output", "failed", "provenance"}
    is_error(client.post("/v1/extract-relations", json={"input": "x"}), 400, param="task")
    is_error(client.post("/v1/extract-relations", json={"task": "hoc", "input": "x"}), 400, param="task")
    qa = client.post("/v1/qa", json={"input": {"question": "Does aspirin cause ulcers?", "context": "Aspirin caused ulcers."}}).json()
    (answer,) = qa["data"]
    assert answer["answer"] in ("yes", "no", "maybe") and sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    tagged = client.post("/v1/tag", json={"model": "tagger", "input": "Aspirin induced ulcers."}).json()["data"][0]
    assert tagged["id"] == "input:1" and isinstance(tagged["entities"], list)
    labels = client.post("/v1/classify", json={"model": "classifier", "input": ["a", "b"]}).json()["data"]
    assert len(labels) == 2 and set(labels[0]["scores"]) == {"neg", "pos"}
    is_error(client.post("/v1/tag", json={"input": "x"}), 400, param="model", code="wrong_model_kind")
    err = is_error(client.post("/v1/classify", json={"input": "x"}), 400, param="model")
    assert "sequence-classification" in err["message"]
    is_error(client.post("/v1/qa", json={"model": "tagger", "input": {"question": "q", "context": "c"}}), 400, param="model")
    is_error(client.post("/v1/tag", json={"model": "tagger", "input": {"txt": "x"}}), 400, param="input")
    is_error(client.post("/v1/tag", json={"model": "tagger", "input": []}), 400, param="input")


def test_long_documents_through_the_task_endpoints(client):
    """A full-text article with its passages (as `biogpt data passages` writes them) read by
    passages: entities at document offsets from late passages, relations merged over units."""
    from pathlib import Path

    from biogpt.documents import passages_of
    from biogpt.io import ReadOptions, read_inputs

    pmc = Path(__file__).parents[1] / "fixtures" / "pmc" / "pntd.0002065.nxml"
    (record,) = list(read_inputs([str(pmc)], input_format="auto", options=ReadOptions()))
    passages = passages_of(record)
    doc = {"id": record.id, "text": record.text, "passages": passages}
    r = client.post("/v1/tag", json={"model": "tagger", "input": doc, "long_documents": "passages"})
    assert r.status_code == 200, r.text
    (tagged,) = r.json()["data"]
    entities = tagged["entities"]
    assert tagged["provenance"]["long_documents"] == "passages"
    assert entities and all(record.text[e["start"] : e["end"]] == e["text"] for e in entities)
    assert max(e["passage"] for e in entities) >= len(passages) - 3
    # a passage whose text is not at its offset, a passage out of order, an unknown mode: 400s naming them
    moved = {**doc, "passages": [passages[0], {**passages[1], "offset": passages[1]["offset"] + 1}]}
    err = is_error(client.post("/v1/tag", json={"model": "tagger", "input": [doc, moved]}), 400, param="input")
    assert err["message"].startswith("input[1].passages[1].offset")
    swapped = {**doc, "passages": [passages[1], passages[0]]}
    assert "input.passages[1].offset" in is_error(client.post("/v1/tag", json={"model": "tagger", "input": swapped}), 400)["message"]
    is_error(client.post("/v1/tag", json={"model": "tagger", "input": doc, "long_documents": "pages"}), 400, param="long_documents")

    parts = ["Aspirin and ulcers.", "Aspirin induced gastric ulcers in rats.", "Cisplatin caused nephrotoxicity.",
             "Famotidine was associated with delirium."]
    text = f"{parts[0]} {parts[1]}\n\n{parts[2]}\n\n{parts[3]}"
    small = {"id": "d1", "text": text, "passages": [
        {"type": "title", "offset": 0, "text": parts[0]}, {"type": "abstract", "offset": len(parts[0]) + 1, "text": parts[1]},
        {"type": "paragraph", "section": "Results", "section_type": "results", "offset": text.index(parts[2]), "text": parts[2]},
        {"type": "paragraph", "section": "Discussion", "section_type": "discussion", "offset": text.index(parts[3]), "text": parts[3]}]}
    r = client.post("/v1/extract-relations", json={"task": "bc5cdr", "input": small, "max_new_tokens": 4, "long_documents": "passages"})
    assert r.status_code == 200, r.text
    (found,) = r.json()["data"]
    assert [(u["type"], u["offset"], u["section"]) for u in found["units"]] == \
        [("title_abstract", 0, ""), ("paragraph", text.index(parts[2]), "Results"), ("paragraph", text.index(parts[3]), "Discussion")]
    assert found["output"] == "\n".join(u["output"] for u in found["units"])
    for rel in found["relations"]:
        assert rel["support"] == len(rel["evidence"]) and all(text[s:e].lower() == rel["head"]["text"].lower() for s, e in rel["head"]["spans"])
    whole = client.post("/v1/extract-relations", json={"task": "bc5cdr", "input": small, "max_new_tokens": 4, "long_documents": "truncate"})
    assert set(whole.json()["data"][0]) == {"id", "relations", "output", "failed", "provenance"}  # today's record
    qa = client.post("/v1/qa", json={"input": {"question": "Does aspirin cause ulcers?", "context": parts[1:]}, "long_documents": "passages"})
    assert qa.status_code == 200, qa.text
    assert qa.json()["data"][0]["units"] == 3


def test_api_key_on_every_endpoint_but_health(lm, tokenizer):
    app, _ = build(lm, tokenizer, api_key=KEY)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        for method, path in (("get", "/v1/models"), ("get", "/metrics"), ("post", "/v1/completions"), ("get", "/nowhere")):
            is_error(getattr(c, method)(path), 401, code="invalid_api_key")
            is_error(getattr(c, method)(path, headers={"Authorization": "Bearer wrong"}), 401)
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers=ok).status_code == 200


def test_cors_only_with_allowed_origins(lm, tokenizer, client):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/completions", headers=preflight).headers
    app, _ = build(lm, tokenizer, origins=["https://app.example"], api_key=KEY)
    with TestClient(app) as c:
        r = c.options("/v1/completions", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


def test_shutdown_drains_the_engine(lm, tokenizer):
    app, engine = build(lm, tokenizer)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
    async def submit():
        return engine.submit([2, 5], SamplingParams(max_tokens=1))

    with pytest.raises(EngineStopped):
        asyncio.run(submit())


# ---------------------------------------------------------------------------- a live server
@pytest.fixture
def live(tokenizer):
    """The app under uvicorn on 127.0.0.1 (a free port), a model with 1024 positions so that a
    long answer takes a while; yields (base url, engine, the handles submitted)."""
    import threading

    import uvicorn

    lm = tiny_lm(vocab_size=42384, max_position_embeddings=1024)
    app, engine = build(lm, tokenizer, cap=1000)
    handles = []
    real = engine.submit

    def submit(*args, **kwargs):
        handles.append(real(*args, **kwargs))
        return handles[-1]

    engine.submit = submit
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", engine, handles
    server.should_exit = True
    thread.join(30)


def wait_idle(engine, seconds: float = 5.0) -> None:
    deadline = time.time() + seconds
    while (engine.stats()["rows_busy"] or engine.stats()["queue_depth"]) and time.time() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_row(live, stream):
    import httpx

    url, engine, handles = live
    body = {"prompt": [2, 5], "max_tokens": 1000, "ignore_eos": True, "temperature": 0, "stream": stream}
    with httpx.Client(timeout=30) as http:
        if stream:
            with http.stream("POST", f"{url}/v1/completions", json=body) as r:
                assert r.status_code == 200
                next(r.iter_lines())  # the first event arrived: the row is decoding
        else:
            with pytest.raises(httpx.ReadTimeout):
                http.post(f"{url}/v1/completions", json=body, timeout=0.3)
    wait_idle(engine)
    assert engine.stats()["rows_busy"] == 0
    (handle,) = handles
    assert len(handle._request.tokens) < 1000  # cancelled, not run to its end
    with httpx.Client(timeout=30) as http:  # and the server goes on
        assert http.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_concurrent_greedy_answers_equal_their_sequential_answers(live, tokenizer):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    url, engine, _ = live
    prompts = [f"Patient {i} was treated with drug {i % 5} for" for i in range(8)]

    def ask(prompt: str) -> str:
        with httpx.Client(timeout=60) as http:
            r = http.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 8, "temperature": 0})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["text"]

    sequential = [ask(p) for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, prompts)) == sequential
    expected = [reference(engine.model, tokenizer, p, 8)[0] for p in prompts[:3]]
    assert sequential[:3] == expected


def test_beam_search_through_the_api(client, lm, tokenizer):
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    out = lm.generate(ids, max_new_tokens=6, num_beams=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    tokens = out[0, ids.shape[1]:].tolist()
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
    r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 6, "num_beams": 3, "temperature": 0})
    assert r.json()["choices"][0]["text"] == tokenizer.decode(tokens, skip_special_tokens=True)
