"""Side-by-side speed of biogpt-cli and transformers on the same random weights of the real shapes.

    python -m benchmarks.run --suite cpu [--repeats 3] [--quick] [--json out.json] [--markdown BENCHMARKS.md]

Method: both implementations load the same safetensors directory (random weights, BioGPT 347M
shapes) in one process; each measurement alternates ours / theirs (A B A B ...) and reports
the median over the repeats with the spread (min-max). Ratios are ours ÷ transformers
throughput measured in the same run; no absolute time is asserted anywhere.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()  # before torch's import: the GPU suite's 5 minutes count from here

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    name: str
    unit: str
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.theirs)

    def row(self) -> str:
        def fmt(xs: list[float]) -> str:
            return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"

        return f"| {self.name} | {self.unit} | {fmt(self.ours)} | {fmt(self.theirs)} | **{self.ratio:.2f}×** | {self.note} |"


def interleave(ours: Callable[[], float], theirs: Callable[[], float], repeats: int, result: Result) -> Result:
    ours()  # warm-up of each (allocator, oneDNN kernels)
    theirs()
    for _ in range(repeats):
        result.ours.append(ours())
        result.theirs.append(theirs())
    return result


def synced_seconds(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call. GPU work is asynchronous: synchronise before reading the
    clock on both sides."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def tokens_per_second(fn: Callable[[], torch.Tensor], new_tokens: int, rows: int = 1) -> float:
    seconds, out = synced_seconds(fn)
    assert out.shape[0] >= rows
    return new_tokens * rows / seconds


# ---------------------------------------------------------------------------------------- setup
def make_checkpoint(directory: Path) -> None:
    from biogpt.model import BioGptConfig, BioGptForCausalLM, BioGptTokenizer

    torch.manual_seed(0)
    model = BioGptForCausalLM(BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model.save_pretrained(directory, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))


def abstract_prompt(tokenizer, length: int) -> torch.Tensor:
    """A real BC5CDR abstract (shipped fixture) cut to `length` tokens."""
    docs = json.loads((ROOT / "tests" / "fixtures" / "bc5cdr_test_sample.json").read_text(encoding="utf-8"))
    text = " ".join(d["title"] + " " + d["abstract"] for d in docs.values())
    return tokenizer(text, return_tensors="pt").input_ids[:, :length]


LOAD_SCRIPT = """
import sys, time, torch
def peak_kb():
    # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
impl, path = sys.argv[1], sys.argv[2]
if impl == "ours":
    from biogpt.model import BioGptForCausalLM
else:
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import BioGptForCausalLM
before = peak_kb()
start = time.perf_counter()
m = BioGptForCausalLM.from_pretrained(path)
with torch.no_grad():
    total = sum(float(p.float().sum()) for p in m.parameters())
seconds = time.perf_counter() - start
after = peak_kb()
size = sum(p.numel() * p.element_size() for p in {id(p): p for p in m.parameters()}.values())
print((after - before) * 1024 / size, seconds)
"""


def load_rss(path: Path, impl: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, impl, str(path)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    ratio, seconds = out.stdout.split()
    return float(ratio), float(seconds)


# ---------------------------------------------------------------------------------------- suite
def cpu_suite(repeats: int, quick: bool) -> tuple[list[Result], list[str]]:
    # One function: the rows share one checkpoint and reference model, timed in a fixed order.
    import transformers

    from biogpt.model import BioGptForCausalLM, BioGptTokenizer
    from biogpt.model.fast.quantize import quantize_int8

    transformers.logging.set_verbosity_error()
    notes: list[str] = []
    results: list[Result] = []
    new = 16 if quick else 64
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "biogpt-random"
        make_checkpoint(path)

        # loading: peak RSS increase / weights size (fresh processes, alternating)
        res = Result("load: RSS increase ÷ weights size (lower is better)", "×")
        times = Result("load: seconds to a usable model (lower is better)", "s")
        for _ in range(max(1, repeats - 1)):
            for impl, target in (("ours", res.ours), ("theirs", res.theirs)):
                ratio, seconds = load_rss(path, impl)
                target.append(ratio)
                (times.ours if impl == "ours" else times.theirs).append(seconds)
        res.note = "ratio column: theirs ÷ ours would be the gain; here ours ÷ theirs"
        results += [res, times]

        tok = BioGptTokenizer.from_pretrained(path)
        ours = BioGptForCausalLM.from_pretrained(path).eval()
        ref = transformers.BioGptForCausalLM.from_pretrained(str(path)).eval()

        def run_ours(model, ids, mask=None, **kw):
            return lambda: tokens_per_second(lambda: model.generate(ids, attention_mask=mask, min_new_tokens=kw["max_new_tokens"], **kw), kw["max_new_tokens"], ids.shape[0])

        def run_ref(ids, mask=None, **kw):
            mask = torch.ones_like(ids) if mask is None else mask

            def call():
                with torch.inference_mode():
                    return ref.generate(ids, attention_mask=mask, pad_token_id=1, min_new_tokens=kw["max_new_tokens"], **kw)

            return lambda: tokens_per_second(call, kw["max_new_tokens"], ids.shape[0])

        short = tok("COVID-19 is a disease caused by", return_tensors="pt").input_ids[:, :8]
        results.append(interleave(run_ours(ours, short, max_new_tokens=new), run_ref(short, max_new_tokens=new), repeats,
                                  Result(f"greedy, batch 1, 8-token prompt, {new} new, fp32", "tokens/s")))

        prompt = abstract_prompt(tok, 135)
        beam_new = 8 if quick else 32
        results.append(interleave(run_ours(ours, prompt, max_new_tokens=beam_new, num_beams=5), run_ref(prompt, max_new_tokens=beam_new, num_beams=5),
                                  repeats, Result(f"beam 5, 135-token abstract prompt, {beam_new} new, fp32", "tokens/s")))

        batch_new = 8 if quick else 32
        long = abstract_prompt(tok, 1024)
        ids8 = torch.stack([long[0, i * 20 : i * 20 + 300] for i in range(8)])
        ids8[:, 0] = 2
        results.append(interleave(run_ours(ours, ids8, max_new_tokens=batch_new), run_ref(ids8, max_new_tokens=batch_new), repeats,
                                  Result(f"greedy, batch 8, 300-token prompts, {batch_new} new, fp32", "tokens/s")))

        half = BioGptForCausalLM.from_pretrained(path, dtype="bfloat16").eval()
        results.append(interleave(run_ours(half, short, max_new_tokens=new), run_ref(short, max_new_tokens=new), repeats,
                                  Result(f"greedy, batch 1, ours bfloat16 vs transformers fp32, {new} new", "tokens/s")))
        del half
        q = quantize_int8(BioGptForCausalLM.from_pretrained(path))
        results.append(interleave(run_ours(q, short, max_new_tokens=new), run_ref(short, max_new_tokens=new), repeats,
                                  Result(f"greedy, batch 1, ours int8 weight-only vs transformers fp32, {new} new", "tokens/s")))
        with torch.inference_mode():
            real = abstract_prompt(tok, 300)
            base = ours(real).logits.float()
            err = float((q(real).logits.float() - base).norm() / base.norm())
            half = BioGptForCausalLM.from_pretrained(path, dtype="bfloat16").eval()
            err16 = float((half(real).logits.float() - base).norm() / base.norm())
        notes.append(f"int8 teacher-forced logits on a real 300-token abstract: relative L2 error {err:.4f} vs fp32 (bf16: {err16:.4f}).")
        del q, half, ref, ours

    try:
        from benchmarks.tokenizer_speed import measure

        tk = measure(repeats)
        res = Result("tokenizer, BC5CDR test abstracts, cold start", "abstracts/s", tk["ours"], tk["theirs"], "identical ids (tests)")
        results.append(res)
    except ImportError as exc:
        notes.append(f"tokenizer benchmark unavailable: {exc}")

    # start-up of the command line (fresh processes; `python -m benchmarks.startup` has every command)
    from benchmarks.startup import BASELINE, measure

    lines = [("--help",), ("generate", "--help")]
    startup = measure(max(repeats, 5), lines)
    for line in lines:
        results.append(Result(f"start-up: `biogpt {' '.join(line)}`, wall (lower is better)", "ms", [1000 * w for w, _ in startup[line]],
                              [1000 * w for w, _ in startup[BASELINE]], "theirs column: `python -c pass`, not transformers"))
    return results, notes


# ---------------------------------------------------------------------------------------- GPU suite
def held_bytes(*holders: torch.nn.Module | torch.optim.Optimizer, device_type: str = "cuda") -> int:
    """Bytes a model (parameters, buffers, gradients) or an optimizer (its state) keeps on the
    device between calls, shared storages counted once: what one side of a row owns while the
    other side is measured."""
    storages: dict[int, int] = {}
    for holder in holders:
        if isinstance(holder, torch.nn.Module):
            tensors = [*holder.parameters(), *(p.grad for p in holder.parameters() if p.grad is not None), *holder.buffers()]
        else:
            tensors = [v for state in holder.state.values() for v in state.values() if torch.is_tensor(v)]
        for t in tensors:
            if t.device.type == device_type:
                storage = t.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def side_peaks(ours: Callable[[], Any], theirs: Callable[[], Any], *, base: int, theirs_held: int) -> tuple[tuple[float, Any], tuple[float, Any]]:
    """((ours' peak GPU memory in GiB, ours' result), (theirs', theirs' result)), one call each.

    Both sides are loaded at once (one process, the same weights), so the allocator's peak
    during a call also holds the other side's model. Each side's figure is that peak less what
    does not belong to it: `base` (allocated before this row's models were loaded) and what the
    other side holds. Theirs holds `theirs_held` (held_bytes of its model, and optimizer when
    training); ours holds what stays allocated after its call besides that (its weights, and its
    static caches and captured graphs' buffers). One call serves both the memory column and the
    agreement check (a batch-1 call of transformers' BioGPT-Large takes ~3 s)."""

    def peak(fn: Callable[[], Any]) -> tuple[int, Any]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(), out

    peak_ours, out_ours = peak(ours)
    ours_held = torch.cuda.memory_allocated() - base - theirs_held
    peak_theirs, out_theirs = peak(theirs)
    return ((peak_ours - base - theirs_held) / 2**30, out_ours), ((peak_theirs - base - ours_held) / 2**30, out_theirs)


def scratch_dir() -> str | None:
    """Where the GPU suite writes its random checkpoints (up to 3 GB, written and read back once
    per model): memory-backed /dev/shm when it has room, else the default temporary directory."""
    import shutil

    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 8 << 30 else None
    except OSError:
        return None


def agreement(ours: torch.Tensor, theirs: torch.Tensor, prompt: int) -> tuple[float, float]:
    """(share of rows with identical new tokens, mean share of new tokens before the first
    difference): reduced precision sums in other orders, so near-ties can flip a token."""
    a, b = ours[:, prompt:].cpu(), theirs[:, prompt:].cpu()
    n = min(a.shape[1], b.shape[1])
    same = a[:, :n] == b[:, :n]
    prefix = same.int().cumprod(1).sum(1).float() / n
    return float(same.all(1).float().mean()), float(prefix.mean())


# b1c: the batch-1 row again with generate(compile_step=True) (torch.compile of the captured
# step, `biogpt generate --compile`), its first call (compilation) timed: 44 s on an H100.
# Run in this order: the targets' rows, then the extras (job: the refill engine's batch job;
# b1c: the batch-1 row's opt-in compiled step).
GPU_PARTS = ("b1", "b32", "beam", "large", "train", "trainer", "job", "b1c")  # the suite: under 5 minutes
# on request (--only ...,largec): BioGPT-Large's row compiled (48 s on an H100; with it the whole
# suite would run ~5 minutes)
EXTRA_GPU_PARTS = ("largec",)


# Wall seconds each part took on a fresh machine, tuning included (BENCHMARKS.md run 3, H200,
# 5 launch configurations a shape: b1 43, b32 17, beam 11, large 41, train 49, b1c 36, job 59;
# run 5, H100, 8-14 configurations a shape plus the dependent-launch round and the attention's
# splits, 5 fused variants timed: b1 66, b32 16, beam 10, large 61, train 60, job 65 with 256
# prompts (128 since: 39 s in run 7, a fresh H200); largec on an H100 (run 2: 48). "train" is
# the training step and biogpt train's rows. A part starts only if its figure fits what is left.
PART_SECONDS = {"b1": 70, "b1c": 40, "b32": 20, "beam": 15, "job": 40, "large": 70, "largec": 50, "train": 65}
SUITE_BUDGET = 285.0  # seconds from the process's start (PROCESS_START): the suite must finish within 5 minutes on one lent GPU


def gpu_suite(
    repeats: int, quick: bool, only: Sequence[str] = GPU_PARTS, *, budget: float = SUITE_BUDGET, started: float | None = None
) -> tuple[list[Result], list[str]]:
    """Ours vs transformers' default generate / eager training on one CUDA device, fp16 inference.
    `only` picks parts (GPU_PARTS) for short checks; the full suite runs them all. The targets'
    rows run first and the extra rows (job, then b1c) last; a part that would not finish within
    `budget` seconds of `started` (a perf_counter reading; default: now; the command line
    passes the process's start, so imports count) by PART_SECONDS is skipped and the notes say
    so, so the suite always ends in time with its tables written."""
    # Long (one function with nested helpers per part) because the parts share the loaded
    # models, the result list, the notes and the time budget; splitting it is future work.
    import transformers

    from biogpt.model import BioGptConfig, BioGptForCausalLM
    from biogpt.model.generation.static import decoders_of
    from biogpt.model.training import TrainStep, adamw

    transformers.logging.set_verbosity_error()
    dev = torch.device("cuda")
    half = torch.float16
    results: list[Result] = []
    notes: list[str] = [f"GPU: {torch.cuda.get_device_name(dev)}; inference in float16 for both; ours decodes through a captured CUDA graph."]
    g = torch.Generator().manual_seed(0)
    timings: list[str] = []  # wall time of each part (the whole suite must fit a lent machine's call)
    suite_start = time.perf_counter() if started is None else started

    def fits(name: str) -> bool:
        left = budget - (time.perf_counter() - suite_start)
        if left >= PART_SECONDS.get(name, 30):
            return True
        notes.append(f"part {name!r} skipped: {left:.0f} s left of the suite's {budget:.0f} s, it takes ~{PART_SECONDS.get(name, 30)} s")
        print(notes[-1], flush=True)
        return False

    def finished() -> tuple[list[Result], list[str]]:
        notes.append(f"wall time per part: {', '.join(timings)}; whole suite {time.perf_counter() - suite_start:.0f} s{' from the process start' if started is not None else ''}")
        return results, notes

    def ids(rows: int, length: int, vocab: int = 42384) -> torch.Tensor:
        out = torch.randint(4, vocab, (rows, length), generator=g)
        out[:, 0] = 2
        return out.to(dev)

    def ours_gen(model, x, **kw):
        return lambda: model.generate(x, min_new_tokens=kw["max_new_tokens"], **kw)

    def fixed_cost(model, x) -> str:
        """What one batch-1 call costs besides its decode steps (prompt pass, set-up, the first
        token): generate with max_new_tokens=1, median of 5."""
        fn = ours_gen(model, x, max_new_tokens=1)
        fn()
        times = [synced_seconds(fn)[0] for _ in range(5)]
        return f"ours' fixed cost per call (prompt pass, set-up, first token; max_new_tokens=1): {statistics.median(times) * 1000:.1f} ms"

    def replay_note(model, label: str) -> None:
        """The captured greedy step's own GPU time (replayed back to back, no host work between):
        what a batch-1 token costs on the GPU, against which the row's tokens/s shows the host's share."""
        decoders = list(decoders_of(model).values())
        dec = decoders[-1] if decoders else None
        if dec is None or dec.graph is None:
            notes.append(f"{label}: the decode step was NOT captured as a CUDA graph (see the log)")
            return
        notes.append(f"{label}: one-time CUDA graph captures (prompt pass, decode step, greedy step; with decode_kernels='auto' the fused steps too): {dec.capture_seconds:.3f} s, first call of a bucket only")
        report = dec.kernel_report
        if report:  # decode_kernels="auto": what it measured, what it kept
            def measured_note(name: str) -> str:
                if name + "_ms" in report:
                    return f"{name} {report[name + '_ms']:.3f} ms (logits vs torch's: relative error {report[name + '_error']:.1e})"
                if name + "_error" in report:
                    return f"{name} not used: logits vs torch's relative error {report[name + '_error']:.1e}"
                return f"{name} failed ({report.get(name + '_failed')})"

            variants = [name.removesuffix("_error").removesuffix("_failed") for name in report if name.endswith(("_error", "_failed"))]
            measured = [f"torch {report['torch_ms']:.3f} ms"] + [measured_note(name) for name in dict.fromkeys(variants)]
            tuned = f"; fused kernels' launch configurations tuned in {report['tune_seconds']:.1f} s" if "tune_seconds" in report else ""
            if "attention_split" in report:
                tuned += f"; Triton attention: {report['attention_split'] or 'the whole span'} columns a program"
            notes.append(f"{label}, batch 1: decode kernels chosen at capture: {report['kernels']}; per replay: {'; '.join(measured)}{tuned}")
        graph = next(iter(dec.greedy_graphs.values()), (dec.graph,))[0]
        with torch.inference_mode():  # the buffers are inference tensors
            dec.write_pos.fill_(0)  # replay from an empty cache so positions stay in bounds
            dec.positions.zero_()
            if hasattr(dec, "cur"):
                dec.cur.fill_(0)
        n = dec.capacity - 1
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(n):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        per_step = begin.elapsed_time(end) / n
        notes.append(f"{label}, batch 1: one graph replay (token choice + decode step) takes {per_step:.3f} ms on the GPU ({1000 / per_step:.0f} steps/s ceiling without host work)")

    def compiled_row(name: str, model, ref_model, x, new: int, *, base: int) -> None:
        """The batch-1 row with the compiled step; its first call (compilation, capture and the
        generation itself) is timed on its own and reported."""
        fn = ours_gen(model, x, max_new_tokens=new, compile_step=True)
        first, _ = synced_seconds(fn)
        extra = f"; ours: compiled step (generate(compile_step=True)), first call {first:.1f} s (compilation + capture + generation)"
        side_by_side(name, fn, ref_gen(ref_model, x, max_new_tokens=new), new, 1, 8, extra, base=base, ref_model=ref_model)

    def ref_gen(model, x, **kw):
        mask = torch.ones_like(x)
        return lambda: model.generate(x, attention_mask=mask, pad_token_id=1, min_new_tokens=kw["max_new_tokens"], **kw)

    @contextlib.contextmanager
    def part(name: str) -> Iterator[None]:
        """A part that fails becomes a note, and the other parts still run: a lent GPU's time is
        scarce, one exception must not cost the whole table."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            notes.append(f"part {name!r} failed: {type(exc).__name__}: {exc}")
            print(notes[-1], flush=True)
            torch.cuda.empty_cache()
        timings.append(f"{name} {time.perf_counter() - start:.0f} s")

    def side_by_side(name: str, ours_fn, ref_fn, new: int, rows: int, prompt: int, extra: str = "", *, base: int, ref_model) -> None:
        """`base`: GPU memory allocated before this row's two models were loaded (see side_peaks)."""
        res = Result(name, "tokens/s")
        interleave(lambda: tokens_per_second(ours_fn, new, rows), lambda: tokens_per_second(ref_fn, new, rows), repeats, res)
        (mem_ours, out_ours), (mem_ref, out_ref) = side_peaks(ours_fn, ref_fn, base=base, theirs_held=held_bytes(ref_model))
        rows_same, prefix = agreement(out_ours, out_ref, prompt)
        res.note = f"peak GPU memory {mem_ours:.2f} vs {mem_ref:.2f} GiB; fp16 agreement: {rows_same:.0%} rows identical, {prefix:.0%} of tokens before a first difference{extra}"
        results.append(res)
        print(res.row(), flush=True)  # as it comes: a run cut short still reports

    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        path = Path(tmp) / "biogpt-random"
        torch.manual_seed(0)
        BioGptForCausalLM(BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(path, tokenizer=False)
        base = torch.cuda.memory_allocated()
        ours = BioGptForCausalLM.from_pretrained(path, dtype=half, device=dev).eval()
        ref = transformers.BioGptForCausalLM.from_pretrained(str(path), dtype=half).to(dev).eval()

        new1 = 64 if quick else 256
        x1 = ids(1, 8)
        if "b1" in only and fits("b1"):
            with part("b1"):
                side_by_side(f"greedy, batch 1, 8-token prompt, {new1} new", ours_gen(ours, x1, max_new_tokens=new1), ref_gen(ref, x1, max_new_tokens=new1), new1, 1, 8, base=base, ref_model=ref)
                replay_note(ours, "347M")  # before fixed_cost: its decoder is the last one used
                notes.append(f"batch 1, 347M: {fixed_cost(ours, x1)}")

        new32 = 32 if quick else 128
        x32 = ids(32, 300)
        if "b32" in only and fits("b32"):
            with part("b32"):
                side_by_side(f"greedy, batch 32, 300-token prompts, {new32} new", ours_gen(ours, x32, max_new_tokens=new32), ref_gen(ref, x32, max_new_tokens=new32), new32, 32, 300, base=base, ref_model=ref)

        newb = 16 if quick else 64
        xb = ids(8, 135)
        if "beam" in only and fits("beam"):
            with part("beam"):
                side_by_side(f"beam 5, batch 8, 135-token prompts, {newb} new", ours_gen(ours, xb, max_new_tokens=newb, num_beams=5), ref_gen(ref, xb, max_new_tokens=newb, num_beams=5), newb, 8, 135, base=base, ref_model=ref)
        large = Path(tmp) / "biogpt-large-random"
        if ("large" in only or "largec" in only) and fits("large" if "large" in only else "largec"):
            with part("large" if "large" in only else "large model set-up"):
                base_large = torch.cuda.memory_allocated()  # the 347M models and their caches stay loaded
                with torch.device(dev):
                    big = BioGptForCausalLM(BioGptConfig.from_preset("biogpt-large", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).to(half).eval()
                big.save_pretrained(large, tokenizer=False)
                big_ref = transformers.BioGptForCausalLM.from_pretrained(str(large), dtype=half).to(dev).eval()
                newl = 32 if quick else 128
                name = f"BioGPT-Large, greedy, batch 1, 8-token prompt, {newl} new"
                if "large" in only:
                    side_by_side(name, ours_gen(big, x1, max_new_tokens=newl), ref_gen(big_ref, x1, max_new_tokens=newl), newl, 1, 8, base=base_large, ref_model=big_ref)
                    replay_note(big, "BioGPT-Large")
                    notes.append(f"batch 1, BioGPT-Large: {fixed_cost(big, x1)}")
                if "largec" in only and fits("largec"):
                    with part("largec"):
                        compiled_row(f"{name}, compiled step", big, big_ref, x1, newl, base=base_large)
                del big, big_ref
                torch.cuda.empty_cache()

        def job_part() -> None:  # a batch job: BC5CDR prompt lengths, outputs of the gold lengths
            from .continuous import make_job, run_continuous, run_static, timed

            n_job = 64 if quick else 128  # 256 until run 5 (65 s of a fresh H100's 5 minutes)
            prompts, targets = make_job(n_job, 42384)

            def theirs_static(x, mask, new):
                return ref.generate(x, attention_mask=mask, pad_token_id=1, max_new_tokens=new, min_new_tokens=new)

            def ours_static(x, mask, new):
                return ours.generate(x, attention_mask=mask, max_new_tokens=new, eos_token_id=[])

            ours_job = lambda: timed(lambda: run_continuous(ours, prompts, targets, 32))  # noqa: E731
            theirs_job = lambda: timed(lambda: run_static(theirs_static, prompts, targets, 32, dev))  # noqa: E731
            res = Result(
                f"batch job: {n_job} BC5CDR-length prompts (mean {statistics.mean(map(len, prompts)):.0f} tokens), "
                f"gold-length outputs (mean {statistics.mean(targets):.1f}, max {max(targets)}), 32 rows",
                "tokens/s",
            )
            interleave(ours_job, theirs_job, repeats, res)
            static_fn = lambda: timed(lambda: run_static(ours_static, prompts, targets, 32, dev))  # noqa: E731
            static_fn()  # warm-up: captures its 4 (rows, capacity) buckets' graphs
            static = statistics.median(static_fn() for _ in range(repeats))
            res.note = (
                f"ours: continuous batching (rows refilled as they end); transformers: length-sorted static batches; "
                f"ours in static batches {static:.1f} tokens/s (continuous ÷ static {statistics.median(res.ours) / static:.2f}×)"
            )
            results.append(res)
            print(res.row(), flush=True)

        def training_parts() -> None:
            # training: forward + backward + clip + AdamW, bf16 autocast, 8 x 512 tokens, dropout 0.1
            torch.manual_seed(0)
            train_path = Path(tmp) / "biogpt-train"
            BioGptForCausalLM(BioGptConfig()).save_pretrained(train_path, tokenizer=False)
            batch = {"input_ids": ids(8, 512)}
            batch["labels"] = batch["input_ids"]
            steps = 5 if quick else 20
            base_train = torch.cuda.memory_allocated()
            ref = transformers.BioGptForCausalLM.from_pretrained(str(train_path)).to(dev).train()
            ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.01)

            def ref_step() -> None:
                transformers_train_step(ref, ref_opt, batch)

            def rate(fn: Callable[[], None]) -> float:
                for _ in range(4):  # warm-up (and, for the graph, capture)
                    fn()
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                torch.cuda.synchronize()
                return steps * batch["input_ids"].numel() / (time.perf_counter() - start)

            variants = [("eager, fused AdamW", False), ("CUDA-graph step, fused AdamW", True)] if "train" in only else []
            for label, graph in variants:
                try:
                    model = BioGptForCausalLM.from_pretrained(train_path, device=dev).train()
                    step = TrainStep(model, adamw(model, lr=1e-4, capturable=graph), graph=graph)

                    def ours_step(step=step) -> None:
                        step(batch)

                    res = Result(f"training step ({label}), bf16 autocast, 8×512 tokens", "tokens/s")
                    interleave(lambda: rate(ours_step), lambda: rate(ref_step), repeats, res)
                    (mem_ours, _), (mem_ref, _) = side_peaks(ours_step, ref_step, base=base_train, theirs_held=held_bytes(ref, ref_opt))
                    res.note = f"peak GPU memory {mem_ours:.2f} vs {mem_ref:.2f} GiB"
                    if graph:
                        res.note += f"; one-time capture {step.capture_seconds:.2f} s"
                    results.append(res)
                    print(res.row(), flush=True)
                    del model, step
                    torch.cuda.empty_cache()
                except Exception as exc:  # report and go on: the other rows still count
                    notes.append(f"training variant {label!r} failed: {type(exc).__name__}: {exc}")
                    print(notes[-1], flush=True)
            del ref, ref_opt
            torch.cuda.empty_cache()
            if "trainer" in only:
                try:
                    results.append(trainer_rows(train_path, dev, repeats, quick))
                    print(results[-1].row(), flush=True)
                except Exception as exc:
                    notes.append(f"trainer row failed: {type(exc).__name__}: {exc}")
                    print(notes[-1], flush=True)

        if ("train" in only or "trainer" in only) and fits("train"):
            with part("train"):
                training_parts()
        # the extra rows last: if time runs short, they are what the budget leaves out. The
        # batch job (continuous batching, what the CLI's batch commands run) before the
        # compiled batch-1 step (opt-in, and no faster than the default fused step since run 3)
        if "job" in only and fits("job"):
            with part("job"):
                job_part()
        if "b1c" in only and fits("b1c"):
            with part("b1c"):
                compiled_row(f"greedy, batch 1, 8-token prompt, {new1} new, compiled step", ours, ref, x1, new1, base=base)
        del ours, ref
        torch.cuda.empty_cache()
    return finished()


def transformers_train_step(model, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference's eager training step, as its users write it: bf16 autocast, backward,
    clipping to 1.0, AdamW. Returns the loss (on the device)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def trainer_rows(train_path: Path, dev: torch.device, repeats: int, quick: bool) -> Result:
    """What `biogpt train` runs on a GPU, on fine-tuning batches of real lengths: 8 rows of
    BC5CDR source + target lengths per batch (6 batches), right-padded to a
    multiple of 64 tokens, the mask dropped (right padding only: causal flash attention), each
    shape's step captured once and replayed (model.training), vs
    transformers' eager step on the same batches padded to their longest row. Both count only
    real tokens; bf16 autocast, dropout 0.1, clipping, AdamW."""
    import transformers

    from benchmarks.continuous import load_lengths
    from biogpt.model import BioGptForCausalLM
    from biogpt.model.training import TrainStep, adamw, drop_right_padding_mask, pad_to_length, padded_length

    g = torch.Generator().manual_seed(1)
    pairs = load_lengths(48)
    batches = []
    for start in range(0, 48, 8):
        lengths = [p + t for p, t in pairs[start : start + 8]]
        width = max(lengths)
        ids = torch.ones((8, width), dtype=torch.long)
        mask = torch.zeros((8, width), dtype=torch.long)
        for row, n in enumerate(lengths):
            ids[row, :n] = torch.randint(4, 42384, (n,), generator=g)
            mask[row, :n] = 1
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    # as biogpt train does on the host: pad to the bucket, drop a right-padding-only mask
    padded = [drop_right_padding_mask(pad_to_length(b, padded_length(b["input_ids"].shape[1], limit=1024), pad_token_id=1)) for b in batches]
    batches = [{k: v.to(dev) for k, v in b.items()} for b in batches]
    padded = [{k: v.to(dev) for k, v in b.items()} for b in padded]
    cycles = 1 if quick else 3

    model = BioGptForCausalLM.from_pretrained(train_path, device=dev).train()
    step = TrainStep(model, adamw(model, lr=1e-4, capturable=True), graph=True)
    ref = transformers.BioGptForCausalLM.from_pretrained(str(train_path)).to(dev).train()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.01)

    def ref_step(batch: dict[str, torch.Tensor]) -> None:
        float(transformers_train_step(ref, ref_opt, batch).detach())  # a training loop reads its loss every step (as biogpt train logs it)

    def ours_step(batch: dict[str, torch.Tensor]) -> None:
        float(step(batch))

    def rate(fn: Callable[[dict[str, torch.Tensor]], None], data: list[dict[str, torch.Tensor]]) -> Callable[[], float]:
        def run() -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(cycles):
                for batch in data:
                    fn(batch)
            torch.cuda.synchronize()
            return cycles * real / (time.perf_counter() - start)

        return run

    for _ in range(2):  # each shape: eager at first use, captured at its second
        for batch in padded:
            ours_step(batch)
    res = Result("biogpt train's step: 6 batches of 8 rows of BC5CDR fine-tuning lengths, bf16 autocast", "real tokens/s")
    interleave(rate(ours_step, padded), rate(ref_step, batches), repeats, res)
    waste = sum(b["input_ids"].numel() for b in padded) / sum(b["input_ids"].numel() for b in batches) - 1
    res.note = (f"ours: {step.shapes} captured shapes ({step.capture_seconds:.2f} s to capture), 64-token buckets "
                f"compute {waste:.0%} more positions than batch-longest padding; mean {real / 48:.0f} real tokens per row")
    del model, step, ref, ref_opt
    torch.cuda.empty_cache()
    return res


def environment() -> str:
    import transformers

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}, {date.today().isoformat()}"
    )


def command_line(args: argparse.Namespace) -> str:
    """The command as run, for the table's header: a table from a partial run (--only, a shorter
    --budget) must say so."""
    gpu = args.suite == "gpu"
    return (
        f"python -m benchmarks.run --suite {args.suite}"
        + (f" --only {args.only}" if gpu and args.only != ",".join(GPU_PARTS) else "")
        + (f" --budget {args.budget:g}" if gpu and args.budget != SUITE_BUDGET else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
        + (" --quick" if args.quick else "")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--only", default=",".join(GPU_PARTS), help=f"gpu suite: comma-separated parts of {','.join(GPU_PARTS + EXTRA_GPU_PARTS)} (default: {','.join(GPU_PARTS)})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=SUITE_BUDGET, help="gpu suite: seconds it may take; parts that would not fit are skipped")
    parser.add_argument("--quick", action="store_true", help="fewer new tokens (smoke run)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="write the table here (e.g. BENCHMARKS.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite == "gpu":
        if not torch.cuda.is_available():
            print("the gpu suite needs a CUDA device", file=sys.stderr)
            return 2
        parts = [p for p in args.only.split(",") if p]
        unknown = sorted(set(parts) - set(GPU_PARTS + EXTRA_GPU_PARTS))
        if unknown:
            parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(GPU_PARTS + EXTRA_GPU_PARTS)}")
        results, notes = gpu_suite(args.repeats, args.quick, parts, budget=args.budget, started=PROCESS_START)
    else:
        results, notes = cpu_suite(args.repeats, args.quick)
    command = command_line(args)
    lines = [
        f"Machine: {environment()}",
        f"Command: `{command}`",
        "",
        "| measurement | unit | ours: median (min–max) | transformers: median (min–max) | ours ÷ transformers | note |",
        "|---|---|---|---|---|---|",
        *[r.row() for r in results],
        "",
        *[f"- {n}" for n in notes],
    ]
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"ratio": r.ratio} for r in results], indent=2))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
