"""Errors of the training library (no torch: the CLI imports them to pick exit codes)."""

from __future__ import annotations

from biogpt.model.errors import BioGptError


class TrainingError(BioGptError):
    """Training cannot start or go on as asked: its data, options, output directory or
    checkpoint are not usable. The message names the file or option to fix."""


class TrainingInterrupted(TrainingError):
    """SIGTERM/SIGINT during training: a checkpoint was written and the run stopped; the
    message says where, so the run can be continued with resume."""
