"""`--resume`: a run killed at any moment (SIGKILL) and resumed ends with every input id
exactly once, in input order, equal to an uninterrupted run; a resume with other input or
options is refused. End to end with the installed `biogpt` and a tiny model."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest


from tests.helpers import ENV, biogpt, command, records

N = 24








@pytest.fixture()
def prompts(tmp_path) -> Path:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Patient {i} received aspirin and"}) + "\n" for i in range(N)))
    return src




def gen_args(model_dir: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--input", str(src), "-o", str(out), "--format", "jsonl", "-b", "1", "-m", str(model_dir),
            "--max-new-tokens", "12", *extra]


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_at_random_moments_then_resumed_equals_an_uninterrupted_run(model_dir, prompts, tmp_path):
    reference = tmp_path / "reference.jsonl"
    assert biogpt(*gen_args(model_dir, prompts, reference)).returncode == 0
    expected = records(reference)
    assert [r["id"] for r in expected] == [f"d{i}" for i in range(N)]

    out = tmp_path / "out.jsonl"
    rng = random.Random(1234)
    kills = 0
    for attempt in range(5):
        args = gen_args(model_dir, prompts, out, *(["--resume"] if attempt else []))
        proc = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        target = lines_in(out) + rng.randint(1, 5)
        deadline = time.monotonic() + 120
        while proc.poll() is None and lines_in(out) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.05)  # land anywhere: between records, mid-write, mid-journal
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
        proc.stderr.close()
        if proc.returncode == 0:
            break
    assert kills >= 1
    final = biogpt(*gen_args(model_dir, prompts, out, "--resume"))
    assert final.returncode == 0, final.stderr
    got = records(out)
    assert [r["id"] for r in got] == [f"d{i}" for i in range(N)]
    assert got == expected
    # resuming a finished run does nothing
    again = biogpt(*gen_args(model_dir, prompts, out, "--resume"))
    assert again.returncode == 0 and records(out) == expected


def test_half_written_last_line_is_repaired_in_text_format(model_dir, prompts, tmp_path):
    ref, out = tmp_path / "ref.txt", tmp_path / "out.txt"
    base = ["generate", "--input", str(prompts), "--format", "text", "-b", "1", "-m", str(model_dir), "--max-new-tokens", "4"]
    assert biogpt(*base, "-o", str(ref)).returncode == 0
    assert biogpt(*base, "-o", str(out), "--keep-journal").returncode == 0
    # simulate a kill after 5 items: journal with 5 finished items plus half a line, the unfinished
    # output (OUT.partial) with half a record
    journal = out.with_name(out.name + ".biogpt-run.idx")
    kept = journal.read_text().splitlines()[:5]
    journal.write_text("\n".join(kept) + "\n5\t9")
    end = int(kept[-1].split("\t")[1])
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(out.read_bytes()[: end + 7])
    out.unlink()
    result = biogpt(*base, "-o", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == ref.read_text()
    assert not partial.exists() and not journal.exists(), "a complete run leaves only its output"


def test_resume_with_different_options_or_input_is_refused(model_dir, prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    # --keep-journal keeps the run record of a complete run, so a resume can still be checked
    assert biogpt(*gen_args(model_dir, prompts, out, "--limit", "3", "--keep-journal")).returncode == 0
    before = out.read_bytes()
    changed = biogpt(*gen_args(model_dir, prompts, out, "--limit", "3", "--resume", "--max-new-tokens", "7"))
    assert changed.returncode == 2 and "--resume refused" in changed.stderr and "max_new_tokens" in changed.stderr
    prompts.write_text(prompts.read_text() + json.dumps({"id": "extra", "text": "More"}) + "\n")
    edited = biogpt(*gen_args(model_dir, prompts, out, "--limit", "3", "--resume"))
    assert edited.returncode == 2 and "changed since the first run" in edited.stderr
    assert out.read_bytes() == before
    stdout = biogpt("generate", "--input", str(prompts), "-m", str(model_dir), "--resume")
    assert stdout.returncode == 2 and "--resume needs -o FILE" in stdout.stderr
    # a file under the final name is complete: --resume leaves it alone
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("precious\n")
    untouched = biogpt(*gen_args(model_dir, prompts, foreign, "--resume"))
    assert untouched.returncode == 0 and foreign.read_text() == "precious\n"
    stray = tmp_path / "stray.jsonl"
    stray.with_name("stray.jsonl.partial").write_text("precious\n")
    refused = biogpt(*gen_args(model_dir, prompts, stray, "--resume"))
    assert refused.returncode == 2 and "no run record" in refused.stderr
    assert stray.with_name("stray.jsonl.partial").read_text() == "precious\n" and not stray.exists()


def test_failed_documents_are_not_retried_on_resume(model_dir, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text('{"id": "a", "text": "Aspirin is"}\n{not json\n{"id": "c", "text": "The p53 gene"}\n')
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    args = gen_args(model_dir, src, out, "--keep-going", "--errors", str(errors))
    assert biogpt(*args).returncode == 0
    again = biogpt(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert [r["id"] for r in records(out)] == ["a", "c"]
    assert len(errors.read_text().splitlines()) == 1  # appended to, not rewritten; nothing redone
