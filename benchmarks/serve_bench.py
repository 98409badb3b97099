"""`biogpt serve` against the server a user writes today (issue 28, item 6).

    python -m benchmarks.serve_bench [--quick] [--tiny] [--repeats 1] [--json F] [--markdown F]

Both servers run as subprocesses on 127.0.0.1 and load the same folder: random weights of the
BioGPT 347M shapes in fp32 (`--tiny`: the tiny preset, for a smoke run), the real BioGPT
vocabulary, saved once to a temporary folder.

- ours: `biogpt serve -m bench=DIR --max-num-seqs N` (continuous batching across requests), N =
  the level's clients; then the smaller levels again on the largest level's server (one server
  sized for the largest load, as a deployment runs it; `--no-shared-rows` skips these);
- baseline: a small FastAPI app (`baseline_app` below) that loads transformers'
  BioGptForCausalLM and its tokenizer from the same folder and calls `model.generate` per request
  in FastAPI's thread pool (`run_in_threadpool`), served by uvicorn: what a user writes today.

One async httpx client drives both through the same /v1/completions subset: `prompt` (a real
BC5CDR title and abstract, from ../shared/data/BC5CDR/test.json when present, else the shipped
fixture tests/fixtures/bc5cdr_test_sample.json), `max_tokens`, `temperature: 0`, and a fixed
number of new tokens (`min_tokens` = `max_tokens`, `ignore_eos: true`; the baseline maps
`min_tokens` to `min_new_tokens`). Every response must carry exactly that many completion tokens.

Per level (1, 8 and 32 concurrent clients, each client sending its next request when its last
is answered, a stated request count per level), ours and the baseline alternate (A B A B over
`--repeats`); throughput = completion tokens ÷ wall time from the first request sent to the last
answer; p50/p90 = end-to-end latency of single requests (all repeats pooled). Ratios are
ours ÷ baseline in the same run; no absolute time is asserted anywhere.

Then a bounded load test against ours only (loopback, a request count and a time limit): each
distinct prompt is first answered alone (one client, on the one-row server of the first level:
what the engine gives a request with nothing else running, `biogpt generate`'s tokens), then all
of them are sent again by many concurrent clients to the largest server; every request must get exactly one answer (HTTP 200, one choice, a unique
id), every greedy answer must equal the same prompt's sequential answer, none lost or
duplicated, and the server must still be healthy afterwards.

The servers' own output never reaches the table (stdout discarded, stderr kept for an error
message); both are stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .run import environment  # the machine line every benchmark table starts with

ROOT = Path(__file__).resolve().parents[1]
SHARED_TEST = Path(os.environ.get("BIOGPT_SHARED", ROOT.parent / "shared")) / "data" / "BC5CDR" / "test.json"
FIXTURE = ROOT / "tests" / "fixtures" / "bc5cdr_test_sample.json"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
START_SECONDS = 300  # a cold import of torch, transformers and fastapi and a 1.4 GB load on two busy cores
MODEL_NAME = "bench"


@dataclass(frozen=True)
class Plan:
    levels: tuple[tuple[int, int], ...]  # (concurrent clients, requests)
    new_tokens: int
    load_requests: int
    load_clients: int
    load_new_tokens: int
    load_seconds: float  # the load test's time limit (both passes)
    request_seconds: float  # one request's time limit


FULL = Plan(levels=((1, 8), (8, 16), (32, 32)), new_tokens=16, load_requests=64, load_clients=16, load_new_tokens=8,
            load_seconds=600, request_seconds=600)
QUICK = Plan(levels=((1, 2), (8, 8), (32, 32)), new_tokens=4, load_requests=32, load_clients=16, load_new_tokens=4,
             load_seconds=300, request_seconds=300)


# ---------------------------------------------------------------------------------------- data
def load_documents() -> tuple[list[tuple[str, str]], str]:
    """(title, abstract) of BC5CDR test documents, and where they came from."""
    for path in (SHARED_TEST, FIXTURE):
        try:
            docs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pairs = [(d["title"], d["abstract"]) for d in docs.values()]
        if pairs:
            where = "../shared/data/BC5CDR/test.json" if path == SHARED_TEST else "tests/fixtures/bc5cdr_test_sample.json"
            return pairs, where
    raise FileNotFoundError(f"no BC5CDR documents: neither {SHARED_TEST} nor {FIXTURE}")


def abstract_prompts(docs: Sequence[tuple[str, str]], n: int) -> list[str]:
    """`n` prompts of BC5CDR abstract length: title and abstract of a document each (cycled
    when there are fewer documents)."""
    return [f"{title} {abstract}" for title, abstract in (docs[i % len(docs)] for i in range(n))]


def short_prompts(docs: Sequence[tuple[str, str]], n: int) -> list[str]:
    """`n` distinct short prompts (a title, then a few more of its abstract's words each time
    the documents come round again): the load test checks answers, not prefill speed."""
    out = []
    for i in range(n):
        title, abstract = docs[i % len(docs)]
        extra = " ".join(abstract.split()[: 3 * (i // len(docs))])
        out.append(f"{title} {extra}".strip())
    assert len(set(out)) == n
    return out


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty sample."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


# ---------------------------------------------------------------------------------------- model
def make_checkpoint(directory: Path, tiny: bool) -> None:
    """The benchmark's weights: benchmarks.run's random 347M (fp32), or the tiny preset with the
    real vocabulary and 1024 positions (abstract-length prompts fit)."""
    if not tiny:
        from benchmarks.run import make_checkpoint as make_347m

        make_347m(directory)
        return
    import torch

    from biogpt.model import BioGptConfig, BioGptForCausalLM, BioGptTokenizer

    torch.manual_seed(0)
    # initializer_range 0.2, untied: greedy answers vary from prompt to prompt (as tests/helpers.py's diverse_lm)
    config = BioGptConfig.from_preset("tiny", vocab_size=42384, max_position_embeddings=1024, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, initializer_range=0.2, tie_word_embeddings=False)
    BioGptForCausalLM(config).eval().save_pretrained(directory, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))


# ---------------------------------------------------------------------------------------- baseline
def baseline_app(path: str):
    """The server a user writes today: transformers' model and tokenizer, `generate` per
    request in the thread pool, OpenAI's completions shape for the fields this benchmark sends."""
    import uuid

    import torch
    import transformers
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from pydantic import BaseModel

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.BioGptTokenizer.from_pretrained(path)
    model = transformers.BioGptForCausalLM.from_pretrained(path).eval()

    class CompletionRequest(BaseModel):
        model: str | None = None
        prompt: str
        max_tokens: int = 16
        temperature: float = 1.0
        min_tokens: int = 0
        ignore_eos: bool = False  # transformers has none: min_tokens = max_tokens does it

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def completions(req: CompletionRequest) -> dict[str, Any]:
        def run() -> tuple[str, int, int]:
            enc = tokenizer(req.prompt, return_tensors="pt")
            sampling = {"do_sample": True, "temperature": req.temperature} if req.temperature > 0 else {"do_sample": False}
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=req.max_tokens, min_new_tokens=req.min_tokens,
                                     pad_token_id=tokenizer.pad_token_id, **sampling)
            new = out[0, enc["input_ids"].shape[1]:]
            return tokenizer.decode(new, skip_special_tokens=True), enc["input_ids"].shape[1], len(new)

        text, prompt_tokens, completion_tokens = await run_in_threadpool(run)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": req.model or MODEL_NAME,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": "length" if completion_tokens >= req.max_tokens else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # this module's `from __future__ import annotations` leaves the annotation a string naming a
    # local class, which FastAPI cannot resolve: hand it the class
    completions.__annotations__["req"] = CompletionRequest
    app.post("/v1/completions")(completions)
    return app


def serve_baseline(path: str, host: str = "127.0.0.1") -> None:
    """Load, listen on a free port, say where on stderr (as `biogpt serve` does), serve."""
    import socket

    import uvicorn

    app = baseline_app(path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    print(f"baseline: serving on http://{host}:{sock.getsockname()[1]}/v1 ", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=600)).run(sockets=[sock])


# ---------------------------------------------------------------------------------------- servers
def biogpt_command() -> list[str]:
    script = Path(sys.executable).parent / "biogpt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "biogpt"]


def ours_command(path: Path, max_num_seqs: int, max_queue: int) -> list[str]:
    return [*biogpt_command(), "serve", "-m", f"{MODEL_NAME}={path}", "--host", "127.0.0.1", "--port", "0",
            "--max-num-seqs", str(max_num_seqs), "--max-queue", str(max_queue)]


def baseline_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.serve_bench", "--baseline-server", str(path)]


class Server:
    """A server subprocess: stdout discarded, stderr kept (a full pipe would block it) for an
    error message; ready once it prints the address it listens on."""

    def __init__(self, name: str, argv: list[str], ready: str, timeout: float = START_SECONDS) -> None:
        self.name = name
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._pattern = re.compile(ready)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=ENV, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"{name} server did not start within {timeout:.0f} s:\n{self.stderr[-4000:]}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = self._pattern.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # it ended (before it was ready, if url is empty)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (ours drains and exits 0), then SIGKILL if it has not ended."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout)


OURS_READY = r"biogpt: serving .* on (http://\S+)/v1 "
BASELINE_READY = r"baseline: serving on (http://\S+)/v1 "


# ---------------------------------------------------------------------------------------- client
@dataclass
class Answer:
    index: int
    seconds: float
    status: int
    body: dict[str, Any] | None
    error: str = ""

    @property
    def text(self) -> str | None:
        return self.body["choices"][0]["text"] if self.ok else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body is not None and len(self.body.get("choices", ())) == 1

    @property
    def completion_tokens(self) -> int:
        return self.body["usage"]["completion_tokens"] if self.ok else 0


def request_body(prompt: str, new_tokens: int) -> dict[str, Any]:
    return {"model": MODEL_NAME, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0,
            "min_tokens": new_tokens, "ignore_eos": True}


async def drive(url: str, prompts: Sequence[str], clients: int, new_tokens: int, *, request_seconds: float,
                transport: Any = None) -> tuple[float, list[Answer]]:
    """(wall seconds, one answer per prompt in prompt order): `clients` concurrent clients, each
    sending its next request once its last is answered. `transport`: httpx's, for the tests."""
    import httpx

    answers: list[Answer | None] = [None] * len(prompts)
    pending = iter(range(len(prompts)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=request_seconds, limits=limits, trust_env=False, transport=transport) as client:

        async def one_client() -> None:
            for i in pending:  # shared: each index goes to exactly one client
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/completions", json=request_body(prompts[i], new_tokens))
                    seconds = time.perf_counter() - start
                    try:
                        body = r.json()
                    except ValueError:
                        body = None
                    answers[i] = Answer(i, seconds, r.status_code, body if r.status_code == 200 else None,
                                        "" if r.status_code == 200 else r.text[:300])
                except httpx.HTTPError as exc:
                    answers[i] = Answer(i, time.perf_counter() - start, 0, None, f"{type(exc).__name__}: {exc}")

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return wall, [a if a is not None else Answer(i, 0.0, 0, None, "never sent") for i, a in enumerate(answers)]


# ---------------------------------------------------------------------------------------- levels
@dataclass
class Side:
    throughput: list[float] = field(default_factory=list)  # completion tokens/s, one per repeat
    latencies: list[float] = field(default_factory=list)  # seconds, every request of every repeat
    texts: list[str | None] = field(default_factory=list)  # the last repeat's answers, prompt order

    def summary(self) -> dict[str, float]:
        return {"throughput_median": statistics.median(self.throughput), "throughput_min": min(self.throughput),
                "throughput_max": max(self.throughput), "p50_s": percentile(self.latencies, 50), "p90_s": percentile(self.latencies, 90)}


@dataclass
class Level:
    clients: int
    requests: int
    rows: int  # ours' --max-num-seqs
    ours: Side = field(default_factory=Side)
    baseline: Side = field(default_factory=Side)  # shared with the level's other rows settings

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours.throughput) / statistics.median(self.baseline.throughput)

    def row(self) -> str:
        def tput(s: Side) -> str:
            return f"{statistics.median(s.throughput):.1f} ({min(s.throughput):.1f}–{max(s.throughput):.1f})"

        def lat(s: Side) -> str:
            return f"{percentile(s.latencies, 50):.2f} / {percentile(s.latencies, 90):.2f}"

        return (f"| {self.clients} | {self.requests} | {self.rows} | {tput(self.ours)} | {tput(self.baseline)} | **{self.ratio:.2f}×** "
                f"| {lat(self.ours)} | {lat(self.baseline)} |")


def check_answers(answers: Sequence[Answer], new_tokens: int, who: str) -> None:
    bad = [a for a in answers if not a.ok or a.completion_tokens != new_tokens]
    if bad:
        a = bad[0]
        raise RuntimeError(f"{who}: {len(bad)} of {len(answers)} requests failed or were not {new_tokens} tokens long; "
                           f"first: status {a.status}, {a.error or a.body}")


def measure_level(urls: dict[str, str], prompts: Sequence[str], level: Level, plan: Plan, repeats: int,
                  sides: Sequence[str] = ("ours", "baseline")) -> Level:
    for _ in range(repeats):
        for who in sides:  # A B A B
            wall, answers = asyncio.run(drive(urls[who], prompts, level.clients, plan.new_tokens, request_seconds=plan.request_seconds))
            check_answers(answers, plan.new_tokens, who)
            side = getattr(level, who)
            side.throughput.append(sum(a.completion_tokens for a in answers) / wall)
            side.latencies += [a.seconds for a in answers]
            side.texts = [a.text for a in answers]
    return level


# ---------------------------------------------------------------------------------------- load test
@dataclass
class LoadResult:
    requests: int
    clients: int
    new_tokens: int
    time_limit_s: float
    answered: int = 0  # HTTP 200 with one choice, in the concurrent pass
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    unique_ids: int = 0
    equal_to_sequential: int = 0
    wrong_length: int = 0
    distinct_sequential_texts: int = 0
    healthy_after: bool = False
    timed_out: bool = False
    sequential_s: float = 0.0
    concurrent_s: float = 0.0

    @property
    def passed(self) -> bool:
        return (not self.timed_out and self.answered == self.requests and self.failed == 0 and self.unique_ids == self.requests
                and self.equal_to_sequential == self.requests and self.wrong_length == 0 and self.healthy_after)

    def line(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"Load test {verdict} (ours only, loopback, at most {self.time_limit_s:.0f} s): {self.requests} distinct greedy "
                f"prompts × {self.new_tokens} new tokens, answered alone first ({self.sequential_s:.1f} s), then by "
                f"{self.clients} concurrent clients ({self.concurrent_s:.1f} s): {self.answered}/{self.requests} answered once "
                f"with HTTP 200, {self.failed} failed, {self.unique_ids} distinct response ids, {self.equal_to_sequential}/"
                f"{self.requests} equal to the prompt's sequential answer (text and prompt tokens; {self.distinct_sequential_texts} distinct answers), "
                f"{self.wrong_length} of the wrong length, /health {'200' if self.healthy_after else 'not 200'} afterwards"
                + (", TIME LIMIT REACHED" if self.timed_out else "")
                + (f"; first error: {self.errors[0]}" if self.errors else ""))


def answer_alone(url: str, prompts: Sequence[str], new_tokens: int, *, time_limit: float, request_seconds: float,
                 transport: Any = None) -> tuple[float, list[Answer]] | None:
    """The load test's first pass: every prompt answered alone (one client); None past the
    time limit. Run it on a one-row server, and the reference is what the engine gives a
    request with nothing else running (`biogpt generate`'s tokens, tests/serve)."""
    try:
        return asyncio.run(asyncio.wait_for(drive(url, prompts, 1, new_tokens, request_seconds=min(request_seconds, time_limit),
                                                  transport=transport), time_limit))
    except (asyncio.TimeoutError, TimeoutError):
        return None


def load_test(url: str, prompts: Sequence[str], clients: int, new_tokens: int, *, time_limit: float, request_seconds: float,
              transport: Any = None, alone: tuple[float, list[Answer]] | None = None) -> LoadResult:
    """`alone`: answer_alone's result, if it ran earlier (on another server); it counts against
    `time_limit` too."""
    import httpx

    result = LoadResult(len(prompts), clients, new_tokens, time_limit)
    if alone is None:
        alone = answer_alone(url, prompts, new_tokens, time_limit=time_limit, request_seconds=request_seconds, transport=transport)
        if alone is None:
            result.timed_out = True
            return result
    result.sequential_s, answers_alone = alone
    left = time_limit - result.sequential_s
    try:
        result.concurrent_s, together = asyncio.run(asyncio.wait_for(
            drive(url, prompts, clients, new_tokens, request_seconds=min(request_seconds, left), transport=transport), left))
    except (asyncio.TimeoutError, TimeoutError, ValueError):  # ValueError: no time left at all
        result.timed_out = True
        return result
    # an answer is its text and its prompt's length: a swap between two prompts shows even where
    # their greedy texts happen to agree
    expected = [(a.text, a.body["usage"]["prompt_tokens"]) if a.ok else None for a in answers_alone]
    result.distinct_sequential_texts = len({e[0] for e in expected if e is not None})
    ok = [a for a in together if a.ok]
    result.answered = len(ok)
    result.failed = len(together) - len(ok)
    result.errors = [f"prompt {a.index}: status {a.status} {a.error}" for a in together if not a.ok][:3]
    result.errors += [f"alone, prompt {a.index}: status {a.status} {a.error}" for a in answers_alone if not a.ok][:3]
    result.unique_ids = len({a.body["id"] for a in ok})
    result.equal_to_sequential = sum(1 for a in ok if expected[a.index] == (a.text, a.body["usage"]["prompt_tokens"]))
    result.wrong_length = sum(1 for a in ok if a.completion_tokens != new_tokens)

    async def health() -> bool:
        async with httpx.AsyncClient(timeout=30, trust_env=False, transport=transport) as client:
            return (await client.get(url + "/health")).status_code == 200

    try:
        result.healthy_after = asyncio.run(health())
    except (httpx.HTTPError, OSError):
        result.healthy_after = False
    return result


# ---------------------------------------------------------------------------------------- report
def command_line(args: argparse.Namespace) -> str:
    return ("python -m benchmarks.serve_bench" + (" --quick" if args.quick else "") + (" --tiny" if args.tiny else "")
            + (f" --repeats {args.repeats}" if args.repeats != 1 else "")
            + (f" --max-num-seqs {args.max_num_seqs}" if args.max_num_seqs else "")
            + (" --no-shared-rows" if args.no_shared_rows else "") + (" --no-load-test" if args.no_load_test else ""))


def report(args: argparse.Namespace, plan: Plan, levels: Sequence[Level], load: LoadResult | None, notes: Sequence[str]) -> str:
    model = "tiny preset (2 layers, 32 wide), real vocabulary" if args.tiny else "random weights of the BioGPT 347M shapes"
    lines = [
        f"Machine: {environment()}",
        f"Command: `{command_line(args)}`",
        f"Model: {model}, fp32, CPU; prompts: real BC5CDR titles + abstracts; greedy, exactly {plan.new_tokens} new tokens "
        f"a request. Ours: `biogpt serve --max-num-seqs N` (N in the table); baseline: transformers `generate` per "
        f"request in FastAPI's thread pool under uvicorn. {args.repeats} run(s) of each level, ours and the baseline "
        f"alternating; latency = one request, sent to answered.",
        "",
        "| concurrent clients | requests | ours: --max-num-seqs | ours: completion tokens/s, median (min–max) "
        "| baseline: tokens/s | ours ÷ baseline | ours: p50 / p90 latency, s | baseline: p50 / p90 latency, s |",
        "|---|---|---|---|---|---|---|---|",
        *[level.row() for level in levels],
        "",
        *[f"- {n}" for n in notes],
    ]
    if load is not None:
        lines.append(f"- {load.line()}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[list[Level], LoadResult | None, list[str]]:
    """Ours is started with --max-num-seqs = the level's clients (or --max-num-seqs for all);
    then, unless --no-shared-rows, the smaller levels again against the largest level's server
    (one server sized for the largest load, as a deployment runs it; ours only, the ratio to
    the same level's baseline runs). The load test runs on that last server."""
    plan = QUICK if args.quick else FULL
    docs, where = load_documents()
    notes: list[str] = []
    largest = max(c for c, _ in plan.levels)
    levels: list[Level] = []
    load: LoadResult | None = None
    queue = max(256, plan.load_requests)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        path = Path(tmp) / "biogpt-random"
        make_checkpoint(path, args.tiny)
        prompts = abstract_prompts(docs, max(n for _, n in plan.levels))
        ours: Server | None = None
        baseline: Server | None = None
        try:
            baseline = Server("baseline", baseline_command(path), BASELINE_READY)
            _, first = asyncio.run(drive(baseline.url, prompts[:1], 1, plan.new_tokens, request_seconds=plan.request_seconds))
            check_answers(first, plan.new_tokens, "baseline")  # its warm-up

            def ours_with(rows: int) -> dict[str, str]:
                nonlocal ours
                if ours is None or ours.rows != rows:  # type: ignore[attr-defined]
                    if ours is not None:
                        stop_ours(ours, notes)
                        ours = None
                    ours = Server("ours", ours_command(path, rows, queue), OURS_READY)
                    ours.rows = rows  # type: ignore[attr-defined]
                    _, warm = asyncio.run(drive(ours.url, prompts[:1], 1, plan.new_tokens, request_seconds=plan.request_seconds))
                    check_answers(warm, plan.new_tokens, "ours")
                return {"ours": ours.url, "baseline": baseline.url}  # type: ignore[union-attr]

            load_prompts = short_prompts(docs, plan.load_requests)
            alone, alone_rows = None, 0
            for clients, n in plan.levels:
                rows = args.max_num_seqs or clients
                level = measure_level(ours_with(rows), prompts[:n], Level(clients, n, rows), plan, args.repeats)
                levels.append(level)
                print(level.row(), file=sys.stderr, flush=True)
                if rows == 1 and not args.no_load_test and not alone_rows:
                    # the load test's reference answers, while a one-row server runs: each request alone
                    alone = answer_alone(ours.url, load_prompts, plan.load_new_tokens,  # type: ignore[union-attr]
                                         time_limit=plan.load_seconds, request_seconds=plan.request_seconds)
                    alone_rows = 1
            shared_rows = args.max_num_seqs or largest
            if not args.no_shared_rows:
                for level in list(levels):
                    if level.rows != shared_rows:
                        again = Level(level.clients, level.requests, shared_rows, baseline=level.baseline)
                        measure_level(ours_with(shared_rows), prompts[: level.requests], again, plan, args.repeats, sides=("ours",))
                        levels.append(again)
                        print(again.row(), file=sys.stderr, flush=True)
            same = sum(o == b for level in levels for o, b in zip(level.ours.texts, level.baseline.texts))
            total = sum(level.requests for level in levels)
            notes.append(f"Prompts: BC5CDR test titles + abstracts from {where}, {_token_lengths(path, prompts)} tokens; "
                         f"level n takes the first n.")
            notes.append(f"Greedy texts identical between ours and the baseline: {same}/{total} (last run of each row).")
            if len(levels) > len(plan.levels):
                notes.append(f"Rows with --max-num-seqs {shared_rows} below the first {len(plan.levels)}: the same level's "
                             "baseline runs, ours measured again on one server sized for the largest level.")
            if not args.no_load_test:
                load_rows = max(shared_rows, plan.load_clients)
                if alone is None and alone_rows:  # past the time limit already
                    load = LoadResult(plan.load_requests, plan.load_clients, plan.load_new_tokens, plan.load_seconds, timed_out=True)
                else:
                    alone_rows = alone_rows or load_rows
                    load = load_test(ours_with(load_rows)["ours"], load_prompts, plan.load_clients, plan.load_new_tokens,
                                     time_limit=plan.load_seconds, request_seconds=plan.request_seconds, alone=alone)
                notes.append(f"Load test servers: the answers alone from `--max-num-seqs {alone_rows}`, the concurrent ones "
                             f"from `--max-num-seqs {load_rows}`.")
                print(load.line(), file=sys.stderr, flush=True)
        finally:
            if ours is not None:
                stop_ours(ours, notes)
            if baseline is not None:
                baseline.stop()
    return levels, load, notes


def stop_ours(server: Server, notes: list[str]) -> None:
    status = server.stop()
    if status != 0:
        notes.append(f"`biogpt serve` exited {status} after SIGTERM (expected 0); its last lines: "
                     + " | ".join(line.strip() for line in server.lines[-3:]))


def _token_lengths(path: Path, prompts: Sequence[str]) -> str:
    from biogpt.model import BioGptTokenizer

    tok = BioGptTokenizer.from_pretrained(str(path))
    n = sorted(len(tok(p)["input_ids"]) for p in prompts)
    return f"{n[0]}–{n[-1]} (median {statistics.median(n):.0f})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests and new tokens (smoke run)")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset instead of the 347M shapes (smoke run)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each level, ours and the baseline alternating (default 1: two cores)")
    parser.add_argument("--max-num-seqs", type=int, default=0, help="ours' rows for every level (default: each level's client count)")
    parser.add_argument("--no-shared-rows", action="store_true", help="skip the smaller levels against the largest level's server")
    parser.add_argument("--no-load-test", action="store_true", help="skip the load test")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="write the table to this file (replacing it)")
    parser.add_argument("--baseline-server", metavar="DIR", help=argparse.SUPPRESS)  # the baseline's subprocess
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.baseline_server:
        serve_baseline(args.baseline_server)
        return 0
    plan = QUICK if args.quick else FULL
    levels, load, notes = run(args)
    table = report(args, plan, levels, load, notes)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({
            "command": command_line(args), "machine": environment(), "plan": asdict(plan),
            "levels": [{"clients": lv.clients, "requests": lv.requests, "max_num_seqs": lv.rows, "ratio": lv.ratio, "ours": lv.ours.summary() | {"throughput": lv.ours.throughput},
                        "baseline": lv.baseline.summary() | {"throughput": lv.baseline.throughput}} for lv in levels],
            "load_test": (asdict(load) | {"passed": load.passed}) if load else None, "notes": notes}, indent=2))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0 if load is None or load.passed else 1


if __name__ == "__main__":
    sys.exit(main())
