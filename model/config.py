"""BioGptConfig: one dataclass, the same field names, defaults and config.json as transformers'.

A checkpoint directory written by transformers loads here unchanged and the other way round, so
users can move checkpoints between the two without conversion. Derived values (head size,
number of labels, label2id) are properties, never stored twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import write_text_atomic

CONFIG_NAME = "config.json"
MODEL_TYPE = "biogpt"

# Keys transformers writes that carry no model meaning for us; kept verbatim on round trip.
_IGNORED_ON_READ = {"model_type", "num_labels"}


@dataclass
class BioGptConfig:
    vocab_size: int = 42384
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 1024
    initializer_range: float = 0.02
    # Read by neither model: transformers' BioGPT builds its LayerNorms with torch's default eps
    # (1e-5), and so does ours. Kept so that config.json round-trips with transformers.
    layer_norm_eps: float = 1e-12
    scale_embedding: bool = True
    use_cache: bool = True
    layerdrop: float = 0.0
    activation_dropout: float = 0.0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = True
    # Classification heads (transformers' PreTrainedConfig fields).
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    classifier_dropout: float | None = None
    # Everything else found in config.json (architectures, dtype, our task metadata, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.problem_type not in (
            None,
            "regression",
            "single_label_classification",
            "multi_label_classification",
        ):
            raise ConfigError(f"unknown problem_type {self.problem_type!r}")

    # ----------------------------------------------------------------- derived values
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        self.id2label = {i: self.id2label.get(i, f"LABEL_{i}") for i in range(n)}

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def embed_scale(self) -> float:
        return self.hidden_size**0.5 if self.scale_embedding else 1.0

    # ----------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BioGptConfig":
        """A named architecture: `biogpt` (347M), `biogpt-large` (1.5B), `small`, `tiny`."""
        key = name.lower().removeprefix("microsoft/")
        if key not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})

    # ----------------------------------------------------------------- JSON round trip
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BioGptConfig":
        data = dict(data)
        model_type = data.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ConfigError(f"config has model_type {model_type!r}, expected {MODEL_TYPE!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = dict(data.pop("extra", {}) or {})
        num_labels = data.get("num_labels")
        for key, value in data.items():
            if key in names:
                kwargs[key] = value
            elif key not in _IGNORED_ON_READ and key != "label2id":
                extra[key] = value
        if "id2label" not in kwargs and num_labels is not None:
            kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(int(num_labels))}
        if kwargs.get("id2label") is None:
            kwargs.pop("id2label", None)
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:  # a wrongly typed value
            raise ConfigError(f"invalid config: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "id2label"):
                continue
            out[f.name] = getattr(self, f.name)
        out["id2label"] = {str(k): v for k, v in sorted(self.id2label.items())}
        out["label2id"] = dict(sorted(self.label2id.items(), key=lambda kv: kv[1]))
        out["model_type"] = MODEL_TYPE
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> "BioGptConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg.removesuffix(' at')} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        """Written atomically: a reader never sees a cut config.json (a full disk leaves the old
        file, or none, and raises OutputError naming it)."""
        write_text_atomic(path, self.to_json_string())

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)
        return directory / CONFIG_NAME

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> "BioGptConfig":
        """Load config.json from a directory, a file, a hub id, or a preset name."""
        from .hub import resolve_file

        path = Path(name_or_path)
        if path.is_file():
            return cls.from_json_file(path)
        if not path.is_dir() and str(name_or_path).lower() in PRESETS:
            return cls.from_preset(str(name_or_path))
        return cls.from_json_file(
            resolve_file(
                str(name_or_path),
                CONFIG_NAME,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        )


PRESETS: dict[str, dict[str, Any]] = {
    "biogpt": {},
    "biogpt-large": {
        "vocab_size": 57717,
        "hidden_size": 1600,
        "num_hidden_layers": 48,
        "num_attention_heads": 25,
        "intermediate_size": 6400,
        "max_position_embeddings": 2048,
    },
    # For training from scratch on a modest GPU (about 20M parameters besides embeddings).
    "small": {
        "hidden_size": 512,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
    },
    # For tests and smoke runs: the real vocabulary, a toy network.
    "tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
}
