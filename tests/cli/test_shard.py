"""Sharded inference: `--shard i/N` + `biogpt merge`, and torchrun with 2 CPU processes, give
the same records in the same order as a single-process run (batch size 1, so padding cannot
flip near-tied logits of a random model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from biogpt.io import TsvWriter
from biogpt.runstate import RunState, journal_path, merge_parts, part_path, sidecar_path
from biogpt.model import BioGptTokenizer

from tests.helpers import tiny_lm
from tests.helpers import ENV, biogpt, records

N = 11
# `biogpt merge` through main(), registered here too in case register_all does not list it yet
MERGE = (
    "import sys\n"
    "from biogpt import main as m\n"
    "from biogpt.commands import merge\n"
    "if 'merge' not in {c.name for c in m.app.registered_commands}: merge.register(m.app)\n"
    "sys.exit(m.main(sys.argv[1:]))\n"
)


def biogpt_merge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", MERGE, "merge", *args], capture_output=True, text=True, env=ENV, timeout=120)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-biogpt") / "lm"  # not "model": `python -m` puts the cwd on sys.path
    tiny_lm(vocab_size=42384).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path


@pytest.fixture()
def prompts(tmp_path) -> Path:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Case {i}: the patient developed"}) + "\n" for i in range(N)))
    return src


def gen(model_dir: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--input", str(src), "-o", str(out), "--format", "jsonl", "-b", "1", "-m", str(model_dir),
            "--max-new-tokens", "6", *extra]


def test_shards_by_hand_then_merge_equal_a_single_run(model_dir, prompts, tmp_path):
    single, sharded = tmp_path / "single.jsonl", tmp_path / "sharded.jsonl"
    assert biogpt(*gen(model_dir, prompts, single)).returncode == 0
    for i in range(3):
        result = biogpt(*gen(model_dir, prompts, sharded, "--shard", f"{i}/3"))
        assert result.returncode == 0, result.stderr
        part = part_path(sharded, i, 3)
        assert [r["id"] for r in records(part)] == [f"d{k}" for k in range(i, N, 3)]
    incomplete = biogpt_merge(str(part_path(sharded, 0, 3)), str(part_path(sharded, 1, 3)), "-o", str(sharded))
    assert incomplete.returncode == 2 and "parts 0..2 of 3" in incomplete.stderr
    nowhere = biogpt_merge(*(str(part_path(sharded, i, 3)) for i in range(3)), "-o", str(tmp_path / "nodir" / "m.jsonl"))
    assert nowhere.returncode == 2 and nowhere.stderr.strip() == f"biogpt: error: {tmp_path / 'nodir'}: no such directory for the output file m.jsonl"
    merged = biogpt_merge(*(str(part_path(sharded, i, 3)) for i in (2, 0, 1)), "-o", str(sharded))
    assert merged.returncode == 0, merged.stderr
    assert records(sharded) == records(single)
    # the merged output is a complete resumable output: resuming it does nothing
    resumed = biogpt(*gen(model_dir, prompts, sharded, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert records(sharded) == records(single)


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "biogpt", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd)


def test_torchrun_two_processes_equal_a_single_run(model_dir, prompts, tmp_path):
    single, out = tmp_path / "single.jsonl", tmp_path / "out.jsonl"
    assert biogpt(*gen(model_dir, prompts, single)).returncode == 0
    result = torchrun(*gen(model_dir, prompts, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert records(out) == records(single)
    assert not list(tmp_path.glob("out.jsonl.part-*")), "rank 0 removes the parts after merging"
    again = torchrun(*gen(model_dir, prompts, out, "--resume"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert records(out) == records(single)


def test_torchrun_resume_continues_every_shard(model_dir, prompts, tmp_path):
    single, out = tmp_path / "single.jsonl", tmp_path / "out.jsonl"
    assert biogpt(*gen(model_dir, prompts, single)).returncode == 0
    # as if killed: shard 0 finished 2 items (and half a third), shard 1 none
    assert biogpt(*gen(model_dir, prompts, out, "--shard", "0/2", "--limit", "5")).returncode == 0
    part0 = part_path(out, 0, 2)
    part0.rename(part0.with_name(part0.name + ".partial"))
    car = json.loads(sidecar_path(part0).read_text())
    car["complete"], car["options"]["limit"] = False, None
    sidecar_path(part0).write_text(json.dumps(car))
    journal = journal_path(part0).read_text().splitlines()
    journal_path(part0).write_text("\n".join(journal[:2]) + "\n")
    result = torchrun(*gen(model_dir, prompts, out, "--resume"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert records(out) == records(single)


def test_a_failing_rank_fails_the_run(model_dir, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "a", "text": "Aspirin is"}\n{not json\n{"id": "c", "text": "The p53 gene"}\n{"id": "d", "text": "x"}\n')
    out = tmp_path / "out.jsonl"
    result = torchrun(*gen(model_dir, src, out), cwd=tmp_path)
    assert result.returncode != 0
    assert not out.exists()


def _write_tsv_run(out: Path, rows: list[dict], shard: str | None, *, stop_after: int | None = None) -> None:
    """Drive RunState directly with the TSV writer (the commands writing TSV need fine-tuned task models)."""
    run = RunState.start(command="test", output=out, output_format="tsv", inputs=None, resume=False, shard=shard, force=True)
    sink = run.open()
    writer = run.adopt(TsvWriter(sink))  # type: ignore[arg-type]
    for n, row in enumerate(run.track(run.select(rows))):
        if row["rows"]:
            writer.write(row)
        if stop_after is not None and n + 1 >= stop_after:
            break
    sink.close()
    if stop_after is None:
        run.finish()


def test_tsv_parts_merge_with_one_header_and_resume_keeps_it(tmp_path):
    rows = [{"rows": [{"id": f"d{k}", "rel": f"r{j}"} for j in range(k % 3)]} for k in range(9)]
    single, sharded = tmp_path / "single.tsv", tmp_path / "sharded.tsv"
    _write_tsv_run(single, rows, None)
    for i in range(2):
        _write_tsv_run(sharded, rows, f"{i}/2")
    merge_parts([part_path(sharded, i, 2) for i in range(2)], sharded)
    assert sharded.read_text() == single.read_text()
    assert single.read_text().count("id\trel") == 1
    # resume of a TSV output: the header is not repeated
    partial = tmp_path / "partial.tsv"
    _write_tsv_run(partial, rows, None, stop_after=4)
    run = RunState.start(command="test", output=partial, output_format="tsv", inputs=None, resume=True, shard=None, force=False)
    sink = run.open()
    writer = run.adopt(TsvWriter(sink))  # type: ignore[arg-type]
    for row in run.track(run.select(rows)):
        if row["rows"]:
            writer.write(row)
    sink.close()
    run.finish()
    assert partial.read_text() == single.read_text()


INFO = MERGE.replace("merge", "info")


def test_info_reports_device_versions_and_cache():
    """`biogpt info` (kept here with the other new commands): versions without importing transformers."""
    result = subprocess.run([sys.executable, "-c", INFO, "info", "--json"], capture_output=True, text=True,
                            env={**ENV, "HF_HOME": "/tmp/hf-home-test"}, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["torch"] and data["biogpt-cli"] and data["default_device"] in ("cpu", "cuda", "mps")
    assert set(data["cuda"]) >= {"available", "bf16", "devices"} and "available" in data["mps"]
    assert data["hf_cache"] == "/tmp/hf-home-test/hub"
    check = subprocess.run([sys.executable, "-c", "import sys; from biogpt.commands import info; info.collect(); "
                            "print('transformers' in sys.modules)"], capture_output=True, text=True, env=ENV, timeout=120)
    assert check.stdout.strip() == "False", check.stderr
