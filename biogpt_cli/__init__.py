"""biogpt: biomedical text mining with BioGPT.

One import namespace over three folders: the core network, tokenizer and checkpoints are
`biogpt.model` (model/), the paper's tasks are `biogpt.tasks` (tasks/), and this package holds the
command line (`biogpt.main`, one module per command in `biogpt.commands`) and the library code
around the core (training, batch runs).

The seed's six classes are exported from the top, as transformers users write them:

    from biogpt import BioGptTokenizer, BioGptForCausalLM

They are resolved on first access (PEP 562), so `import biogpt` and `biogpt --help` stay fast:
neither imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model.lazy import lazy_exports

# the checkpoint every command and training run uses unless told otherwise (-m)
DEFAULT_MODEL = "microsoft/biogpt"

# pyproject.toml's version, written here rather than read with importlib.metadata, whose import
# costs ~35 ms of every `biogpt --help` (tests/test_package.py keeps the two equal)
__version__ = "0.2.0"

# name -> the module that defines it, imported only when the name is first used
_LAZY = {
    "BioGptConfig": "biogpt.model.config",
    "BioGptTokenizer": "biogpt.model.tokenizer",
    "BioGptModel": "biogpt.model.modeling",
    "BioGptForCausalLM": "biogpt.model.modeling",
    "BioGptForTokenClassification": "biogpt.model.modeling",
    "BioGptForSequenceClassification": "biogpt.model.modeling",
}

__all__ = [
    "DEFAULT_MODEL", "__version__", "BioGptConfig", "BioGptTokenizer", "BioGptModel", "BioGptForCausalLM",
    "BioGptForTokenClassification", "BioGptForSequenceClassification",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from .model.config import BioGptConfig
    from .model.modeling import (
        BioGptForCausalLM,
        BioGptForSequenceClassification,
        BioGptForTokenClassification,
        BioGptModel,
    )
    from .model.tokenizer import BioGptTokenizer


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
