"""Every command under every fault a user or a machine can cause (README, "Exit codes" and
"Files beside an output"): a full disk, a signal, gzip and bad bytes in every input option,
corrupt models and states, paths of the wrong kind. Each asserts one line on stderr starting
`biogpt:`, the documented exit code, no traceback, nothing half-written under a final name and
no temporary file left.

Most faults run in-process (`biogpt.main.main` with captured output): a full disk is the
process's file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so every write past the limit
fails with EFBIG exactly as a full disk fails with ENOSPC), plus a real 64 KiB tmpfs where the
machine lets a test mount one. Signals need a process of their own.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from biogpt.model import BioGptConfig, BioGptForSequenceClassification, BioGptTokenizer
from tests.faults import file_size_limit, temporaries
from tests.helpers import ENV, FIXTURES, command, tiny_lm

pytestmark = pytest.mark.usefixtures("one_thread")

NER_FIXTURE = FIXTURES / "ner" / "bc5cdr_titles.jsonl"
TASKS = FIXTURES / "tasks"
DOCS = [f"Patient {i} received aspirin and developed gastric bleeding." for i in range(6)]


# ============================================================================ running
@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `biogpt ARGS` in this process: (exit status, stdout, stderr)."""
    from biogpt.main import main

    def run(*args: object) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def one_line(result: Result, code: int, *needles: str) -> str:
    """The run failed with `code` and said so in one line naming each of `needles`."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == code, result.err
    assert len(lines) == 1, result.err
    assert lines[0].startswith("biogpt: "), lines[0]
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ============================================================================ models and inputs
@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("tiny", id2label={0: "negative", 1: "positive"})
    path = tmp_path_factory.mktemp("classifier")
    BioGptForSequenceClassification(cfg).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path


@pytest.fixture(scope="module")
def lm_pair(tmp_path_factory) -> tuple[Path, Path]:
    """Two checkpoints of one tiny model with the real vocabulary (average-checkpoints' input)."""
    root = tmp_path_factory.mktemp("pair")
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    for seed in (0, 1):
        tiny_lm(seed=seed, vocab_size=42384).save_pretrained(root / f"c{seed}", tokenizer=tok)
    return root / "c0", root / "c1"


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder holding the inputs; outputs go to `out/` so leftovers are easy to see."""
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    (tmp_path / "docs.txt").write_text("".join(t + "\n" for t in DOCS))
    (tmp_path / "qa.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "question": "Does aspirin cause bleeding?", "context": t}) + "\n" for i, t in enumerate(DOCS[:3])))
    (tmp_path / "corpus.txt").write_text("".join(t + "\n" for t in DOCS * 4))
    (tmp_path / "cls.jsonl").write_text("".join(json.dumps({"text": t, "label": "positive" if i % 2 else "negative"}) + "\n"
                                               for i, t in enumerate(DOCS)))
    shutil.copy(NER_FIXTURE, tmp_path / "ner.jsonl")
    shutil.copy(FIXTURES / "io" / "sample.pubtator", tmp_path / "docs.pubtator")
    hoc = (TASKS / "HoC" / "train.tsv").read_text().splitlines()[:4]
    (tmp_path / "hoc.tsv").write_text("".join(line + "\n" for line in hoc))
    (tmp_path / "hoc_preds.jsonl").write_text("".join(json.dumps({"id": str(i), "output": "empty"}) + "\n" for i in range(4)))
    pmids = [line.split("|", 1)[0] for line in (tmp_path / "docs.pubtator").read_text().splitlines() if "|t|" in line]
    (tmp_path / "ner_preds.jsonl").write_text("".join(json.dumps({"id": p, "entities": []}) + "\n" for p in pmids))
    (tmp_path / "out").mkdir()
    return tmp_path


# Each writing command: (argv, the final output it writes). `M` holds the models.
@dataclass
class Models:
    lm: Path
    tagger: Path
    finetuned: Path
    classifier: Path
    pair: tuple[Path, Path]


@pytest.fixture
def models(model_dir, tagger, finetuned, classifier, lm_pair) -> Models:
    return Models(model_dir, tagger, finetuned, classifier, lm_pair)


def writing_commands(m: Models, w: Path) -> dict[str, tuple[list[object], Path]]:
    out = w / "out"
    return {
        "generate": (["generate", w / "docs.jsonl", "-m", m.lm, "--max-new-tokens", "4", "--format", "jsonl", "-o", out / "g.jsonl"],
                     out / "g.jsonl"),
        "tag": (["tag", w / "docs.txt", "-m", m.tagger, "-o", out / "t.jsonl"], out / "t.jsonl"),
        "classify": (["classify", w / "docs.txt", "-m", m.classifier, "-o", out / "c.jsonl"], out / "c.jsonl"),
        "extract-relations": (["extract-relations", w / "docs.txt", "--task", "ddi", "-m", m.finetuned, "--max-new-tokens", "6",
                               "-o", out / "r.jsonl"], out / "r.jsonl"),
        "qa": (["qa", w / "qa.jsonl", "-m", m.finetuned, "-o", out / "a.jsonl"], out / "a.jsonl"),
        "eval-metrics": (["eval", "hoc", "--data", w / "hoc.tsv", "--predictions", w / "hoc_preds.jsonl", "-o", out / "m.json"],
                         out / "m.json"),
        "eval-lm": (["eval", "lm", w / "corpus.txt", "-m", m.lm, "-o", out / "lm.json"], out / "lm.json"),
        "data": (["data", "ner-from-pubtator", w / "docs.pubtator", "-o", out / "ner.jsonl"], out / "ner.jsonl"),
        "data-sample": (["data", "sample", "pubmedqa", "-o", out / "qs"], out / "qs"),
        "convert": (["convert", m.finetuned, out / "hf"], out / "hf"),
        "average-checkpoints": (["average-checkpoints", *m.pair, "-o", out / "avg"], out / "avg"),
        "train": (["train", "ner", w / "ner.jsonl", "--from-scratch", "tiny", "--max-steps", "2", "--device", "cpu",
                   "-o", out / "run"], out / "run"),
    }


JOURNALLED = {"generate", "tag", "classify", "extract-relations", "qa"}
COMMANDS = ["generate", "tag", "classify", "extract-relations", "qa", "eval-metrics", "eval-lm", "data",
            "data-sample", "convert", "average-checkpoints", "train"]


def _complete_model_dirs(folder: Path) -> None:
    """No model folder under `folder` holds a config without its weights (or the reverse)."""
    for config in folder.rglob("config.json"):
        assert any(config.parent.glob("*.safetensors")), f"{config.parent}: config.json without weights"
    for weights in folder.rglob("*.safetensors"):
        assert (weights.parent / "config.json").exists(), f"{weights.parent}: weights without config.json"


# ============================================================================ full disk
@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("limit", [1, 4096])
def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing_half_written(cli, models, work, name, limit):
    argv, final = writing_commands(models, work)[name]
    # training also warns that its feature cache cannot be written (a cache: the run goes on)
    quiet = ["-q"] if name == "train" else []
    with file_size_limit(limit):
        result = cli(*quiet, *argv)
    if result.code == 0:  # everything it writes fitted under the limit (a metrics file of 4 KiB)
        assert limit > 1 and final.exists()
        return
    line = one_line(result, 1, "file too large")
    assert final.name in line, line
    assert temporaries(work) == []
    if name == "train":  # checkpoints are kept for --resume; a model folder is whole or absent
        _complete_model_dirs(final)
    else:
        assert not final.exists(), f"{final} left under its final name"
    if name in JOURNALLED:  # what was finished is kept for --resume, which completes the output
        resumed = cli(*argv, "--resume")
        assert resumed.code == 0, resumed.err
        reference = work / "out" / "reference"
        clean = cli(*[reference if a == final else a for a in argv])
        assert clean.code == 0, clean.err
        assert _records(final) == _records(reference)
        assert sorted(p.name for p in final.parent.iterdir()) == sorted([final.name, "reference"])


def _records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row.pop("tokens_per_second", None)
        row.get("provenance", {}).pop("seconds", None)
    return rows


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB file system (skipped where the machine does not let a test mount one)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.parametrize("name", ["generate", "convert", "data"])
def test_a_real_full_disk_says_no_space_left(cli, models, work, small_disk, name):
    argv, final = writing_commands(models, work)[name]
    target = small_disk / final.name
    if name == "data":  # enough output to overflow 64 KiB
        text = (FIXTURES / "io" / "sample.pubtator").read_text()
        blocks = [b for b in text.split("\n\n") if b.strip()]
        many = "".join(b.replace(b.split("|", 1)[0], str(100000 + k * 10 + j)) + "\n\n"
                       for k in range(200) for j, b in enumerate(blocks))
        (work / "docs.pubtator").write_text(many)
    if name == "generate":
        (work / "docs.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": DOCS[i % 6]}) + "\n" for i in range(1000)))
    argv = [target if a == final else a for a in argv]
    result = cli(*argv)
    one_line(result, 1, str(target), "no space left on device")
    assert not target.exists()
    assert temporaries(small_disk) == []


# ============================================================================ paths of the wrong kind
def test_an_output_folder_is_a_usage_error_even_with_force(cli, models, work):
    for argv in (["generate", work / "docs.jsonl", "-m", models.lm, "-o", work / "out", "--force"],
                 ["eval", "hoc", "--data", work / "hoc.tsv", "--predictions", work / "hoc_preds.jsonl", "-o", work / "out", "--force"],
                 ["data", "ner-from-pubtator", work / "docs.pubtator", "-o", work / "out", "--force"]):
        one_line(cli(*argv), 2, str(work / "out"), "is a directory")


def test_inputs_of_the_wrong_kind_are_usage_errors(cli, models, work):
    one_line(cli("generate", work / "docs.jsonl", "-m", work / "docs.txt"), 2, str(work / "docs.txt"))
    one_line(cli("eval", "hoc", "--data", work / "hoc.tsv", "--predictions", work / "out"), 2, str(work / "out"), "directory")
    one_line(cli("generate", work / "missing.jsonl", "-m", models.lm), 2, "missing.jsonl")
    kind = one_line(cli("generate", work / "docs.jsonl", "-m", models.tagger), 2, "tag")
    assert str(models.tagger) in kind or "token" in kind.lower()


def test_a_device_output_is_written_as_it_comes_with_no_journal(cli, models, work, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = cli("generate", work / "docs.jsonl", "-m", models.lm, "--max-new-tokens", "2", "-o", fifo, "--force")
    assert result.code == 0, result.err
    assert len(reader.communicate(timeout=60)[0].splitlines()) == len(DOCS)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pipe")) == ["pipe"]


def test_a_complete_run_leaves_only_its_output(cli, models, work):
    argv, final = writing_commands(models, work)["generate"]
    assert cli(*argv, "--keep-going", "--errors", work / "out" / "errors.jsonl").code == 0
    assert sorted(p.name for p in final.parent.iterdir()) == ["errors.jsonl", "g.jsonl"]
    assert oct(final.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    kept = cli(*argv, "--force", "--keep-journal")
    assert kept.code == 0
    assert sorted(p.name for p in final.parent.iterdir()) == ["errors.jsonl", "g.jsonl", "g.jsonl.biogpt-run.idx",
                                                               "g.jsonl.biogpt-run.json"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", ["convert", "average-checkpoints", "train", "data-sample"])
def test_every_file_written_has_the_ordinary_mode(cli, models, work, name):
    argv, final = writing_commands(models, work)[name]
    assert cli(*argv).code == 0
    expected = 0o666 & ~_umask()
    modes = {str(p.relative_to(final)): p.stat().st_mode & 0o777 for p in final.rglob("*") if p.is_file()}
    assert modes and all(mode == expected for mode in modes.values()), modes


# ============================================================================ gzip and bad bytes
# every option that reads a file: (argv with INPUT where the file goes, the file it reads)
def reading_commands(m: Models, w: Path) -> dict[str, tuple[list[object], Path]]:
    return {
        "generate": (["generate", "INPUT", "-m", m.lm, "--max-new-tokens", "2"], w / "docs.jsonl"),
        "tag": (["tag", "INPUT", "-m", m.tagger], w / "docs.txt"),
        "classify": (["classify", "INPUT", "-m", m.classifier], w / "docs.txt"),
        "extract-relations": (["extract-relations", "INPUT", "--task", "ddi", "-m", m.finetuned, "--max-new-tokens", "2"],
                              w / "docs.txt"),
        "qa": (["qa", "INPUT", "-m", m.finetuned], w / "qa.jsonl"),
        "eval --data": (["eval", "hoc", "--data", "INPUT", "--predictions", w / "hoc_preds.jsonl"], w / "hoc.tsv"),
        "eval --predictions": (["eval", "hoc", "--data", w / "hoc.tsv", "--predictions", "INPUT"], w / "hoc_preds.jsonl"),
        "eval ner --data": (["eval", "ner", "--data", "INPUT", "--predictions", w / "ner_preds.jsonl"], w / "docs.pubtator"),
        "eval lm": (["eval", "lm", "INPUT", "-m", m.lm], w / "corpus.txt"),
        "data": (["data", "ner-from-pubtator", "INPUT"], w / "docs.pubtator"),
        "train ner": (["train", "ner", "INPUT", "--from-scratch", "tiny", "--max-steps", "1", "--device", "cpu", "-o", w / "out" / "run"],
                      w / "ner.jsonl"),
        "train classify": (["train", "classify", "INPUT", "--from-scratch", "tiny", "--max-steps", "1", "--device", "cpu",
                            "-o", w / "out" / "run"], w / "cls.jsonl"),
        "train lm": (["train", "lm", "INPUT", "--from-scratch", "tiny", "--max-steps", "1", "--device", "cpu",
                      "-o", w / "out" / "run"], w / "corpus.txt"),
    }


READERS = ["generate", "tag", "classify", "extract-relations", "qa", "eval --data", "eval --predictions", "eval ner --data",
           "eval lm", "data", "train ner", "train classify", "train lm"]


def _with_input(argv: list[object], path: Path) -> list[object]:
    return [path if a == "INPUT" else a for a in argv]


def _stable(out: str) -> str:
    """stdout without what differs between two runs of the same input (timings, file names)."""
    try:
        whole = json.loads(out)  # a metrics object (eval): its provenance names the input file
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        whole.pop("provenance", None)
        return json.dumps(whole, sort_keys=True)
    rows = []
    for line in out.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            rows.append(line)
            continue
        if isinstance(row, dict):
            row.pop("tokens_per_second", None)
            row.pop("provenance", None)
            if isinstance(row.get("id"), str) and ":" in row["id"]:  # a line reader's id is file:line
                row["id"] = row["id"].rsplit(":", 1)[-1]
        rows.append(json.dumps(row, sort_keys=True))
    return "\n".join(rows)


@pytest.mark.parametrize("name", READERS)
def test_a_gzip_input_reads_as_the_plain_file(cli, models, work, name):
    argv, plain = reading_commands(models, work)[name]
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    first = cli(*_with_input(argv, plain))
    assert first.code == 0, first.err
    if name.startswith("train"):
        shutil.rmtree(work / "out" / "run")
    second = cli(*_with_input(argv, packed))
    assert second.code == 0, second.err
    assert _stable(second.out) == _stable(first.out)


@pytest.mark.parametrize("name", READERS)
def test_bytes_that_are_not_utf8_name_file_and_line(cli, models, work, name):
    argv, plain = reading_commands(models, work)[name]
    lines = plain.read_bytes().splitlines(keepends=True)
    bad = plain.with_name("bad-" + plain.name)
    bad.write_bytes(lines[0] + lines[1][:2] + b"\xff" + lines[1][2:] + b"".join(lines[2:]))
    one_line(cli(*_with_input(argv, bad)), 1, f"{bad}:2", "UTF-8")
    assert temporaries(work) == []


@pytest.mark.parametrize("name", READERS)
def test_a_binary_file_is_one_line_naming_it(cli, models, work, name):
    argv, plain = reading_commands(models, work)[name]
    binary = plain.with_name("binary-" + plain.name)
    binary.write_bytes(bytes(range(256)) * 8)
    one_line(cli(*_with_input(argv, binary)), 1, str(binary))


def test_keep_going_skips_and_counts_deep_nesting_surrogates_and_binary_files(cli, models, work):
    folder = work / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text(
        json.dumps({"id": "ok1", "text": DOCS[0]}) + "\n"
        + "[" * 200_000 + "]" * 200_000 + "\n"
        + '{"id": "lone", "text": "a \\ud800 surrogate"}\n'
        + json.dumps({"id": "ok2", "text": DOCS[1]}) + "\n")
    (folder / "b.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "c.jsonl").write_text(json.dumps({"id": "ok3", "text": DOCS[2]}) + "\n")
    errors = work / "out" / "errors.jsonl"
    result = cli("-q", "generate", folder, "-m", models.lm, "--max-new-tokens", "2", "--format", "jsonl", "--keep-going", "--errors", errors,
                 "-o", work / "out" / "g.jsonl")
    assert result.code == 0, result.err
    assert [r["id"] for r in _records(work / "out" / "g.jsonl")] == ["ok1", "ok2", "ok3"]
    failures = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(failures) == 3 and any("b.bin" in f["location"] for f in failures)
    stopped = cli("generate", folder, "-m", models.lm, "--max-new-tokens", "2")
    one_line(stopped, 1, "a.jsonl:2")


# ============================================================================ corrupt models and states
def _corrupt_copy(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(os.urandom(len(data)) if how == "random" else data[: len(data) // 2])
    return dst


@pytest.mark.parametrize("how", ["random", "truncated"])
def test_a_corrupt_safetensors_file_is_one_line_for_every_command(cli, models, work, tmp_path, how):
    lm = _corrupt_copy(models.lm, tmp_path / "bad-lm", how)
    tagger = _corrupt_copy(models.tagger, tmp_path / "bad-tagger", how)
    for argv in (["generate", work / "docs.jsonl", "-m", lm],
                 ["tag", work / "docs.txt", "-m", tagger],
                 ["eval", "lm", work / "corpus.txt", "-m", lm],
                 ["convert", lm, work / "out" / "hf"],
                 ["average-checkpoints", lm, models.pair[0], "-o", work / "out" / "avg"],
                 ["train", "ner", work / "ner.jsonl", "-m", lm, "--max-steps", "1", "--device", "cpu", "-o", work / "out" / "run"]):
        one_line(cli(*argv), 1, "corrupt or unsafe checkpoint", str(lm if lm in argv else tagger))
    assert not (work / "out" / "hf").exists() and not (work / "out" / "avg").exists()
    assert temporaries(work) == []


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("state", ["garbage", "unsafe"])
def test_a_corrupt_or_unsafe_resume_state_is_one_line(cli, work, state):
    run = work / "out" / "run"
    argv = ["train", "ner", work / "ner.jsonl", "--from-scratch", "tiny", "--max-steps", "2", "--save-steps", "1",
            "--device", "cpu", "-o", run]
    assert cli(*argv).code == 0
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    target = checkpoint / "trainer_state.pt"
    if state == "garbage":
        target.write_bytes(b"not a torch file at all")
    else:
        torch.save({"x": _Evil()}, target)
    line = one_line(cli(*argv, "--resume-from", checkpoint, "--max-steps", "3"), 1, str(target), "corrupt or unsafe checkpoint")
    assert "weights_only" not in line


def test_a_corrupt_fairseq_checkpoint_is_one_line(cli, models, work, tmp_path):
    bad = tmp_path / "fairseq"
    shutil.copytree(models.finetuned, bad)
    (bad / "checkpoint.pt").write_bytes(b"\x80\x02garbage" * 10)
    one_line(cli("convert", bad, work / "out" / "hf"), 1, "corrupt or unsafe checkpoint")
    assert not (work / "out" / "hf").exists() and temporaries(work) == []


# ============================================================================ signals
def _spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen(command(*[str(a) for a in args]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=ENV, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_run_says_how_to_resume_and_resume_completes(models, work, sig, code, word):
    many = work / "many.jsonl"
    many.write_text("".join(json.dumps({"id": f"d{i}", "text": DOCS[i % 6]}) + "\n" for i in range(40)))
    out = work / "out" / "g.jsonl"
    argv = ["generate", many, "-m", models.lm, "--max-new-tokens", "8", "-b", "1", "--format", "jsonl", "-o", out]
    rng = random.Random(int(sig))
    proc = _spawn(*argv)
    partial = out.with_name(out.name + ".partial")
    _wait_for(lambda: partial.exists() and partial.stat().st_size > 0, proc)
    time.sleep(rng.random() * 0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal landed: nothing to check
        pytest.skip("the run finished before the signal")
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [f"biogpt: {word}; rerun with --resume to continue"]
    assert not out.exists() and temporaries(work) == []
    resumed = subprocess.run(command(*[str(a) for a in argv], "--resume"), capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["id"] for r in _records(out)] == [f"d{i}" for i in range(40)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convert", "average-checkpoints", "data", "eval-metrics", "data-sample"])
def test_a_signal_at_any_moment_leaves_the_output_whole_or_absent(models, work, name):
    argv, final = writing_commands(models, work)[name]
    rng = random.Random(name)
    for attempt in range(3):
        proc = _spawn(*argv, *(["--force"] if final.exists() else []))
        time.sleep(rng.random() * 1.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        # -SIGTERM: the signal came before the entry point installed its handler (the default
        # action applies while Python starts; nothing has been written then)
        assert proc.returncode in (0, 143, -signal.SIGTERM), err
        if proc.returncode == 143:
            assert err.strip().splitlines() == ["biogpt: terminated"], err
        assert temporaries(work) == []
        _complete_model_dirs(work / "out")


@pytest.mark.slow
def test_sigkill_leaves_no_half_file_and_the_next_run_sweeps_its_temporary(work):
    text = (FIXTURES / "io" / "sample.pubtator").read_text()
    blocks = [b for b in text.split("\n\n") if b.strip()]
    big = work / "big.pubtator"
    with big.open("w") as fh:
        for k in range(3000):
            for j, b in enumerate(blocks):
                fh.write(b.replace(b.split("|", 1)[0], str(1_000_000 + k * 10 + j)) + "\n\n")
    out = work / "out" / "ner.jsonl"
    proc = _spawn("data", "ner-from-pubtator", big, "-o", out)
    _wait_for(lambda: any(p.name.endswith(".tmp") for p in out.parent.iterdir()), proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert not out.exists() or out.read_text().endswith("\n")
    rerun = subprocess.run(command("data", "ner-from-pubtator", str(big), "-o", str(out), "--force"),
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(work) == []
    assert sum(1 for _ in out.open()) == 3000 * len(blocks)


@pytest.mark.slow
def test_sigterm_during_training_checkpoints_and_says_resume(work):
    run = work / "out" / "run"
    argv = ["train", "ner", work / "ner.jsonl", "--from-scratch", "tiny", "--max-steps", "5000", "--device", "cpu", "-o", run]
    proc = _spawn(*argv)
    _wait_for(lambda: (run / "metrics.jsonl").exists(), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biogpt: interrupted") and "--resume" in lines[0], err
    _complete_model_dirs(run)
    assert temporaries(work) == []
