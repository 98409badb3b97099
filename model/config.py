"""BioGptConfig: transformers' field names, defaults and config.json, and what its configs accept.

A checkpoint directory written by transformers loads here unchanged and the other way round, so
users move checkpoints between the two without conversion. Like transformers' `PreTrainedConfig`,
the constructor takes any keyword: the common attributes (`num_labels`, `return_dict`,
`output_hidden_states`, `architectures`, `dtype`, ...) and unknown keys (`type_vocab_size`, a
task's metadata), which are kept as attributes (in `extra`) and written back by `to_dict`.
Shapes are checked when a model is built (modeling.py), not here: transformers' own tests build
configs such as hidden_size=37 with 16 heads and expect only the model to refuse them.
Derived values (head size, number of labels) are properties, never stored twice.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError
from .files import read_json_object, write_text_atomic

CONFIG_NAME = "config.json"
MODEL_TYPE = "biogpt"
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# transformers' PreTrainedConfig attributes that are not fields here: read through `extra` with
# these defaults, and written by to_dict as transformers writes them. They live in `extra` (not
# as fields) because callers have always read them there (`config.extra["architectures"]`).
COMMON_DEFAULTS: dict[str, Any] = {
    "architectures": None,
    "dtype": None,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
}


@dataclass(kw_only=True)
class BioGptConfig:
    # transformers' class attribute (not a field, not in `extra`): peft and others branch on it
    model_type: ClassVar[str] = MODEL_TYPE
    # transformers' class attributes that generic code reads on any config: a text model has no
    # sub-configs (code walks `config.sub_configs` to reach nested ones) and, like transformers'
    # BioGPT, no tensor- or pipeline-parallel plan (None: "this model has none").
    sub_configs: ClassVar[dict[str, type]] = {}
    base_model_tp_plan: ClassVar[dict[str, Any] | None] = None
    base_model_pp_plan: ClassVar[dict[str, Any] | None] = None
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
    # What forward returns when the call does not say (transformers' PreTrainedConfig fields).
    return_dict: bool = True
    output_hidden_states: bool = False
    output_attentions: bool = False
    # Classification heads (transformers' PreTrainedConfig fields). label2id is derived from
    # id2label unless given (a given one is kept as is, as transformers does); assigning
    # id2label derives it again.
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    classifier_dropout: float | None = None
    # Everything else (architectures, dtype, our task metadata, unknown keys), as config.json has it.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"unknown problem_type {self.problem_type!r}")

    def _accept(self, kwargs: dict[str, Any]) -> None:
        """The keywords that are not fields, as transformers' PreTrainedConfig takes them."""
        num_labels = kwargs.pop("num_labels", None)
        if num_labels is not None and "id2label" not in self._given:
            self.num_labels = int(num_labels)
        torch_dtype = kwargs.pop("torch_dtype", None)  # transformers' former name of dtype
        if torch_dtype is not None and kwargs.get("dtype") is None and "dtype" not in self.extra:
            kwargs["dtype"] = torch_dtype
        # Not serialised (transformers neither): which attention the model runs; None = SDPA,
        # or eager when output_attentions asks for weights (transformers' rule).
        self._attn_implementation = kwargs.pop("attn_implementation", None)
        if self.output_attentions and self._attn_implementation is None:
            self._attn_implementation = "eager"  # the one attention that gives its weights
        for key, value in kwargs.items():
            setattr(self, key, value)

    # ----------------------------------------------------------------- attributes
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "id2label":  # JSON keys are strings; ids are ints. label2id follows.
            value = {int(k): str(v) for k, v in (value or {}).items()}
            object.__setattr__(self, "id2label", value)
            object.__setattr__(self, "label2id", {v: k for k, v in value.items()})
            return
        if name == "label2id" and value is None:  # derived unless given
            value = {v: k for k, v in self.__dict__.get("id2label", {}).items()}
        if name in _FIELDS or name.startswith("_") or hasattr(type(self), name):
            object.__setattr__(self, name, value)  # fields, private state, properties
        else:
            self.extra[name] = value  # any other key, kept and written back, as transformers does

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: keys kept in `extra`, then the common defaults.
        if name.startswith("__") or name == "extra":
            raise AttributeError(name)
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        if name in COMMON_DEFAULTS:
            return COMMON_DEFAULTS[name]
        if name == "_attn_implementation":
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__.get("extra", {}):
            del self.extra[name]
        else:
            object.__delattr__(self, name)

    # ----------------------------------------------------------------- derived values
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if n != self.num_labels:
            self.id2label = {i: self.id2label.get(i, f"LABEL_{i}") for i in range(n)}

    @property
    def embed_scale(self) -> float:
        return self.hidden_size**0.5 if self.scale_embedding else 1.0

    @property
    def dtype(self) -> Any:
        """The checkpoint's dtype as a torch.dtype (transformers' type), or None; stored as its
        name (config.json's form) in `extra`."""
        name = self.extra.get("dtype")
        if name is None or not isinstance(name, str):
            return name
        import torch

        return getattr(torch, name.removeprefix("torch."))

    @dtype.setter
    def dtype(self, value: Any) -> None:
        self.extra["dtype"] = None if value is None else str(value).removeprefix("torch.")

    torch_dtype = dtype  # transformers' former name

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @property
    def name_or_path(self) -> str:
        """Where the config was loaded from ("" if built); transformers' `_name_or_path`."""
        return str(self.__dict__.get("_name_or_path", self.extra.get("_name_or_path", "")))

    @name_or_path.setter
    def name_or_path(self, value: str | os.PathLike[str]) -> None:
        # kept as a string, as transformers does (it goes into JSON)
        object.__setattr__(self, "_name_or_path", str(value))

    def get_text_config(self, *args: Any, **kwargs: Any) -> "BioGptConfig":
        """transformers' accessor for multimodal configs; a text model is its own."""
        return self

    def __iter__(self):
        return iter(self.to_dict())

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
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Any:
        """A config from config.json's dict; keyword overrides are applied. With
        `return_unused_kwargs=True`, transformers' contract (its AutoConfig calls a registered
        config class this way): (config, the overrides that are not config attributes), those
        left unapplied."""
        for internal in ("_from_auto", "_from_pipeline"):  # transformers' telemetry keywords
            overrides.pop(internal, None)
        if overrides.pop("return_unused_kwargs", False):
            return cls._from_dict_with_unused(data, overrides)
        num_labels = overrides.pop("num_labels", None)
        if num_labels is not None:  # an override wins over the dict's id2label, as in transformers
            config = cls.from_dict(data, **overrides)
            config.num_labels = int(num_labels)
            return config
        data = {**data, **overrides}
        model_type = data.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ConfigError(f"config has model_type {model_type!r}, expected {MODEL_TYPE!r}")
        data.pop("model_type", None)
        for key, default in COMMON_DEFAULTS.items():  # defaults are not kept: configs compare equal
            if key in data and data[key] == default:
                del data[key]
        if data.get("id2label") is None:
            data.pop("id2label", None)
            data.pop("label2id", None)
        try:
            return cls(**data)
        except TypeError as exc:  # a wrongly typed value
            raise ConfigError(f"invalid config: {exc}") from None

    @classmethod
    def _from_dict_with_unused(cls, data: dict[str, Any], overrides: dict[str, Any]) -> tuple["BioGptConfig", dict[str, Any]]:
        # transformers' rule: the keywords every config takes go to the constructor, the others
        # are applied only where the built config has the attribute, and the rest is returned
        constructor = {"num_labels", "attn_implementation", "output_attentions", "torch_dtype", "dtype", "name_or_path"}
        given = {k: v for k, v in overrides.items() if k in constructor and v != "auto"}
        config = cls.from_dict(data, **given)
        unused = {}
        for key, value in overrides.items():
            if key in given:
                continue
            if hasattr(config, key):
                setattr(config, key, value)
            else:
                unused[key] = value
        return config, unused

    def to_dict(self) -> dict[str, Any]:
        """Every key transformers writes (but its version), then our extra keys, sorted.
        id2label keeps int keys (JSON turns them into strings; from_dict turns them back)."""
        out: dict[str, Any] = dict(COMMON_DEFAULTS)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = copy.deepcopy(getattr(self, f.name))
        out["id2label"] = dict(sorted(self.id2label.items()))
        out["model_type"] = MODEL_TYPE
        out.update(copy.deepcopy(self.extra))
        return dict(sorted(out.items()))

    def to_diff_dict(self) -> dict[str, Any]:
        """to_dict without the keys that hold transformers' PreTrainedConfig defaults (what its
        `to_diff_dict` leaves out); the model's own keys are always kept. Code that rebuilds a
        config with `type(config)(**config.to_diff_dict())` gets an equal config."""
        return {k: v for k, v in self.to_dict().items() if k not in _BASE_DEFAULTS or v != _BASE_DEFAULTS[k]}

    def to_json_string(self, use_diff: bool = True) -> str:
        """config.json's text. `use_diff` is accepted for transformers' signature; the whole
        config is always written (what a reader needs, whatever its defaults)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> "BioGptConfig":
        path = Path(path)
        data = read_json_object(path, what="config file", error=ConfigError)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_json_file(self, path: str | os.PathLike[str], use_diff: bool = True) -> None:
        """Written atomically: a reader never sees a cut config.json (a full disk leaves the old
        file, or none, and raises OutputError naming it)."""
        write_text_atomic(path, self.to_json_string())

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> Path:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)
        return directory / CONFIG_NAME

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        **overrides: Any,
    ) -> "BioGptConfig":
        """Load config.json from a directory (or its `subfolder`), a file, a hub id, or a preset
        name; keyword overrides are applied as transformers applies them. The hub options have
        transformers' meanings."""
        from .hub import resolve_file

        name_or_path = pretrained_model_name_or_path
        path = Path(name_or_path)
        if path.is_file():
            config = cls.from_json_file(path)
        elif not path.is_dir() and not subfolder and str(name_or_path).lower() in PRESETS:
            config = cls.from_preset(str(name_or_path))
        elif path.is_dir():
            config = cls.from_json_file(path / subfolder / CONFIG_NAME)
        else:
            found = resolve_file(
                str(name_or_path), CONFIG_NAME, subfolder=subfolder, revision=revision, cache_dir=cache_dir,
                local_files_only=local_files_only, token=token, force_download=force_download,
            )
            assert found is not None
            config = cls.from_json_file(found)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config


_FIELDS = frozenset(f.name for f in dataclasses.fields(BioGptConfig))
# transformers' PreTrainedConfig() values of the keys our to_dict writes (what to_diff_dict drops)
_BASE_DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "return_dict": True,
    "output_hidden_states": False,
    "output_attentions": False,
    "id2label": {0: "LABEL_0", 1: "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "problem_type": None,
    "classifier_dropout": None,  # read with a None default by the heads; unset is not written
}
_fields_init = BioGptConfig.__init__


def _init(self: BioGptConfig, **kwargs: Any) -> None:
    """transformers' configs take any keyword: the fields go to the dataclass constructor, the
    rest through `_accept` (common attributes, then unknown keys kept in `extra`)."""
    object.__setattr__(self, "_given", frozenset(kwargs))
    _fields_init(self, **{k: kwargs.pop(k) for k in list(kwargs) if k in _FIELDS})
    self._accept(kwargs)


BioGptConfig.__init__ = _init  # type: ignore[method-assign]


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
