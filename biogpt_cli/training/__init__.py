"""Training and fine-tuning as a library, without the CLI: the loop (`Trainer`), how options
resolve (`resolve_options`), the data readers and feature builders, and one function per kind
of run (`train_ner`, `train_classify`, `train_lm`, `train_generative`) that `biogpt train`
wraps.

    from biogpt.training import Trainer, TrainingArgs

Names are exported lazily (PEP 562): importing this package imports no torch, so the CLI can
read its option defaults while `biogpt --help` stays fast.
"""

from __future__ import annotations

from biogpt.model.lazy import lazy_exports

from .errors import TrainingError, TrainingInterrupted

_EXPORTS = {
    "Trainer": ".trainer", "TrainingArgs": ".trainer", "Display": ".trainer", "latest_checkpoint": ".trainer",
    "lr_factor": ".trainer", "dist_info": ".trainer",
    "DEFAULTS": ".options", "resolve_options": ".options",
    "train_ner": ".jobs", "train_classify": ".jobs", "train_lm": ".jobs", "train_generative": ".jobs",
}

__all__ = ["TrainingError", "TrainingInterrupted", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
