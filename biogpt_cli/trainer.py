"""The training loop's former home: `biogpt.training` is where it lives now. Kept so that
`from biogpt.trainer import Trainer` (tests, benchmarks) still works."""

from .training.errors import TrainingError, TrainingInterrupted
from .training.trainer import STATE_FILE, Trainer, TrainingArgs, dist_info, latest_checkpoint, lr_factor

__all__ = ["STATE_FILE", "Trainer", "TrainingArgs", "TrainingError", "TrainingInterrupted", "dist_info", "latest_checkpoint", "lr_factor"]
