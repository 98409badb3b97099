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
    # the finished part waits in OUT.partial: nothing incomplete stands under the final name
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and [json.loads(line)["id"] for line in partial.read_text().splitlines()] == ["a"]
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


# ------------------------------------------------------------------ options (README, "Options")
def _commands():
    """(path, click command, context) of the root, every group and every command."""
    import typer

    from biogpt.main import app

    root = typer.main.get_command(app)

    def walk(cmd, path, parent):
        ctx = typer.Context(cmd, info_name=path[-1] if path else "biogpt", parent=parent, **cmd.context_settings)
        yield path, cmd, ctx
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name), ctx)

    return list(walk(root, (), None))


def test_no_short_flag_has_two_meanings_anywhere():
    """`-q` is --quiet before any command, so no command may take `-q` for something else; the
    same for every short flag across all commands (qa's --question and eval's --predictions had
    -q and -p)."""
    meanings: dict[str, set[str]] = {}
    for path, cmd, ctx in _commands():
        for param in cmd.get_params(ctx):
            if param.param_type_name != "option":
                continue
            longs = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
            for short in (o for o in param.opts if not o.startswith("--")):
                meanings.setdefault(short, set()).add(longs[0] if longs else short)
    twice = {short: sorted(longs) for short, longs in meanings.items() if len(longs) > 1}
    assert twice == {}
    assert meanings["-q"] == {"--quiet"} and meanings["-v"] == {"--verbose"} and meanings["-p"] == {"--prompt"}
    assert meanings["-h"] == {"--help"} and meanings["-o"] == {"--output"} and meanings["-m"] == {"--model"}


def test_every_option_has_help_and_says_its_default():
    """Every argument and option of every command has help text; every option that takes a value
    shows its default, or its help says what leaving it out means ("default: ...")."""
    missing, no_default = [], []
    for path, cmd, ctx in _commands():
        for param in cmd.get_params(ctx):
            where = f"biogpt {' '.join(path)} {param.opts[0] if param.param_type_name == 'option' else param.name}"
            if not (getattr(param, "help", None) or "").strip():
                missing.append(where)
                continue
            if param.param_type_name != "option" or param.is_flag or param.count or param.required:
                continue
            record = " ".join(param.get_help_record(ctx) or ())
            if "default" not in record.lower():
                no_default.append(f"{where}: {record}")
    assert missing == []
    assert no_default == []


def _option_help(help_text: str, flag: str) -> str:
    """One option's entry in a command's --help, its lines joined."""
    entry, inside = [], False
    for line in help_text.splitlines():
        if line.startswith("  -"):  # an option's first line
            inside = flag in line.split("<")[0].replace(",", " ").split()
        if inside:
            entry.append(line.strip())
    return " ".join(entry)


def test_the_train_defaults_shown_are_the_ones_training_uses():
    """TRAIN_FLAGS default to None (so --config can set them); their help shows the values
    biogpt.training.resolve_options starts from instead."""
    from biogpt.training.options import DEFAULTS, FROM_SCRATCH_DEFAULTS

    out = biogpt("train", "re", "--help")
    assert out.returncode == 0
    for flag, key in (("--epochs", "epochs"), ("--lr", "lr"), ("--batch-size", "batch_size"), ("--warmup-steps", "warmup_steps"),
                      ("--scheduler", "scheduler"), ("--seed", "seed"), ("--grad-accum", "grad_accum")):
        value = DEFAULTS[key]
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"(default: {shown}" in _option_help(out.stdout, flag), flag
    assert f"with --from-scratch {FROM_SCRATCH_DEFAULTS['epochs']}" in _option_help(out.stdout, "--epochs")
    for sub in ("ner", "classify", "lm", "re", "qa"):
        assert f"  {sub} " in biogpt("train", "--help").stdout


def test_verbose_is_a_counted_flag_without_a_value():
    top = biogpt("--help").stdout
    line = " ".join(top.split("-v, --verbose", 1)[1].split("\n  -q", 1)[0].split())
    assert "<int>" not in line and "INTEGER" not in line and "-vv" in line
    assert biogpt("-v", "models").returncode == 0 and biogpt("-vv", "models").returncode == 0
    wrong = biogpt("-v", "2", "models")
    assert wrong.returncode == 2 and "-v takes no value: repeat it (-vv)" in wrong.stderr and "Traceback" not in wrong.stderr


def test_quiet_eval_prints_nothing_on_stderr(tmp_path: Path):
    """`biogpt -q eval ... -o m.json`: the metrics go to the file, and no table to stderr."""
    from tests.helpers import FIXTURES

    data = FIXTURES / "tasks" / "HoC" / "train.tsv"
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "0", "output": "the type of this document is empty."}) + "\n")
    out = tmp_path / "m.json"
    quiet = biogpt("-q", "eval", "hoc", "--data", str(data), "--predictions", str(preds), "-o", str(out))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == "" and "micro_f1" in json.loads(out.read_text())
    loud = biogpt("eval", "hoc", "--data", str(data), "--predictions", str(preds), "-o", str(tmp_path / "n.json"))
    assert "micro_f1" in loud.stderr


def test_a_json_error_says_at_column_once():
    """json's message "Unterminated string starting at" ends in "at": the column follows it once."""
    from biogpt.tasks.base import MalformedLine, parse_json_line

    with pytest.raises(MalformedLine) as error:
        parse_json_line('{"id": "a", "text": "unterminated')
    assert str(error.value) == "malformed JSON (Unterminated string starting at column 21)"


def test_task_formats_is_cited_where_it_is():
    """README and `--recipe`'s help cite the task formats as docs/TASK_FORMATS.md, which exists."""
    from tests.helpers import ROOT

    assert (ROOT / "docs" / "TASK_FORMATS.md").is_file()
    for text in ((ROOT / "README.md").read_text(encoding="utf-8"), " ".join(biogpt("train", "re", "--help").stdout.split())):
        assert text.count("TASK_FORMATS.md") == text.count("docs/TASK_FORMATS.md") > 0


def test_a_file_given_as_the_model_is_named_as_a_file(tmp_path: Path):
    """`-m notes.txt` (a file, not a model folder): one line saying so, exit 2, in every command
    that takes -m (a file was read as a config.json, or reported as "no such directory")."""
    notes, docs = tmp_path / "notes.txt", tmp_path / "docs.jsonl"
    notes.write_text("not a model\n")
    docs.write_text('{"id": "a", "text": "Aspirin"}\n')
    for command in (["generate", "--prompt", "x"], ["tag", str(docs)], ["classify", str(docs)], ["extract-relations", "--task", "ddi", str(docs)],
                    ["qa", "--question", "q?", "--context", "c"]):
        result = biogpt(*command, "-m", str(notes))
        assert result.returncode == 2, (command, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and "notes.txt: is a file, expected a model folder" in result.stderr, (command, result.stderr)
