"""The README's "Shell pipelines" examples, run for real through bash with a tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from biogpt.model import BioGptTokenizer

from tests.helpers import tiny_lm

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq (apt-get install jq)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pipes")
    tiny_lm(vocab_size=42384).save_pretrained(work / "lm", tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    (work / "prompts.txt").write_text("".join(f"Aspirin dose {i} causes\n" for i in range(6)))
    return work


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_jq_on_jsonl_output(workdir):
    out = sh("biogpt generate prompts.txt -m lm --format jsonl --max-new-tokens 3 -b 1 | jq -r '[.id, .generated] | @tsv'", workdir)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == [f"prompts.txt:{i}" for i in range(1, 7)]


def test_split_and_run_chunks_in_parallel(workdir):
    script = (
        "rm -rf chunks && mkdir chunks && split -l 2 prompts.txt chunks/part_ && "
        "ls chunks/part_* | xargs -P 2 -I{} biogpt -q generate {} -m lm --format jsonl --max-new-tokens 3 -b 1 -o {}.jsonl && "
        "cat chunks/part_*.jsonl | jq -s length"
    )
    out = sh(script, workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6"


def test_shards_then_merge_equal_one_run(workdir):
    script = (
        "rm -f one.jsonl merged.jsonl merged.jsonl.*; "
        "biogpt -q generate --input prompts.txt -m lm --format jsonl --max-new-tokens 3 -b 1 -o one.jsonl && "
        "for i in 0 1; do biogpt -q generate prompts.txt -m lm --format jsonl --max-new-tokens 3 -b 1 "
        "--shard $i/2 -o merged.jsonl & done; wait && "
        "biogpt merge merged.jsonl.part-0-of-2 merged.jsonl.part-1-of-2 -o merged.jsonl && "
        "diff <(jq -c '[.id, .generated]' one.jsonl) <(jq -c '[.id, .generated]' merged.jsonl)"
    )
    out = sh(script, workdir)
    assert out.returncode == 0, out.stderr + out.stdout
