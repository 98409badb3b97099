"""The BioGPT core: configuration, tokenizer, models, generation and checkpoint I/O.

Depends only on torch, safetensors and (in the tokenizer) sacremoses, so it runs where the
CLI's other dependencies are absent.
"""

from .config import PRESETS, BioGptConfig
from .errors import (
    BioGptError,
    CheckpointError,
    ConfigError,
    InvalidOptionError,
    ModelNotFoundError,
    UnsafeCheckpointError,
    VocabularyError,
)
from .kv_cache import KVCache
from .modeling import (
    BioGptForCausalLM,
    BioGptForSequenceClassification,
    BioGptForTokenClassification,
    BioGptModel,
)
from .tokenizer import BatchEncoding, BioGptTokenizer

__all__ = [
    "PRESETS",
    "BatchEncoding",
    "BioGptConfig",
    "BioGptError",
    "BioGptForCausalLM",
    "BioGptForSequenceClassification",
    "BioGptForTokenClassification",
    "BioGptModel",
    "KVCache",
    "BioGptTokenizer",
    "CheckpointError",
    "ConfigError",
    "InvalidOptionError",
    "ModelNotFoundError",
    "UnsafeCheckpointError",
    "VocabularyError",
]
