"""benchmarks/serve_bench.py: its prompts, its clients (every request sent once, concurrently),
the load test's verdict (a lost, failed, swapped or duplicated answer fails it), the baseline
server's answers, and (slow) a whole quick run on a tiny model. No time is asserted."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from benchmarks import serve_bench as sb

httpx = pytest.importorskip("httpx")


def test_prompts_are_real_abstracts_and_fall_back_to_the_shipped_fixture(monkeypatch, tmp_path):
    monkeypatch.setattr(sb, "SHARED_TEST", tmp_path / "no-shared" / "test.json")  # a fresh clone has no ../shared
    docs, where = sb.load_documents()
    assert where == "tests/fixtures/bc5cdr_test_sample.json" and len(docs) == 25
    prompts = sb.abstract_prompts(docs, 32)
    assert len(prompts) == 32 and prompts[0] == f"{docs[0][0]} {docs[0][1]}" and prompts[25] == prompts[0]  # cycled
    short = sb.short_prompts(docs, 64)
    assert len(set(short)) == 64 and short[0] == docs[0][0]


def test_percentile_is_nearest_rank():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert (sb.percentile(xs, 50), sb.percentile(xs, 90), sb.percentile(xs, 100)) == (5.0, 9.0, 10.0)
    assert sb.percentile([0.3], 90) == 0.3


class FakeServer:
    """/v1/completions answering `max_tokens` tokens: text from the prompt, a fresh id each time,
    counting requests in flight. `fault(call, prompt, body)` may change an answer."""

    def __init__(self, fault=None) -> None:
        self.calls: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.ids = itertools.count()
        self.fault = fault

    async def handle(self, request: "httpx.Request") -> "httpx.Response":
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        body = json.loads(request.content)
        assert body["temperature"] == 0 and body["min_tokens"] == body["max_tokens"] and body["ignore_eos"] is True
        self.calls.append(body["prompt"])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        answer = {"id": f"cmpl-{next(self.ids)}", "choices": [{"index": 0, "text": "re: " + body["prompt"], "finish_reason": "length"}],
                  "usage": {"prompt_tokens": len(body["prompt"].split()), "completion_tokens": body["max_tokens"]}}
        if self.fault:
            answer = self.fault(len(self.calls), body["prompt"], answer)
            if isinstance(answer, httpx.Response):
                return answer
        return httpx.Response(200, json=answer)

    def transport(self) -> "httpx.MockTransport":
        return httpx.MockTransport(self.handle)


def test_concurrent_clients_send_every_prompt_exactly_once_and_answers_keep_prompt_order():
    server = FakeServer()
    prompts = [f"prompt {i}" for i in range(20)]
    wall, answers = asyncio.run(sb.drive("http://test", prompts, 8, 3, request_seconds=10, transport=server.transport()))
    assert sorted(server.calls) == sorted(prompts) and server.most_in_flight == 8
    assert [a.text for a in answers] == ["re: " + p for p in prompts] and all(a.completion_tokens == 3 for a in answers)
    assert wall > 0
    sb.check_answers(answers, 3, "fake")
    with pytest.raises(RuntimeError, match="not 4 tokens long"):
        sb.check_answers(answers, 4, "fake")


def _load(fault=None, n: int = 12) -> sb.LoadResult:
    server = FakeServer(fault)
    prompts = [f"title {i} " + "word " * i for i in range(n)]
    result = sb.load_test("http://test", prompts, 4, 2, time_limit=60, request_seconds=30, transport=server.transport())
    assert len(server.calls) == 2 * n  # alone, then together: nothing sent twice
    return result


def test_the_load_test_passes_a_faithful_server():
    result = _load()
    assert result.passed, result.line()
    assert (result.answered, result.unique_ids, result.equal_to_sequential, result.failed) == (12, 12, 12, 0)
    assert result.line().startswith("Load test PASSED")


def test_the_load_test_fails_a_swapped_duplicated_failed_or_short_answer():
    n = 12

    def swapped(call, prompt, answer):  # the concurrent pass answers prompt 3 with prompt 4's text
        if call > n and prompt.startswith("title 3 "):
            answer["choices"][0]["text"] = "re: title 4 " + "word " * 4
        return answer

    def duplicated(call, prompt, answer):  # one answer id handed out twice
        if call > n:
            answer["id"] = "cmpl-same" if prompt.startswith(("title 1 ", "title 2 ")) else answer["id"]
        return answer

    def failed(call, prompt, answer):
        return httpx.Response(500, json={"error": {"message": "boom"}}) if call > n and prompt.startswith("title 5 ") else answer

    def short(call, prompt, answer):
        if call > n and prompt.startswith("title 6 "):
            answer["usage"]["completion_tokens"] = 1
        return answer

    def extra_choice(call, prompt, answer):  # two answers to one request
        if call > n and prompt.startswith("title 7 "):
            answer["choices"].append(dict(answer["choices"][0], index=1))
        return answer

    r = _load(swapped)
    assert not r.passed and r.equal_to_sequential == n - 1
    r = _load(duplicated)
    assert not r.passed and r.unique_ids == n - 1
    r = _load(failed)
    assert not r.passed and (r.failed, r.answered) == (1, n - 1) and "status 500" in r.errors[0]
    assert "Load test FAILED" in r.line()
    r = _load(short)
    assert not r.passed and r.wrong_length == 1
    r = _load(extra_choice)
    assert not r.passed and r.answered == n - 1


def test_the_load_test_stops_at_its_time_limit():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    result = sb.load_test("http://test", ["a", "b"], 2, 2, time_limit=0.2, request_seconds=30, transport=httpx.MockTransport(slow))
    assert result.timed_out and not result.passed and "TIME LIMIT REACHED" in result.line()


@pytest.mark.slow  # imports transformers: several seconds on two cores
def test_the_baseline_app_answers_the_completions_subset_with_a_fixed_number_of_tokens(tmp_path):
    pytest.importorskip("transformers")
    from fastapi.testclient import TestClient

    sb.make_checkpoint(tmp_path / "tiny", tiny=True)
    client = TestClient(sb.baseline_app(str(tmp_path / "tiny")))
    assert client.get("/health").status_code == 200
    body = sb.request_body("Aspirin induced asthma in a patient.", 5)
    one, two = (client.post("/v1/completions", json=body).json() for _ in range(2))
    assert one["usage"]["completion_tokens"] == 5 and one["choices"][0]["finish_reason"] == "length"
    assert one["choices"][0]["text"] == two["choices"][0]["text"] and one["id"] != two["id"]  # greedy
    assert one["usage"]["total_tokens"] == one["usage"]["prompt_tokens"] + 5


@pytest.mark.slow
def test_a_quick_run_on_a_tiny_model_measures_every_level_and_passes_the_load_test(tmp_path):
    out = tmp_path / "serve.json"
    table = tmp_path / "serve.md"
    assert sb.main(["--quick", "--tiny", "--json", str(out), "--markdown", str(table)]) == 0
    data = json.loads(out.read_text())
    levels = [(lv["clients"], lv["max_num_seqs"]) for lv in data["levels"]]
    assert levels == [(1, 1), (8, 8), (32, 32), (1, 32), (8, 32)]
    assert all(lv["ratio"] > 0 and lv["ours"]["p50_s"] <= lv["ours"]["p90_s"] for lv in data["levels"])
    assert data["load_test"]["passed"] and data["load_test"]["requests"] == sb.QUICK.load_requests
    text = table.read_text()
    assert "| concurrent clients |" in text and "Load test PASSED" in text
    assert "biogpt: serving" not in text and "Uvicorn" not in text  # the servers' output stays out of the table
