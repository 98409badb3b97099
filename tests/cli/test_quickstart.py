"""The README's quick start, run line by line as a user would (offline, in an empty folder), and
the shipped PubMedQA sample it starts from (`biogpt data sample pubmedqa -o DIR`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from biogpt.tasks.pubmedqa import LABELS, PubMedQATask, official_splits

from tests.helpers import ENV, ROOT, SHARED, biogpt

SAMPLE = {"train.json": 113, "valid.json": 25, "test.json": 50}


def quickstart_lines() -> list[str]:
    """The commands of the README's first code block under "## Quick start"."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block under ## Quick start"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_sample_writes_the_files_and_never_overwrites(tmp_path):
    out = biogpt("data", "sample", "pubmedqa", "-o", "qs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    qs = tmp_path / "qs"
    assert sorted(p.name for p in qs.iterdir()) == sorted([*SAMPLE, "README.md", "LICENSE"])
    assert "MIT License" in (qs / "LICENSE").read_text(encoding="utf-8")
    assert sum(p.stat().st_size for p in qs.iterdir()) < 1_000_000
    task = PubMedQATask()
    ids = set()
    for name, n in SAMPLE.items():  # what `train qa` and `eval pubmedqa --data` read
        examples = task.load(qs / name, name.removesuffix(".json"))
        assert len(examples) == n and all(ex.gold in LABELS for ex in examples)
        ids |= {ex.id for ex in examples}
    assert len(ids) == sum(SAMPLE.values())  # the three sets are disjoint

    (qs / "test.json").write_text("mine", encoding="utf-8")
    again = biogpt("data", "sample", "pubmedqa", "-o", "qs", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (qs / "test.json").read_text(encoding="utf-8") == "mine"
    forced = biogpt("data", "sample", "pubmedqa", "-o", "qs", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert len(json.loads((qs / "test.json").read_text(encoding="utf-8"))) == SAMPLE["test.json"]

    unknown = biogpt("data", "sample", "no-such-sample", "-o", "x", cwd=tmp_path)
    assert unknown.returncode == 2 and "pubmedqa" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not (SHARED / "PubMedQA" / "ori_pqal.json").is_file(), reason="needs ../shared/data/PubMedQA")
def test_sample_is_unchanged_records_of_the_official_splits(tmp_path):
    """What the sample's README.md states: every k-th question of the official fold-0 train (k=4)
    and valid (k=2) parts and of the 500-question test split (k=10), records unchanged."""
    path = SHARED / "PubMedQA" / "ori_pqal.json"
    original = json.loads(path.read_text(encoding="utf-8"))
    splits = official_splits(original, path)
    assert biogpt("data", "sample", "pubmedqa", "-o", "qs", cwd=tmp_path).returncode == 0
    for name, step in (("train", 4), ("valid", 2), ("test", 10)):
        sample = json.loads((tmp_path / "qs" / f"{name}.json").read_text(encoding="utf-8"))
        assert list(sample) == splits[name][::step]
        assert all(sample[pmid] == original[pmid] for pmid in sample)


@pytest.mark.slow
def test_readme_quickstart_runs_offline(tmp_path):
    """Exactly the README's quick-start lines, through bash, offline, in an empty folder: each
    exits 0, eval's metrics come out, qa answers."""
    lines = quickstart_lines()
    assert lines[0].startswith("biogpt data sample pubmedqa")
    env = {**ENV, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for line in lines:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{line}\n{run.stderr[-3000:]}"
        outputs.append(run)

    (eval_line,) = [line for line in lines if " eval pubmedqa " in line]
    target = re.search(r"(?:-o|--output) (\S+)", eval_line)
    text = (tmp_path / target.group(1)).read_text(encoding="utf-8") if target else outputs[lines.index(eval_line)].stdout
    metrics = json.loads(text)
    assert metrics["task"] == "pubmedqa" and metrics["counts"]["documents"] == SAMPLE["test.json"]
    for key in ("accuracy", "macro_f1"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])

    (qa_line,) = [line for line in lines if line.startswith("biogpt qa ")]
    answer = json.loads(outputs[lines.index(qa_line)].stdout)
    assert answer["answer"] in LABELS and set(answer["probabilities"]) == set(LABELS)
