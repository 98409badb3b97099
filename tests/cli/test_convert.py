"""`biogpt convert --task/--setting`: only what the task commands can read back is recorded."""

from __future__ import annotations

import pytest

from biogpt._common import UserError
from biogpt.commands.convert import check_task

from tests.helpers import tiny_lm
from tests.helpers import biogpt


@pytest.mark.parametrize("name", ["foo", "ner", "custom"])
def test_task_error_lists_only_the_tasks_convert_records(name):
    with pytest.raises(UserError, match="expected one of bc5cdr, kd-dti, ddi, pubmedqa, hoc$"):
        check_task(name, None)


def test_setting_is_checked_against_the_task_and_stored_canonical():
    with pytest.raises(UserError, match="--setting foo: expected reasoning-required or reasoning-free"):
        check_task("pubmedqa", "foo")
    for task in (None, "bc5cdr"):
        with pytest.raises(UserError, match="only --task pubmedqa has settings"):
            check_task(task, "reasoning-free")
    task, setting = check_task("pubmedqa", "rf")
    assert task.name == "pubmedqa" and setting == "reasoning-free"


def test_cli_refuses_an_unknown_setting_before_writing(tmp_path):
    src, dst = tiny_lm().save_pretrained(tmp_path / "src"), tmp_path / "c8"
    result = biogpt("convert", str(src), str(dst), "--task", "pubmedqa", "--setting", "foo")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--setting foo" in result.stderr
    assert not dst.exists()


def test_convert_writes_ordinary_modes_and_on_a_full_disk_leaves_nothing(tmp_path):
    """The converted folder appears with all its files or not at all; its files get the mode an
    ordinary open() gives (safetensors alone writes 0600); a full disk is one line naming DST."""
    import os
    import stat

    from biogpt.commands.convert import convert_checkpoint

    from tests.faults import run_with_file_size_limit, temporaries
    from tests.helpers import write_fairseq_dir

    src = write_fairseq_dir(tmp_path / "fs", tiny_lm(vocab_size=42393), dict_entries=42380, cfg_style="argparse")
    dst = tmp_path / "out" / "hf"
    result = run_with_file_size_limit(["convert", str(src), str(dst)], 200_000)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"biogpt: error: {dst}: file too large"]
    assert not dst.exists() and temporaries(tmp_path) == []
    old = os.umask(0o022)
    try:
        convert_checkpoint(str(src), dst, task="bc5cdr")
    finally:
        os.umask(old)
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= {p.name for p in dst.iterdir()}
    assert {stat.S_IMODE(p.stat().st_mode) for p in dst.iterdir()} == {0o644}
    assert temporaries(tmp_path) == []
