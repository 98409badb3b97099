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
