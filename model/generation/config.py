"""Generation options: transformers' `GenerationConfig` names and defaults, plus the engine's own."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidOptionError
from ..files import read_json_object

DECODE_KERNELS = ("auto", "torch", "triton")
GENERATION_CONFIG_NAME = "generation_config.json"
# Keys transformers writes into generation_config.json that carry no option: not kept on read.
_NOT_OPTIONS = ("transformers_version",)
EOS_CHECK_EVERY = 8  # greedy/sampling: the host's "all finished?" check period, in steps (a sync on a GPU)


@dataclass
class GenerationConfig:
    """transformers' generation options, names and defaults."""

    max_new_tokens: int | None = None
    max_length: int | None = None  # prompt + new tokens; 20 NEW tokens when neither is given (as transformers 5)
    min_new_tokens: int | None = None
    min_length: int | None = None  # prompt + new tokens before EOS may end a row (0 when unset)
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    bad_words_ids: list[list[int]] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # what generate() returns: the token ids, or (True) an output object with `sequences` and,
    # as asked, the processed `scores` and raw `logits` of each step (generation/output.py)
    return_dict_in_generate: bool = False
    output_scores: bool = False
    output_logits: bool = False
    # biogpt-cli's own: decode steps as one captured CUDA graph over a static cache. None = on
    # for CUDA inputs in eval mode; True on a CPU runs the same static-shape step eagerly (tests).
    cuda_graph: bool | None = None
    # biogpt-cli's own: run the captured step through torch.compile (True: the whole step,
    # "layers": the decoder layer, compiled once for all layers; see static.StaticDecoder).
    # Opt-in: the first call of each (rows, length) bucket compiles for tens of seconds, so it
    # pays for long runs, not for a one-off prompt.
    compile_step: bool | str = False
    # biogpt-cli's own: the kernels of a captured step of at most kernel_choice.AUTO_MAX_ROWS
    # rows. "auto": measure the fused Triton layer (biogpt.model.fast.fused) against torch's
    # kernels at the first call of a bucket and keep the fastest that agrees; "torch" /
    # "triton": that one.
    decode_kernels: str = "auto"

    def validate(self) -> None:
        if self.compile_step not in (True, False, "layers"):
            raise InvalidOptionError(f"compile_step must be True, False or 'layers', got {self.compile_step!r}")
        if self.decode_kernels not in DECODE_KERNELS:
            raise InvalidOptionError(f"decode_kernels must be one of {', '.join(DECODE_KERNELS)}, got {self.decode_kernels!r}")
        if self.decode_kernels == "triton" and self.compile_step:
            raise InvalidOptionError("decode_kernels='triton' and compile_step exclude each other (torch.compile fuses the step itself)")
        if self.num_beams < 1:
            raise InvalidOptionError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.num_return_sequences < 1:
            raise InvalidOptionError(f"num_return_sequences must be at least 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise InvalidOptionError(
                f"num_return_sequences ({self.num_return_sequences}) must be at most num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise InvalidOptionError("greedy decoding returns one sequence; use do_sample=True or num_beams>1 for several")
        if self.do_sample and not self.temperature > 0:
            raise InvalidOptionError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidOptionError(f"top_p must be within [0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise InvalidOptionError(f"top_k must be >= 0, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise InvalidOptionError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise InvalidOptionError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        for name in ("max_new_tokens", "max_length", "min_new_tokens", "min_length", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidOptionError(f"{name} must be >= 0, got {value}")

    # ----------------------------------------------------------------- generation_config.json
    # transformers' file: the options that differ from the defaults (its to_diff_dict), so a
    # model folder carries only what its author chose. Keys that are not fields here (bos_token_id,
    # _from_model_config, options of transformers' we do not implement) are kept as attributes
    # and written back, as transformers' GenerationConfig keeps unknown keys.
    def _extra_keys(self) -> list[str]:
        names = {f.name for f in dataclasses.fields(self)}
        return [k for k in vars(self) if k not in names and not k.startswith("__")]

    def to_dict(self) -> dict[str, Any]:
        """Every option (fields and kept extra keys), as transformers' `to_dict`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update({k: getattr(self, k) for k in self._extra_keys()})
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """The options that differ from a default GenerationConfig(), extra keys included."""
        default = type(self)()
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }
        out.update({k: getattr(self, k) for k in self._extra_keys()})
        return out

    def to_json_string(self, *, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> "GenerationConfig":
        """transformers' generation_config.json keys; a null value means "not set" (transformers
        5 writes its unset options as null), so the default stays."""
        data = {**data, **kwargs}
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names and v is not None}
        try:
            config = cls(**known)
        except TypeError as exc:
            raise ConfigError(f"invalid generation config: {exc}") from None
        for key, value in data.items():
            if key not in names and key not in _NOT_OPTIONS:
                setattr(config, key, value)
        return config

    @classmethod
    def from_model_config(cls, model_config: Any) -> "GenerationConfig":
        """The defaults a model without generation_config.json generates with: its config's
        special tokens, as transformers' `GenerationConfig.from_model_config`."""
        config = cls(
            eos_token_id=getattr(model_config, "eos_token_id", None),
            pad_token_id=getattr(model_config, "pad_token_id", None),
        )
        config.bos_token_id = getattr(model_config, "bos_token_id", None)  # type: ignore[attr-defined]
        config._from_model_config = True  # type: ignore[attr-defined]
        return config

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, config_file_name: str = GENERATION_CONFIG_NAME) -> Path:
        """generation_config.json in `save_directory` (made if missing), written atomically."""
        from ..files import write_text_atomic

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / config_file_name
        write_text_atomic(path, self.to_json_string())
        return path

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> "GenerationConfig":
        path = Path(path)
        data = read_json_object(path, what="generation config", error=ConfigError)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name: str | os.PathLike[str],
        config_file_name: str = GENERATION_CONFIG_NAME,
        *,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
    ) -> "GenerationConfig":
        """generation_config.json of a model folder or hub id (or that file itself); the hub
        options have transformers' meanings."""
        from ..hub import resolve_file

        path = Path(pretrained_model_name)
        if path.is_file():
            return cls.from_json_file(path)
        found = resolve_file(
            str(pretrained_model_name), config_file_name, subfolder=subfolder, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only, token=token, force_download=force_download,
        )
        assert found is not None
        return cls.from_json_file(found)
