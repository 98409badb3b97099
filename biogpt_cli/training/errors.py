"""Errors of the training library (no torch: the CLI imports them to pick exit codes)."""

from __future__ import annotations

from biogpt.model.errors import BioGptError


class TrainingError(BioGptError):
    """Training cannot start or go on as asked: its options, output directory or checkpoint are
    not usable (a usage error, exit 2). The message names the file or option to fix. Problems of
    the training *data* (bytes that are not UTF-8, a malformed line, an entity outside its text,
    no documents) are not TrainingErrors but `biogpt.model.errors.InputDataError` (with
    `biogpt.tasks.TaskDataError`, a subclass of it, for a task's files): a data error, exit 1,
    as in every other command."""


class TrainingInterrupted(TrainingError):
    """SIGTERM/SIGINT during training: a checkpoint was written and the run stopped; the
    message says where, so the run can be continued with resume. `signum` is the signal."""

    def __init__(self, message: str, *, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
