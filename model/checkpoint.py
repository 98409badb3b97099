"""Checkpoint I/O: Hugging Face directories and hub ids, original fairseq checkpoints, safely.

- Safe: safetensors first; pickles (pytorch_model.bin, fairseq checkpoint.pt) only through
  safe_pickle.py, which never runs code a pickle names.
- Lean: the model is built on the meta device and each tensor is assigned as it is read
  (memory-mapped files), so loading never holds two copies of the weights; optimizer state in a
  fairseq checkpoint stays on disk.
- fairseq: what its files mean (key names, architecture, learned prompt rows) is
  fairseq_files.py's; here they become a `CheckpointSource` like any Hugging Face directory.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import CONFIG_NAME, BioGptConfig
from .errors import (
    CheckpointError, ConfigError, InvalidOptionError, ModelNotFoundError, ModelPathError, PathError, ShapeMismatchError, VocabularyError,
)
from .fairseq_files import (
    EMBEDDINGS,
    FAIRSEQ_CHECKPOINTS,
    fairseq_config,
    fairseq_key,
    find_fairseq_checkpoint,
    learned_symbols,
    read_fairseq_checkpoint,
)
from .files import atomic_directory
from .pretrained import ModelMethodsMixin
from .safe_pickle import checkpoint_problem, safe_torch_load
from .vocab_files import FAIRSEQ_DICT_FILE

logger = logging.getLogger(__name__)
# "Reinit due to size mismatch" goes where transformers writes it, so code (and transformers'
# own tests) that capture or silence its loading report see ours too; a name, not an import
loading_report = logging.getLogger("transformers.modeling_utils")

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"
HEAD_KEYS = ("output_projection.", "classifier.", "score.")

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """torch dtype, "auto" (the checkpoint's: config.json's dtype, else its first floating-point
    tensor's, as transformers 5), or None (float32, torch's default dtype, as transformers)."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    key = str(dtype).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise InvalidOptionError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
    return _DTYPES[key]


# ============================================================================ sources
@dataclass
class CheckpointSource:
    """Where the weights of one model come from, resolved before any tensor is read."""

    name: str
    kind: str  # "hf" or "fairseq"
    config: BioGptConfig
    files: list[Path] = field(default_factory=list)
    extra_symbols: list[str] = field(default_factory=list)
    fairseq_state: dict[str, torch.Tensor] | None = None  # the tensors of "fairseq" and "state_dict" sources
    tokenizer_path: str | None = None
    subfolder: str = ""  # inside a hub repository (a local subfolder is already part of `name`)

    def tensors(self) -> Iterator[tuple[str, torch.Tensor, Path]]:
        """(transformers key, tensor, file) for every weight, one at a time."""
        if self.kind == "state_dict":  # from_pretrained(None, config=, state_dict=)
            assert self.fairseq_state is not None
            for key, tensor in self.fairseq_state.items():
                yield key, tensor, Path("state_dict")
            return
        if self.kind == "fairseq":
            assert self.fairseq_state is not None
            for key, tensor in self.fairseq_state.items():
                new = fairseq_key(key)
                if new is not None:
                    yield new, tensor, self.files[0]
            return
        for path in self.files:
            if path.suffix == ".safetensors":
                for key, tensor in read_safetensors(path):
                    yield key, tensor, path
            else:
                state = safe_torch_load(path)
                if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                    state = state["state_dict"]
                if not isinstance(state, dict):
                    raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
                for key, tensor in state.items():
                    if isinstance(tensor, torch.Tensor):
                        yield key, tensor, path


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors of a .safetensors file, each read straight into its own buffer.

    One copy per tensor and no page faults on a mapping: faster than memory-mapping when every
    weight is used anyway, and the file's bytes are never held twice."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file too short for a header")
            (size,) = struct.unpack("<Q", head)
            if size > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(f.read(size))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            base = 8 + size
            entries = sorted(
                ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
            )
            for key, info in entries:
                dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
                if dtype is None:
                    raise ValueError(f"unsupported dtype {info['dtype']} for {key}")
                start, end = info["data_offsets"]
                tensor = torch.empty(info["shape"], dtype=dtype)
                if end - start != tensor.numel() * tensor.element_size():
                    raise ValueError(f"{key}: byte range does not match its shape")
                f.seek(base + start)
                if tensor.numel() and f.readinto(tensor.reshape(-1).view(torch.uint8).numpy()) != end - start:
                    raise ValueError(f"{key}: file ends early")
                yield key, tensor
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, OverflowError, struct.error) as exc:
        # random bytes, a cut file, a header whose shapes or offsets do not add up
        raise checkpoint_problem(path, f"not a readable safetensors file: {exc}") from None


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    config: BioGptConfig | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    subfolder: str = "",
    token: str | bool | None = None,
    force_download: bool = False,
) -> CheckpointSource:
    """The files of a model: a local folder (or fairseq .pt file), or a hub id through its cache.
    subfolder: transformers' option, the model's folder inside that folder or repository. A
    missing model raises ModelPathError (local) or ModelNotFoundError (hub), both OSErrors."""
    from .hub import resolve_file

    name = str(name_or_path)
    path = Path(name).expanduser()
    subfolder = subfolder.strip("/")
    if subfolder and path.is_dir():  # a local folder: the subfolder is simply the model folder
        path = path / subfolder
        name, subfolder = str(path), ""
        if not path.is_dir():
            raise ModelPathError(f"{path}: no such subfolder in {path.parent}")
    if path.is_file() and path.suffix == ".pt":
        return _fairseq_source(path, path.parent, config)
    if path.exists() and not path.is_dir():
        raise ModelPathError(f"{path}: is a file, expected a model folder or hub id")
    if path.is_dir() and not (path / CONFIG_NAME).is_file():
        ckpt = find_fairseq_checkpoint(path)
        if ckpt is not None:
            return _fairseq_source(ckpt, path, config)
        raise ModelPathError(
            f"{path}: not a model directory; expected {CONFIG_NAME} with {SAFE_WEIGHTS} or "
            f"{PT_WEIGHTS} (Hugging Face), or {' / '.join(FAIRSEQ_CHECKPOINTS)} with dict.txt and "
            "bpecodes (fairseq)"
        )
    common = {
        "revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "subfolder": subfolder,
        "token": token, "force_download": force_download,
    }
    config_file = resolve_file(name, CONFIG_NAME, **common)
    assert config_file is not None
    if config is None:
        config = BioGptConfig.from_json_file(config_file)
    for single, index in ((SAFE_WEIGHTS, SAFE_INDEX), (PT_WEIGHTS, PT_INDEX)):
        found = resolve_file(name, single, required=False, **common)
        if found is not None:
            return CheckpointSource(name, "hf", config, [found], tokenizer_path=name, subfolder=subfolder)
        index_file = resolve_file(name, index, required=False, **common)
        if index_file is not None:
            try:
                weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
                if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                    raise ValueError("weight_map is not an object of file names")
            except (ValueError, KeyError, TypeError) as exc:
                raise checkpoint_problem(index_file, f"malformed shard index: {exc}") from None
            shards = []
            for shard in dict.fromkeys(weight_map.values()):
                shard_path = resolve_file(name, shard, **common)
                assert shard_path is not None
                shards.append(shard_path)
            return CheckpointSource(name, "hf", config, shards, tokenizer_path=name, subfolder=subfolder)
    expected = f"expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {PT_WEIGHTS} or {PT_INDEX}"
    if path.is_dir():  # a local folder that is not (or no longer) a whole model: the caller's path
        raise ModelPathError(f"{path}: no weights found beside {CONFIG_NAME}; {expected}")
    raise ModelNotFoundError(f"{name}: no weights found; {expected}")


def _fairseq_source(ckpt_path: Path, directory: Path, config: BioGptConfig | None) -> CheckpointSource:
    ckpt, state = read_fairseq_checkpoint(ckpt_path)
    extra = learned_symbols(state[EMBEDDINGS].shape[0], directory, ckpt_path)
    if config is None:
        config = fairseq_config(ckpt, state, ckpt_path)
    tokenizer_path = str(directory) if (directory / FAIRSEQ_DICT_FILE).is_file() else None
    return CheckpointSource(str(ckpt_path), "fairseq", config, [ckpt_path], extra, state, tokenizer_path)


# ============================================================================ loading into a model
@dataclass
class LoadingInfo:
    """What a load left out, as transformers reports it (`output_loading_info=True`): keys the
    model needed and the checkpoint lacked (newly initialised), checkpoint keys the model has no
    use for, and (key, checkpoint shape, model shape) of tensors re-initialised because
    `ignore_mismatched_sizes` allowed it."""

    missing_keys: set[str] = field(default_factory=set)
    unexpected_keys: set[str] = field(default_factory=set)
    mismatched_keys: set[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=set)
    error_msgs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"missing_keys": self.missing_keys, "unexpected_keys": self.unexpected_keys,
                "mismatched_keys": self.mismatched_keys, "error_msgs": self.error_msgs}


def load_into(
    model: torch.nn.Module,
    source: CheckpointSource,
    *,
    dtype: torch.dtype | str | None,
    device: torch.device | str | None,
    ignore_mismatched_sizes: bool = False,
    allow_missing: bool = False,
) -> LoadingInfo:
    """Assign every tensor of `source` to the meta-built `model`, converting as it goes.

    A head the checkpoint lacks (a language model loaded as a classifier) is initialised with a
    warning. Missing body weights raise CheckpointError unless `allow_missing` (the caller asked
    for the loading report, as transformers always loads and reports); a tensor of another shape
    raises ShapeMismatchError unless `ignore_mismatched_sizes` (then it is re-initialised)."""
    expected = dict(model.state_dict(keep_vars=True))
    prefix = getattr(model, "base_model_prefix", "")
    # a head model holds the body under the prefix ("biogpt"); the body itself does not
    has_prefix = bool(prefix) and isinstance(getattr(model, prefix, None), torch.nn.Module)
    tied = getattr(model.config, "tie_word_embeddings", False)
    loaded: set[str] = set()
    info = LoadingInfo()
    # "auto": config.json's dtype, else the first floating-point tensor's (set below), so the
    # whole model has one dtype, as transformers 5 loads it
    target_dtype: torch.dtype | None = (
        config_dtype(source.config) if dtype == "auto" else (dtype or torch.float32)  # type: ignore[assignment]
    )
    for stored, tensor, path in source.tensors():
        key = _adapt_key(stored, has_prefix, prefix)
        if key is None or key not in expected:
            info.unexpected_keys.add(stored)  # under the checkpoint's own name, as transformers reports it
            continue
        if tied and key.endswith("output_projection.weight"):
            loaded.add(key)  # shares the embedding matrix; checked below through it
            continue
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) != want:
            if not ignore_mismatched_sizes:
                raise ShapeMismatchError(_shape_message(path, key, tuple(tensor.shape), want, model.config))
            info.mismatched_keys.add((key, tuple(tensor.shape), want))
            loading_report.warning("%s: Reinit due to size mismatch - ckpt: %s vs model:%s", key, tuple(tensor.shape), want)
            continue
        if tensor.is_floating_point():
            target_dtype = target_dtype or tensor.dtype
            tensor = tensor.to(device=device or "cpu", dtype=target_dtype)
        else:
            tensor = tensor.to(device=device or "cpu")
        _assign(model, key, tensor)
        loaded.add(key)
    if info.unexpected_keys:
        logger.info("ignored %d checkpoint tensors the model does not use: %s", len(info.unexpected_keys), ", ".join(sorted(info.unexpected_keys)[:5]))
    mismatched = [key for key, _, _ in info.mismatched_keys]
    missing = [k for k in expected if k not in loaded and k not in mismatched and not (tied and k.endswith("output_projection.weight"))]
    info.missing_keys.update(missing)
    head_missing = [k for k in missing if k.startswith(HEAD_KEYS)]
    body_missing = [k for k in missing if k not in head_missing]
    if body_missing and not allow_missing:
        raise CheckpointError(
            f"{source.name}: the checkpoint lacks {len(body_missing)} weights the model needs, e.g. "
            f"{', '.join(body_missing[:4])}"
        )
    if missing:
        logger.warning("%s: newly initialised (train before use): %s", source.name, ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if missing or mismatched:
        _materialise(model, missing + mismatched, device, target_dtype or torch.float32)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return info


def config_dtype(config: BioGptConfig) -> torch.dtype | None:
    """The dtype config.json records (transformers 5's "dtype", older "torch_dtype"), or None."""
    extra = getattr(config, "extra", None)
    extra = extra if isinstance(extra, dict) else {}
    for value in (getattr(config, "dtype", None), extra.get("dtype"), getattr(config, "torch_dtype", None), extra.get("torch_dtype")):
        if isinstance(value, torch.dtype):
            return value
        if isinstance(value, str) and value.removeprefix("torch.").lower() in _DTYPES:
            return _DTYPES[value.removeprefix("torch.").lower()]
    return None


def set_config_key(config: BioGptConfig, key: str, value: Any) -> None:
    """Record a transformers config key (architectures, dtype): in `extra` where the config keeps
    keys it has no field for, else as an attribute."""
    extra = getattr(config, "extra", None)
    fields = getattr(config, "__dataclass_fields__", {})
    if isinstance(extra, dict) and key not in fields:
        extra[key] = value
    else:
        setattr(config, key, value)


def _adapt_key(key: str, has_prefix: bool, prefix: str) -> str | None:
    if has_prefix:
        if key.startswith(prefix + ".") or key.startswith(HEAD_KEYS):
            return key
        return f"{prefix}.{key}"  # a bare BioGptModel checkpoint loaded into a head model
    if key.startswith("biogpt."):
        return key[len("biogpt.") :]
    if key.startswith(HEAD_KEYS):
        return None  # heads are not part of the bare model
    return key


def _shape_message(path: Path, key: str, found: tuple[int, ...], want: tuple[int, ...], config: BioGptConfig) -> str:
    if key.endswith("embed_tokens.weight") and found[1:] == want[1:]:
        return (
            f"{path}: {key} has {found[0]} rows but the configuration says vocab_size={config.vocab_size}; "
            "the embedding does not match the vocabulary (fix vocab_size in config.json, or use the "
            "tokenizer that belongs to these weights)"
        )
    return f"{path}: {key} has shape {list(found)}, expected {list(want)} from the configuration"


def _assign(model: torch.nn.Module, key: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = key.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    old = getattr(module, attr)
    if isinstance(old, torch.nn.Parameter):
        setattr(module, attr, torch.nn.Parameter(tensor, requires_grad=old.requires_grad))
    else:
        module.register_buffer(attr, tensor)


def _materialise(model: torch.nn.Module, keys: list[str], device: Any, dtype: torch.dtype) -> None:
    for key in keys:
        module_name, _, _ = key.rpartition(".")
        module = model.get_submodule(module_name)
        if any(p.is_meta for p in module.parameters(recurse=False)):
            module.to_empty(device=device or "cpu", recurse=False)
            model._init_weights(module)  # type: ignore[operator]
            module.to(dtype)


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Module constructors run their random initialisers; on the meta device those only cost
    time (and import torch's compiler stack), so they are no-ops while building."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_", "ones_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


# ============================================================================ the mixin
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def _transformers_loading_options(
    *, dtype: Any, device: Any, torch_dtype: Any, device_map: Any, attn_implementation: str | None
) -> tuple[Any, Any]:
    """transformers' loading options mapped onto (dtype, device).

    torch_dtype is the older name of dtype. device_map places the whole model on one device
    ("auto": the first GPU if there is one); a map that splits the layers over devices is
    refused, since a 1.5B-parameter model fits one GPU. attn_implementation: attention is
    always torch's scaled_dot_product_attention, which uses flash attention where it can and
    gives eager attention's results within rounding, so the three names are accepted."""
    if torch_dtype is not None:
        if dtype is not None and parse_dtype(dtype) != parse_dtype(torch_dtype):
            raise TypeError(f"from_pretrained() got dtype={dtype!r} and torch_dtype={torch_dtype!r}; pass one")
        dtype = torch_dtype
    def place(where: Any) -> torch.device:  # a device_map value: an int is a GPU index
        return torch.device(f"cuda:{where}") if isinstance(where, int) else torch.device(where)

    if device_map is not None:
        if isinstance(device_map, dict):
            places = {str(place(d)) for d in device_map.values()}
            if len(places) != 1:
                raise InvalidOptionError(
                    f"device_map places the model on {len(places)} devices ({', '.join(sorted(places))}); "
                    "biogpt-cli runs a model on one device: pass one (e.g. device_map='cuda')"
                )
            device_map = places.pop()
        if device_map == "auto":
            device_map = "cuda" if torch.cuda.is_available() else "cpu"
        mapped = place(device_map)
        if device is not None and torch.device(device) != mapped:
            raise TypeError(f"from_pretrained() got device={device!r} and device_map={device_map!r}; pass one")
        device = mapped
    if attn_implementation is not None and attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise InvalidOptionError(
            f"unknown attn_implementation {attn_implementation!r}; choose {', '.join(ATTENTION_IMPLEMENTATIONS)} "
            "(all run torch's scaled_dot_product_attention here)"
        )
    return dtype, device

class PretrainedMixin(ModelMethodsMixin):
    """from_pretrained / save_pretrained for every model class (mixed into modeling.py's base);
    transformers' other model methods come from pretrained.ModelMethodsMixin."""

    config: BioGptConfig

    @classmethod
    def from_config(cls, config: BioGptConfig, *, dtype: Any = None, device: Any = None):
        """A randomly initialised model (training from scratch)."""
        model = cls(config)  # type: ignore[call-arg]
        dtype = parse_dtype(dtype)
        model.to(device=device, dtype=None if dtype in (None, "auto") else dtype)
        return model

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str] | None,
        *,
        config: BioGptConfig | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = None,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        trust_remote_code: bool = False,
        torch_dtype: str | torch.dtype | None = None,
        device_map: Any = None,
        low_cpu_mem_usage: bool | None = None,
        attn_implementation: str | None = None,
        generation_config: Any = None,
        adapter_kwargs: dict[str, Any] | None = None,
        **config_overrides: Any,
    ):
        """Load a Hugging Face directory or hub id, or a fairseq checkpoint directory/file.

        dtype: "auto" (the default, as in transformers 5) loads the checkpoint's dtype
        (config.json's "dtype", else its first floating-point tensor's); None loads float32
        (torch's default dtype); a torch dtype or its name, that one.
        subfolder, revision, cache_dir, local_files_only, token, force_download: transformers'
        meanings. trust_remote_code is accepted and has nothing to allow: these classes are the
        architecture, and no code is ever fetched from the hub.
        torch_dtype, device_map, low_cpu_mem_usage, attn_implementation: transformers' names, so
        its loading lines work unchanged (see `_transformers_loading_options`).
        generation_config: a GenerationConfig to use instead of the folder's generation_config.json.
        state_dict: the weights to load instead of the folder's files; with
        `pretrained_model_name_or_path=None` and `config=`, the model is built from those two alone.
        output_loading_info: also return transformers' report, a dict of sets (`missing_keys`,
        `unexpected_keys`, `mismatched_keys`) and `error_msgs`; missing weights are then
        initialised and reported, as transformers loads, instead of refused.
        ignore_mismatched_sizes: re-initialise a tensor whose shape differs from the model's (a
        classifier loaded with another num_labels) instead of raising ShapeMismatchError.
        A missing model raises ModelPathError or ModelNotFoundError, both OSErrors (transformers'
        error for a checkpoint it cannot find).
        """
        if torch.get_default_device().type == "meta":
            # the model is built on the meta device anyway; under a meta default the loaded
            # tensors would be placeholders too
            raise RuntimeError(
                "You are using `from_pretrained` with a meta device context manager or `torch.set_default_device('meta')`: "
                "from_pretrained loads existing weights; to build an empty model on the meta device, call the class on a config"
            )
        name_or_path = pretrained_model_name_or_path
        if torch_dtype is not None and dtype == "auto":
            dtype = None  # torch_dtype= alone decides; dtype= and torch_dtype= together must agree
        dtype, device = _transformers_loading_options(
            dtype=dtype, device=device, torch_dtype=torch_dtype, device_map=device_map, attn_implementation=attn_implementation
        )
        del low_cpu_mem_usage  # always: the model is built on the meta device and filled tensor by tensor
        del trust_remote_code
        del adapter_kwargs  # transformers' Auto classes pass it for a PEFT adapter folder; peft's PeftModel.from_pretrained loads those
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token, "force_download": force_download}
        config = copy.deepcopy(config)  # the overrides below change the model's config, not the caller's
        if name_or_path is None:
            if config is None or state_dict is None:
                raise ValueError("from_pretrained(None, ...) needs both config= and state_dict=")
            source = CheckpointSource("state_dict", "state_dict", config, fairseq_state=state_dict)
        else:
            source = resolve_checkpoint(name_or_path, config=config, subfolder=subfolder, **hub)
        folder = source
        if state_dict is not None and name_or_path is not None:  # the folder gives the config (and tokenizer); these the weights
            source = CheckpointSource(source.name, "state_dict", source.config, tokenizer_path=source.tokenizer_path,
                                      subfolder=source.subfolder, fairseq_state=state_dict)
        cfg = source.config
        for key, value in config_overrides.items():
            if key == "num_labels":
                cfg.num_labels = value
            elif hasattr(cfg, key):
                setattr(cfg, key, value)
            else:
                raise TypeError(f"from_pretrained() got an unexpected keyword argument {key!r}")
        if attn_implementation is not None:  # eager gives attention weights (output_attentions)
            cfg._attn_implementation = attn_implementation
        with torch.device("meta"), _skip_init():
            model = cls(cfg, init=False)  # type: ignore[call-arg]
        info = load_into(model, source, dtype=parse_dtype(dtype), device=device,
                         ignore_mismatched_sizes=ignore_mismatched_sizes, allow_missing=output_loading_info or name_or_path is None)
        model.eval()
        model.name_or_path = "" if name_or_path is None else str(name_or_path)  # type: ignore[attr-defined]
        model.tokenizer_source = (source.tokenizer_path, source.extra_symbols)  # type: ignore[attr-defined]
        model.weight_files = list(source.files)  # type: ignore[attr-defined]
        if model.can_generate() and generation_config is not None:
            model.generation_config = generation_config
        elif model.can_generate() and folder.kind == "hf":
            model.generation_config = _read_generation_config(folder, cfg, **hub)
        return (model, info.to_dict()) if output_loading_info else model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        tokenizer: Any = None,
        max_shard_size: int | str = "50GB",
        safe_serialization: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
        **ignored: Any,
    ) -> Path:
        """config.json, generation_config.json (a model that generates), the weights and the
        tokenizer files: a directory transformers loads with the same logits.

        max_shard_size: bytes per weight file, an int or a size as transformers (huggingface_hub)
        reads it: "5GB", "200MB", "1.5GB" (units of 1000); above it the weights are split into
        model-00001-of-0000N.safetensors + model.safetensors.index.json, as transformers names them.
        safe_serialization: False writes pytorch_model.bin (torch.save) instead of safetensors;
        biogpt-cli still reads .bin files only through its allow-listed unpickler.
        tokenizer: the one to save; None = the matching bundled BioGPT vocabulary; False =
        weights and config only (no sacremoses needed).
        state_dict, is_main_process: transformers' Trainer passes them (the tensors to write; only
        the main process writes). Other transformers options (push_to_hub, variant, token, ...)
        are ignored with a log line.

        The folder is written under a temporary name and appears only with all its files (see
        `model_directory`); a full disk raises OutputError naming it and leaves nothing behind."""
        directory = Path(save_directory)
        if ignored:
            logger.info("save_pretrained: ignored transformers options %s", ", ".join(sorted(ignored)))
        if not is_main_process:
            return directory
        limit = parse_shard_size(max_shard_size)  # a bad size fails before anything is written
        with model_directory(directory) as tmp:
            self.write_pretrained(
                tmp, tokenizer=tokenizer, max_shard_size=limit, safe_serialization=safe_serialization, state_dict=state_dict
            )
        return directory

    def write_pretrained(
        self,
        directory: Path,
        *,
        tokenizer: Any = None,
        max_shard_size: int | str = "50GB",
        safe_serialization: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """save_pretrained's files written straight into `directory`, an empty folder the caller
        makes appear atomically (the temporary folder of `model_directory`, which a trainer also
        puts its own files into)."""
        config = self.config
        set_config_key(config, "architectures", [type(self).__name__])
        set_config_key(config, "dtype", str(self.dtype).removeprefix("torch."))  # type: ignore[attr-defined]
        (directory / CONFIG_NAME).write_text(config.to_json_string(), encoding="utf-8")
        if self.can_generate() and self.generation_config is not None:
            from .generation.config import GENERATION_CONFIG_NAME

            (directory / GENERATION_CONFIG_NAME).write_text(self.generation_config.to_json_string(), encoding="utf-8")
        source = state_dict if state_dict is not None else self.state_dict()  # type: ignore[attr-defined]
        state = {k: _own_storage(v.detach().contiguous().cpu()) for k, v in source.items()}
        if config.tie_word_embeddings:
            state = {k: v for k, v in state.items() if not k.endswith("output_projection.weight")}
        write_weights(
            state, directory, max_shard_size=parse_shard_size(max_shard_size),
            safe_serialization=safe_serialization, total_parameters=self.num_parameters(),
        )
        tok = tokenizer if tokenizer is not None else self._default_tokenizer()
        if tok is not None and tok is not False:
            tok.save_pretrained(directory)

    def _default_tokenizer(self) -> Any:
        from .tokenizer import BioGptTokenizer

        path, extra = getattr(self, "tokenizer_source", (None, []))
        if path is not None:
            try:
                return BioGptTokenizer.from_pretrained(path, extra_symbols=extra)
            except (VocabularyError, ModelNotFoundError, PathError) as exc:
                logger.warning("tokenizer of %s not saved: %s", path, exc)
                return None
        vocab = self.config.vocab_size
        for name in ("microsoft/biogpt", "microsoft/BioGPT-Large"):
            tok = BioGptTokenizer.from_pretrained(name)
            if len(tok) == vocab:
                return tok
        logger.warning("no tokenizer saved: pass tokenizer= to save_pretrained (vocab_size %d)", vocab)
        return None


def _read_generation_config(
    source: CheckpointSource, config: BioGptConfig, **hub: Any
) -> Any:
    """The model folder's generation_config.json, else the defaults from its config (as
    transformers: a folder without one generates with its config's special tokens)."""
    from .generation.config import GENERATION_CONFIG_NAME, GenerationConfig
    from .hub import resolve_file

    found = resolve_file(source.name, GENERATION_CONFIG_NAME, required=False, subfolder=source.subfolder, **hub)
    if found is None:
        return GenerationConfig.from_model_config(config)
    try:
        return GenerationConfig.from_json_file(found)
    except (ConfigError, InvalidOptionError) as exc:
        # transformers, too, loads the model with its config's defaults and says why
        logger.warning("%s; generating with the model config's defaults", exc)
        return GenerationConfig.from_model_config(config)


# ============================================================================ writing
_WEIGHT_FILES = (SAFE_WEIGHTS, SAFE_INDEX, PT_WEIGHTS, PT_INDEX)
_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


@contextlib.contextmanager
def model_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """`files.atomic_directory` for a model folder: a new folder appears only with all its files.
    Saved over an existing model, the weight files the new save does not write (a single file
    where shards were, shards where a single file was, pytorch_model.bin) are removed once the new
    files are complete, just before they are moved in: a loader never sees a stale
    model.safetensors beside a new index. Other files there (a user's notes) are kept."""
    target = Path(path)
    with atomic_directory(target) as tmp:
        yield tmp
        if target.is_dir():
            written = {p.name for p in tmp.iterdir()}
            for old in target.iterdir():
                if old.name not in written and (old.name in _WEIGHT_FILES or _SHARD.match(old.name)):
                    old.unlink(missing_ok=True)


_OS_ERROR = re.compile(r"(?:os error|code:) (\d+)")


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' save_file, whose I/O failures (a SafetensorError with the OS error inside
    its text: "I/O error: File too large (os error 27)") become OSErrors, which the atomic
    writers report as "PATH: file too large". Other SafetensorErrors are ours to fix: raised."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as exc:
        found = _OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def weights_fingerprint(files: list[Path]) -> dict[str, str]:
    """Provenance for outputs: the hub revision when the files come from the hub cache, and a
    content hash (blake2b over the weight files) that identifies local weights exactly."""
    import hashlib

    out: dict[str, str] = {}
    for f in files:
        parts = Path(f).parts
        if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts):
            out["revision"] = parts[parts.index("snapshots") + 1]
            break
    digest = hashlib.blake2b(digest_size=16)
    for f in sorted(str(x) for x in files):
        with open(f, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    out["weights_blake2b"] = digest.hexdigest()
    return out


_SIZE_UNITS = {"TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3}


def parse_shard_size(size: int | str) -> int:
    """max_shard_size in bytes: an int, or digits and a unit as huggingface_hub's
    `parse_size_to_int` reads them for transformers' save_pretrained ("5GB", "200MB", "1.5GB";
    TB/GB/MB/KB, units of 1000, any case)."""
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise InvalidOptionError(f"max_shard_size must be a number of bytes or a size such as '5GB', got {size!r}")
    if isinstance(size, int):
        value = size
    else:
        text = size.strip()
        unit = text[-2:].upper()
        if unit not in _SIZE_UNITS:
            raise InvalidOptionError(f"max_shard_size {size!r}: unit must be one of TB, GB, MB, KB (e.g. '5GB')")
        try:
            value = int(float(text[:-2].strip()) * _SIZE_UNITS[unit])
        except ValueError:
            raise InvalidOptionError(f"max_shard_size {size!r}: expected a number before the unit (e.g. '5GB')") from None
    if value < 1:
        raise InvalidOptionError(f"max_shard_size must be positive, got {size!r}")
    return value


def _shard(state: dict[str, torch.Tensor], max_shard_size: int) -> list[dict[str, torch.Tensor]]:
    """huggingface_hub's split (what transformers' save_pretrained uses), so a model is cut into
    the same files: tensors in key order; a tensor bigger than the limit gets a shard of its own,
    the others fill the current shard until the next one would pass the limit."""
    shards: list[dict[str, torch.Tensor]] = []
    current: dict[str, torch.Tensor] = {}
    size = 0
    for key, tensor in state.items():
        n = tensor.numel() * tensor.element_size()
        if n > max_shard_size:
            shards.append({key: tensor})
            continue
        if size + n > max_shard_size:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensor
        size += n
    if current or not shards:
        shards.append(current)
    return shards


def write_weights(
    state: dict[str, torch.Tensor],
    directory: Path,
    *,
    max_shard_size: int,
    safe_serialization: bool = True,
    total_parameters: int | None = None,
) -> list[str]:
    """The weight files of a model folder, named as transformers names them; returns their names.
    One file (model.safetensors / pytorch_model.bin) when it fits `max_shard_size`, else shards
    and an index with transformers' metadata (total_parameters, total_size)."""
    single, index_name = (SAFE_WEIGHTS, SAFE_INDEX) if safe_serialization else (PT_WEIGHTS, PT_INDEX)
    stem, suffix = single.rsplit(".", 1)
    shards = _shard(state, max_shard_size)

    def save(tensors: dict[str, torch.Tensor], path: Path) -> None:
        if safe_serialization:
            save_safetensors(tensors, path)
        else:
            torch.save(tensors, path)

    if len(shards) == 1:
        save(shards[0], directory / single)
        return [single]
    weight_map: dict[str, str] = {}
    names = []
    for i, shard in enumerate(shards, 1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.{suffix}"
        save(shard, directory / name)
        weight_map.update({k: name for k in shard})
        names.append(name)
    metadata: dict[str, int] = {"total_size": sum(t.numel() * t.element_size() for t in state.values())}
    if total_parameters is not None:
        metadata["total_parameters"] = total_parameters
    (directory / index_name).write_text(
        json.dumps({"metadata": metadata, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return [*names, index_name]


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """safetensors refuses tensors that share memory (views into one buffer): copy only those."""
    return t if t.untyped_storage().nbytes() == t.numel() * t.element_size() else t.clone()
