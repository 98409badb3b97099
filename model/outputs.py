"""Model outputs as transformers returns them: dataclasses that are also ordered dicts.

Code written for transformers reads outputs every way its `ModelOutput` allows: `out.logits`,
`out["logits"]`, `out[0]`, `out.to_tuple()`, `"cache" in out`, `out.keys()`, and the
`Trainer` checks `isinstance(out, dict)`. Like transformers, a field that is None is not a key:
positions count only the fields that are set (`out[0]` is the loss when there is one, else the
logits). Field names and order are those of transformers 5.24's BioGPT outputs; the cache is
`cache`, and the seed's (and older transformers') `past_key_values` reads it.

Our own code (we never import transformers in the product): the same behaviour, nothing more.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import torch

_CACHE_ALIASES = ("past_key_values", "cache_params")  # older names of `cache`, read as it


def _key(name: Any) -> Any:
    return "cache" if name in _CACHE_ALIASES else name


class ModelOutput(OrderedDict):
    """Base of the output dataclasses: a field is also a key while it is not None."""

    def __post_init__(self) -> None:
        # The dataclass __init__ assigned every field through __setattr__, which keyed the ones
        # not None in field order; nothing more to do. (Kept as a hook for subclasses.)
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        name = _key(name)
        if value is not None and name in self.__dataclass_fields__:  # type: ignore[attr-defined]
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        key = _key(key)
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(_key(key))
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(_key(key))

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(_key(key), default)

    @property
    def past_key_values(self) -> Any:
        """The cache under its former name (transformers 5.24 keeps it until 5.40)."""
        return self.cache  # type: ignore[attr-defined]

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are set, in field order (what `return_dict=False` returns)."""
        return tuple(self[k] for k in self.keys())

    def __reduce__(self):  # pickles as the dataclass it is, not as a dict
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    # A ModelOutput's keys follow its fields: changing them as a dict would break that.
    def __delitem__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} does not support deleting keys")

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} does not support pop")

    def setdefault(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} does not support setdefault")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} does not support update")


# Every field but the first defaults to None (transformers' rule); all are keyword arguments in
# practice. `cache`: our KVCache, the caller's transformers Cache, or legacy tuples (as given).
@dataclass(eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: torch.Tensor | None = None  # (B, T, C), after the final LayerNorm
    cache: Any = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each layer's output
    attentions: tuple[torch.Tensor, ...] | None = None  # (B, H, T, S) per layer, eager attention only
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # never set: BioGPT has no encoder


@dataclass(eq=False)
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V)
    cache: Any = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass(eq=False)
class TokenClassifierOutput(ModelOutput):
    """No cache field: transformers' token classifier does not return one."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass(eq=False)
class SequenceClassifierOutputWithPast(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, num_labels)
    cache: Any = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


__all__ = [
    "ModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "TokenClassifierOutput",
    "SequenceClassifierOutputWithPast",
]
