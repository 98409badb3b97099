"""What the server serves: one `ServedModel` per `-m`, built by the server before the app.

The HTTP layer never loads anything: model paths are fixed at start (issue 28, security), so a
request can only pick a model by the name it was served under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine

KINDS = ("causal-lm", "token-classification", "sequence-classification")


@dataclass
class ServedModel:
    """One served model. `engine` is None for the head models (tag/classify), which do not
    generate; `task` is the task recorded with the model (its prompt recipe), if any."""

    name: str
    model: Any  # torch.nn.Module
    tokenizer: Any  # BioGptTokenizer
    engine: Engine | None
    kind: str
    task: str | None
    created: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r}, expected one of {', '.join(KINDS)}")
        if self.kind == "causal-lm" and self.engine is None:
            raise ValueError(f"{self.name}: a causal LM is served through an Engine")

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)
