"""Conventions every batch command shares (README, "Conventions shared by every command"),
end to end through the installed `biogpt`: no silent wait on a terminal, --errors checked
before anything is written, a stopped run resumed past its bad document, hints that name
the command's own flags."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, biogpt

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def on_a_terminal(*args: str) -> subprocess.CompletedProcess:
    """`biogpt ARGS` with a terminal (a pseudo-terminal) as stdin and nothing typed."""
    cmd = [str(BIN)] if BIN.exists() else [os.sys.executable, "-m", "biogpt"]
    controller, terminal = pty.openpty()
    try:
        return subprocess.run([*cmd, *args], stdin=terminal, capture_output=True, text=True, env=ENV, timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)


@pytest.mark.parametrize("command", ["qa", "extract-relations --task bc5cdr", "tag", "classify --task hoc"])
def test_batch_commands_do_not_wait_on_a_terminal(finetuned, command):  # noqa: F811
    result = on_a_terminal(*command.split(), "-m", str(finetuned))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"biogpt: error: no input: give FILE arguments, pipe documents in (cat docs.jsonl | biogpt {command.split()[0]})")
    assert len(result.stderr.strip().splitlines()) == 1


def _documents(tmp_path: Path) -> Path:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "a", "text": "Aspirin is"}\n{not json\n{"id": "c", "text": "The p53 gene"}\n')
    return src


def test_a_run_stopped_at_a_bad_document_resumes_past_it_with_keep_going(finetuned, tmp_path):  # noqa: F811
    src, out, errors = _documents(tmp_path), tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    args = ["generate", "--input", str(src), "-o", str(out), "--format", "jsonl", "-m", str(finetuned), "--max-new-tokens", "3"]
    stopped = biogpt(*args)
    assert stopped.returncode == 1 and "docs.jsonl:2: malformed JSON" in stopped.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a"]
    resumed = biogpt(*args, "--resume", "--keep-going", "--errors", str(errors))
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]
    assert [json.loads(line)["location"] for line in errors.read_text().splitlines()] == [f"{src}:2"]


def test_a_refused_errors_file_leaves_nothing_behind(finetuned, tmp_path):  # noqa: F811
    src, out, errors = _documents(tmp_path), tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    errors.write_text("an earlier run's failures\n")
    for command in (["generate", "--input", str(src)], ["extract-relations", "--task", "bc5cdr", str(src)]):
        args = [*command, "-o", str(out), "-m", str(finetuned), "--keep-going"]
        refused = biogpt(*args, "--errors", str(errors))
        assert refused.returncode == 2 and "errors.jsonl (--errors) exists; pass --force" in refused.stderr, refused.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "errors.jsonl"]
        same = biogpt(*args, "--errors", str(out))
        assert same.returncode == 2 and "names the output file too" in same.stderr
        missing = biogpt(*args, "--errors", str(tmp_path / "nodir" / "e.jsonl"))
        assert missing.returncode == 2 and "nodir: no such directory for the --errors file" in missing.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "errors.jsonl"]
    assert errors.read_text() == "an earlier run's failures\n"


def test_qa_hints_name_its_own_flags_and_warn_without_a_long_answer(finetuned, tmp_path):  # noqa: F811
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"id": "e", "q": "Do statins work?", "context": "They do."}) + "\n")
    result = biogpt("qa", str(src), "-m", str(finetuned))
    assert result.returncode == 1 and "field 'question' is missing (fields: id, q, context); pass --question-key" in result.stderr
    assert "--text-key" not in result.stderr
    src.write_text("".join(json.dumps({"id": i, "question": "Do statins work?", "context": "They do."}) + "\n" for i in "ab"))
    free = biogpt("qa", str(src), "-m", str(finetuned), "--setting", "reasoning-free")
    assert free.returncode == 0, free.stderr
    assert free.stderr.count("no long answer") == 1 and "reasoning-free setting" in free.stderr
    required = biogpt("qa", str(src), "-m", str(finetuned), "--setting", "reasoning-required")
    assert required.returncode == 0 and "no long answer" not in required.stderr
