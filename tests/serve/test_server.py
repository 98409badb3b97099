"""`biogpt serve` against a live server on 127.0.0.1 (issue 28, item 5): the real `openai` client
with max_retries=0 (completions equal to `biogpt generate`, streaming, n with a seed, embeddings,
errors), raw HTTP where a client would not send such a body, concurrent clients, a task endpoint,
the queue limit, a client that disconnects, --api-key, the refusal to listen on every interface
without a key, and a SIGTERM that lets the requests in flight finish.

The servers run as `biogpt serve` subprocesses on a tiny random model with the real vocabulary
(`--port 0`: the address is read from the line the command prints once it listens)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from biogpt.serve.server import ModelSpec, check_binding, is_loopback, parse_model_specs
from tests.helpers import ENV, biogpt, command

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

PROMPT = "COVID-19 is"
START_SECONDS = 180  # two shared cores and a cold import of torch and fastapi


# ------------------------------------------------------------------ without a server
def test_model_specs_name_each_model_once():
    assert parse_model_specs(["base=microsoft/biogpt", "runs/ner/model-best"]) == [
        ModelSpec("base", "microsoft/biogpt"), ModelSpec("model-best", "runs/ner/model-best")]
    assert parse_model_specs(["microsoft/biogpt"]) == [ModelSpec("microsoft/biogpt", "microsoft/biogpt")]
    assert parse_model_specs(["runs/a=b/model"], served_model_name="mine") == [ModelSpec("mine", "runs/a=b/model")]
    from biogpt._common import UserError

    with pytest.raises(UserError, match="two models are served as 'm'"):
        parse_model_specs(["m=a", "m=b"])
    with pytest.raises(UserError, match="every -m here is NAME=PATH"):
        parse_model_specs(["m=a"], served_model_name="x")
    with pytest.raises(UserError, match="no path after m="):
        parse_model_specs(["m="])


def test_only_loopback_addresses_are_served_without_a_key():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        check_binding(host, api_key=None, allow_unauthenticated=False)
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1"):
        assert not is_loopback(host), host
        check_binding(host, api_key="k", allow_unauthenticated=False)
        check_binding(host, api_key=None, allow_unauthenticated=True)
    from biogpt._common import UserError

    with pytest.raises(UserError, match="--host 0.0.0.0 is reachable from other machines and no API key is set"):
        check_binding("0.0.0.0", api_key=None, allow_unauthenticated=False)


def test_serving_every_interface_without_a_key_is_refused_in_one_line(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "BIOGPT_API_KEY"}
    # refused before any model loads: the model does not even exist
    result = subprocess.run(command("serve", "-m", str(tmp_path / "no-model"), "--host", "0.0.0.0"),
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("biogpt: error: --host 0.0.0.0 is reachable from other machines") and len(result.stderr.splitlines()) == 1
    assert "--api-key" in result.stderr and "--allow-unauthenticated" in result.stderr
    # an empty key (`--api-key "$KEY"`, KEY unset) is no key
    empty = subprocess.run(command("serve", "-m", str(tmp_path / "no-model"), "--host", "0.0.0.0", "--api-key", ""),
                           capture_output=True, text=True, env=env, timeout=120)
    assert empty.returncode == 2 and empty.stderr.startswith("biogpt: error: --api-key is empty") and len(empty.stderr.splitlines()) == 1


def test_serve_help_names_vllms_flags():
    out = biogpt("serve", "--help")
    assert out.returncode == 0, out.stderr
    for flag in ("--served-model-name", "--max-num-seqs", "--max-num-batched-tokens", "--api-key", "--max-queue", "--request-timeout", "--max-body-bytes",
                 "--allowed-origins", "--allow-unauthenticated", "--quantize", "--device", "--dtype", "BIOGPT_API_KEY"):
        assert flag in out.stdout, flag


def test_max_num_batched_tokens_reaches_the_engine(model_dir):
    """--max-num-batched-tokens bounds one prefill pass; by default 512 padded tokens on a CPU."""
    from biogpt.serve.server import ModelSpec, load_served_model

    spec = ModelSpec("tiny", str(model_dir))
    common = dict(device="cpu", dtype="float32", quantize=None, max_num_seqs=2, max_queue=4, cuda_graph=None)
    assert load_served_model(spec, **common).engine.max_prefill_tokens == 512
    assert load_served_model(spec, **common, max_num_batched_tokens=64).engine.max_prefill_tokens == 64


# ------------------------------------------------------------------ live servers
class LiveServer:
    """A `biogpt serve` subprocess; its stderr is collected as it comes (a full pipe would block it)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(command("serve", "--port", "0", *args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env or ENV)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(START_SECONDS) or not self.url:
            self.stop(signal.SIGKILL)
            raise AssertionError("biogpt serve did not start:\n" + self.stderr)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"biogpt: serving .* on (http://\S+)/v1 ", line)
            if found:
                self.url = found.group(1)
                self.ready.set()
        self.ready.set()  # the process ended (before it was ready, if url is empty)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def client(self, api_key: str = "none", **options) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120, **options)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)


@pytest.fixture(scope="module")
def server(model_dir, tagger):
    live = LiveServer("-m", f"tiny={model_dir}", "-m", f"ner={tagger}", "--max-num-seqs", "4")
    yield live
    status = live.stop()
    assert status == 0, live.stderr


def _generated(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    out = biogpt("-q", "generate", "-m", str(model_dir), "--prompt", prompt, "--max-new-tokens", str(max_new_tokens), "-f", "jsonl")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["generated"]


@pytest.mark.slow
def test_health_and_models(server):
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny", "ner"]
    metrics = httpx.get(server.url + "/metrics", timeout=30)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text


@pytest.mark.slow
def test_a_tagger_serves_tag_and_a_causal_lm_does_not(server, tagger, tmp_path):
    texts = ["Aspirin induced asthma in a patient.", "Naloxone reverses the effect of clonidine."]
    tagged = httpx.post(server.url + "/v1/tag", json={"model": "ner", "input": texts}, timeout=60)
    assert tagged.status_code == 200, tagged.text
    src = tmp_path / "docs.txt"
    src.write_text("".join(t + "\n" for t in texts))
    cli = biogpt("-q", "tag", "-m", str(tagger), str(src))
    assert cli.returncode == 0, cli.stderr
    # the records of `biogpt tag`
    assert [r["entities"] for r in tagged.json()["data"]] == [json.loads(line)["entities"] for line in cli.stdout.splitlines()]
    wrong = httpx.post(server.url + "/v1/tag", json={"model": "tiny", "input": "Aspirin induced asthma."}, timeout=60)
    assert wrong.status_code == 400 and "token-classification" in wrong.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):  # a tagger does not generate
        server.client().completions.create(model="ner", prompt=PROMPT, max_tokens=2)


@pytest.mark.slow
def test_a_greedy_completion_is_biogpt_generates(server, model_dir):
    client = server.client()
    done = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0)
    assert done.choices[0].text == _generated(model_dir, PROMPT, 12)
    assert done.choices[0].finish_reason in ("length", "stop")
    assert done.usage.completion_tokens <= 12 and done.usage.prompt_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    # the same prompt as token ids: the same text
    from biogpt.model import BioGptTokenizer

    ids = BioGptTokenizer.from_pretrained(str(model_dir))(PROMPT)["input_ids"]
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=12, temperature=0)
    assert by_ids.choices[0].text == done.choices[0].text


@pytest.mark.slow
def test_streaming_gives_the_same_text_and_the_usage_last(server):
    client = server.client()
    whole = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.slow
def test_n_choices_with_a_seed_are_reproducible(server):
    client = server.client()

    def sample() -> list[str]:
        out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=1.0, n=3, seed=1234)
        assert sorted(c.index for c in out.choices) == [0, 1, 2]
        return [c.text for c in sorted(out.choices, key=lambda c: c.index)]

    first = sample()
    assert sample() == first
    assert len(set(first)) > 1  # n samples, not one sample three times


@pytest.mark.slow
def test_concurrent_greedy_requests_equal_their_sequential_answers(server):
    client = server.client()
    prompts = [f"{word} is" for word in ("Aspirin", "The p53 gene", "Metformin", "COVID-19", "Insulin", "BRCA1", "Tamoxifen", "Ibuprofen")]
    sequential = [client.completions.create(model="tiny", prompt=p, max_tokens=10, temperature=0).choices[0].text for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        concurrent = list(pool.map(lambda p: client.completions.create(model="tiny", prompt=p, max_tokens=10, temperature=0).choices[0].text,
                                   prompts))
    assert concurrent == sequential


@pytest.mark.slow
def test_embeddings_are_biogpt_embeds(server, model_dir):
    import torch

    from biogpt.model import BioGptForCausalLM, BioGptTokenizer
    from biogpt.serve.embeddings import embed_ids

    texts = ["Aspirin reduces fever.", "The p53 gene"]
    out = server.client().embeddings.create(model="tiny", input=texts)  # the client asks for base64
    model, tokenizer = BioGptForCausalLM.from_pretrained(str(model_dir)), BioGptTokenizer.from_pretrained(str(model_dir))
    expected = embed_ids(model, [tokenizer(t)["input_ids"] for t in texts])
    got = torch.tensor([d.embedding for d in sorted(out.data, key=lambda d: d.index)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    as_floats = httpx.post(server.url + "/v1/embeddings", json={"model": "tiny", "input": texts[1], "encoding_format": "float"}, timeout=60)
    assert as_floats.status_code == 200, as_floats.text
    torch.testing.assert_close(torch.tensor(as_floats.json()["data"][0]["embedding"]), expected[1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_errors_are_openais(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="no-such-model", prompt=PROMPT, max_tokens=2)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:  # the tiny model has 128 positions
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=500, temperature=0)
    assert too_long.value.status_code == 400
    with pytest.raises(openai.APIStatusError) as chat:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert "/v1/completions" in chat.value.message
    bad = httpx.post(server.url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and set(bad.json()["error"]) >= {"message", "type", "param", "code"}
    huge = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": "x" * (5 << 20)}, timeout=60)  # --max-body-bytes: 4 MiB
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    # the server goes on answering
    assert client.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, temperature=0).choices


@pytest.mark.slow
def test_an_api_key_is_required_everywhere_but_health(model_dir):
    live = LiveServer("-m", str(model_dir), "--served-model-name", "tiny", "--api-key", "sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            live.client(api_key="wrong").completions.create(model="tiny", prompt=PROMPT, max_tokens=2)
        assert httpx.get(live.url + "/v1/models", timeout=30).status_code == 401
        assert httpx.get(live.url + "/health", timeout=30).status_code == 200
        assert live.client(api_key="sesame").completions.create(model="tiny", prompt=PROMPT, max_tokens=2, temperature=0).choices
    finally:
        assert live.stop() == 0, live.stderr


@pytest.mark.slow
def test_sigterm_finishes_the_requests_in_flight_and_exits_0(model_dir):
    # one row, eight long requests: most wait in the queue when the signal comes, and a drain
    # finishes those too
    live = LiveServer("-m", f"tiny={model_dir}", "--max-num-seqs", "1")
    client = live.client()
    first_token = threading.Event()
    finished: list[object] = []

    def request(i: int) -> tuple[str | None, int]:
        stream = client.completions.create(model="tiny", prompt=f"{PROMPT} {i}", max_tokens=100, temperature=0, stream=True,
                                           stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        reason, tokens = None, 0
        for chunk in stream:
            first_token.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                reason = chunk.choices[0].finish_reason
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        finished.append(i)
        return reason, tokens

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(request, i) for i in range(8)]
            assert first_token.wait(120), live.stderr
            time.sleep(0.2)  # every request has reached the server
            live.proc.send_signal(signal.SIGTERM)
            running_at_signal = 8 - len(finished)
            time.sleep(0.5)
            # no new work while draining: the port is closed (or, on a busy machine, about to be:
            # /health says 503 from the signal on)
            try:
                health = httpx.get(live.url + "/health", timeout=5).status_code
            except httpx.TransportError:
                health = None
            assert health in (None, 503)
            results = [f.result(timeout=300) for f in futures]
        assert running_at_signal > 0, "every request was done before the signal: nothing was drained"
        assert results == [("length", 100)] * 8
        assert live.proc.wait(120) == 0, live.stderr
        assert "draining" in live.stderr and "Traceback" not in live.stderr
    finally:
        if live.proc.poll() is None:
            live.stop(signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_stops_an_idle_server_with_status_0(model_dir):
    live = LiveServer("-m", str(model_dir))
    assert live.stop(signal.SIGINT) == 0, live.stderr
    assert "draining" in live.stderr and "Traceback" not in live.stderr and "interrupted" not in live.stderr


@pytest.fixture(scope="module")
def one_row(model_dir):
    """A server with one row and room for three waiting requests: the queue limit and
    disconnects show there."""
    live = LiveServer("-m", f"tiny={model_dir}", "--max-num-seqs", "1", "--max-queue", "3")
    yield live
    assert live.stop() == 0, live.stderr


def _engine_gauges(live: LiveServer) -> tuple[float, float]:
    text = httpx.get(live.url + "/metrics", timeout=30).text
    value = lambda name: float(re.search(rf'^{name}{{model="tiny"}} (\S+)$', text, re.M).group(1))  # noqa: E731
    return value("biogpt_rows_busy"), value("biogpt_queue_depth")


@pytest.mark.slow
def test_a_full_queue_is_429_with_retry_after_and_the_accepted_requests_complete(one_row):
    client = one_row.client()

    def request(i: int) -> object:
        try:
            out = client.completions.create(model="tiny", prompt=f"{PROMPT} {i}", max_tokens=40, temperature=0, extra_body={"ignore_eos": True})
            return out.usage.completion_tokens
        except openai.RateLimitError as exc:
            return exc

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(request, range(12)))
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert refused and all(int(r.response.headers["retry-after"]) >= 1 for r in refused)
    assert [r for r in results if not isinstance(r, openai.RateLimitError)] == [40] * (12 - len(refused))
    assert _engine_gauges(one_row) == (0, 0)


@pytest.mark.slow
def test_a_client_that_disconnects_frees_its_row(one_row):
    # three choices of 110 tokens on one row (15 s of decoding on two busy cores): the row and
    # the queue are free long before they could have been decoded. Three: they fit the queue even
    # before the scheduler takes the first.
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 110, "n": 3, "temperature": 0, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", one_row.url + "/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_lines())
    deadline = time.monotonic() + 10
    while _engine_gauges(one_row) != (0, 0):
        assert time.monotonic() < deadline, "the row stayed busy after its client left"
        time.sleep(0.1)
    # the server goes on
    assert one_row.client().completions.create(model="tiny", prompt=PROMPT, max_tokens=3, temperature=0).choices[0].finish_reason
