"""The BioGPT core: configuration, tokenizer, models, generation and checkpoint I/O.

Depends only on torch, safetensors and (in the tokenizer) sacremoses, so it runs where the
CLI's other dependencies are absent. Names are resolved on first access (PEP 562): importing
`biogpt.model.errors` (as the command line does to report errors) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

_LAZY = {
    "PRESETS": ".config",
    "BioGptConfig": ".config",
    "BioGptError": ".errors",
    "CheckpointError": ".errors",
    "ConfigError": ".errors",
    "InputDataError": ".errors",
    "InvalidOptionError": ".errors",
    "ModelNotFoundError": ".errors",
    "OutputError": ".errors",
    "PathError": ".errors",
    "ShapeMismatchError": ".errors",
    "UnsafeCheckpointError": ".errors",
    "VocabularyError": ".errors",
    "KVCache": ".kv_cache",
    "BioGptModel": ".modeling",
    "BioGptForCausalLM": ".modeling",
    "BioGptForTokenClassification": ".modeling",
    "BioGptForSequenceClassification": ".modeling",
    "BatchEncoding": ".tokenizer",
    "BioGptTokenizer": ".tokenizer",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .config import PRESETS, BioGptConfig
    from .errors import (
        BioGptError,
        CheckpointError,
        ConfigError,
        InputDataError,
        InvalidOptionError,
        ModelNotFoundError,
        OutputError,
        PathError,
        ShapeMismatchError,
        UnsafeCheckpointError,
        VocabularyError,
    )
    from .kv_cache import KVCache
    from .modeling import BioGptForCausalLM, BioGptForSequenceClassification, BioGptForTokenClassification, BioGptModel
    from .tokenizer import BatchEncoding, BioGptTokenizer


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
