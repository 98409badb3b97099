"""Checkpoint I/O: Hugging Face directories and hub ids, original fairseq checkpoints, safely.

- Safe: safetensors first; pickles (pytorch_model.bin, fairseq checkpoint.pt) only through
  `torch.load(weights_only=True)` or, for fairseq's metadata (an omegaconf `cfg`, an argparse
  `args`), an allow-list unpickler that turns omegaconf/fairseq objects into inert records
  without importing them. A pickle that names anything else (os.system, builtins.eval, ...) is
  refused before anything runs.
- Lean: the model is built on the meta device and each tensor is assigned as it is read
  (memory-mapped files), so loading never holds two copies of the weights; optimizer state in a
  fairseq checkpoint stays on disk.
- fairseq: `decoder.*` keys become transformers' `biogpt.*`; the architecture comes from the
  checkpoint's cfg/args (or the tensor shapes); extra embedding rows after dict.txt are the
  fine-tuned checkpoints' learned prompt tokens `learned1...learnedN`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import pickle
import re
import struct
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import CONFIG_NAME, BioGptConfig
from .errors import CheckpointError, InvalidOptionError, ModelNotFoundError, UnsafeCheckpointError, VocabularyError

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"
FAIRSEQ_CHECKPOINTS = ("checkpoint.pt", "checkpoint_avg.pt", "checkpoint_best.pt", "checkpoint_last.pt")
HEAD_KEYS = ("output_projection.", "classifier.", "score.")

_DTYPES = {
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
    """torch dtype, "auto" (keep the checkpoint's), or None (float32, as transformers)."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    key = str(dtype).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise InvalidOptionError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
    return _DTYPES[key]


# ============================================================================ safe unpickling
class _Record:
    """Stands in for a class we refuse to import (omegaconf, fairseq, typing): it only stores
    the constructor arguments and pickled state, and runs none of the original code."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Record":
        obj = object.__new__(cls)
        obj._args = args
        obj._state = None
        obj._items = {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def append(self, value: Any) -> None:
        self._items[len(self._items)] = value

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)

    def __repr__(self) -> str:
        return f"<record {self._qualname}>"


_record_classes: dict[str, type] = {}


def _record_class(qualname: str) -> type:
    if qualname not in _record_classes:
        _record_classes[qualname] = type(qualname.rsplit(".", 1)[-1], (_Record,), {"_qualname": qualname})
    return _record_classes[qualname]


_RECORD_MODULES = ("omegaconf", "fairseq", "typing", "enum")
_SAFE_BUILTINS = {
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
    "bytearray", "bool", "slice", "range", "object", "NoneType",
}


def _allowed_global(module: str, name: str) -> Any:
    qualname = f"{module}.{name}"
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = _get_allowed_globals()
        if qualname in allowed:
            return allowed[qualname]
    except ImportError:  # pragma: no cover - very old torch
        pass
    if module.startswith("torch") and (name.endswith("Storage") or name in ("_rebuild_tensor_v2", "_rebuild_parameter")):
        import importlib

        return getattr(importlib.import_module(module), name)
    if qualname in ("collections.OrderedDict", "collections.defaultdict"):
        import collections

        return getattr(collections, name)
    if qualname == "argparse.Namespace":
        return argparse.Namespace
    if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
        import builtins

        return getattr(builtins, name)
    if qualname == "copyreg._reconstructor":
        return _safe_reconstructor
    if module.split(".")[0] in _RECORD_MODULES:
        return _record_class(qualname)
    return None


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    if base is not object or not issubclass(cls, (_Record, argparse.Namespace)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor on {cls!r}/{base!r} is not allowed")
    return object.__new__(cls)


class _SafeUnpickler(pickle.Unpickler):
    source = "checkpoint"

    def find_class(self, module: str, name: str) -> Any:
        import _compat_pickle  # Python 2 names in protocol-2 pickles (__builtin__.long, ...)

        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to load: the pickle imports {module}.{name}, which is "
                "not weights or checkpoint metadata and could run code; nothing was executed"
            )
        return obj


def _safe_pickle_module(source: str) -> types.ModuleType:
    module = types.ModuleType("biogpt_safe_pickle")

    class Unpickler(_SafeUnpickler):
        pass

    Unpickler.source = source

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs: Any) -> Any:
        return Unpickler(io.BytesIO(data), **kwargs).load()

    module.Unpickler = Unpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.loads = loads  # type: ignore[attr-defined]
    module.__name__ = "pickle"  # torch.load checks the name for its legacy path
    return module


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """torch.load without arbitrary code: weights_only first, then the metadata allow-list.

    Memory-mapped where the file format allows it, so unused tensors (optimizer state) are
    never read into memory.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    last_error: Exception | None = None
    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:  # needs globals outside torch's weights-only set
            last_error = exc
            break
        except RuntimeError as exc:  # e.g. mmap of a legacy (non-zip) file
            last_error = exc
            continue
    for mmap in (True, False):
        try:
            return torch.load(
                path, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_safe_pickle_module(str(path))
            )
        except UnsafeCheckpointError:
            raise
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc).lower():
                continue
            last_error = exc
            break
        except Exception as exc:  # a truncated or corrupt file
            last_error = exc
            break
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({last_error})")


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """omegaconf records / Namespaces -> plain dicts and lists (for reading fairseq's cfg)."""
    if _depth > 50:
        return None
    if isinstance(obj, _Record):
        state = obj._state
        if isinstance(state, dict) and "_content" in state:
            return to_plain(state["_content"], _depth + 1)
        if isinstance(state, dict) and "_val" in state:
            return to_plain(state["_val"], _depth + 1)
        if isinstance(state, tuple) and state and isinstance(state[-1], dict):
            return to_plain(state[-1], _depth + 1)
        if obj._args:
            return to_plain(obj._args[0], _depth + 1)
        if obj._items:
            return {k: to_plain(v, _depth + 1) for k, v in obj._items.items()}
        return to_plain(state, _depth + 1) if isinstance(state, dict) else None
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v, _depth + 1) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {k: to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return None


# ============================================================================ sources
@dataclass
class CheckpointSource:
    """Where the weights of one model come from, resolved before any tensor is read."""

    name: str
    kind: str  # "hf" or "fairseq"
    config: BioGptConfig
    files: list[Path] = field(default_factory=list)
    extra_symbols: list[str] = field(default_factory=list)
    fairseq_state: dict[str, torch.Tensor] | None = None
    tokenizer_path: str | None = None

    def tensors(self) -> Iterator[tuple[str, torch.Tensor, Path]]:
        """(transformers key, tensor, file) for every weight, one at a time."""
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
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, struct.error) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def fairseq_key(key: str) -> str | None:
    """fairseq `decoder.*` names -> transformers' (None for bookkeeping entries)."""
    if key.endswith(".version") or key.endswith("_float_tensor"):
        return None
    if key == "decoder.output_projection.weight":
        return "output_projection.weight"
    if key.startswith("decoder."):
        return "biogpt." + key[len("decoder.") :]
    return None


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    config: BioGptConfig | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> CheckpointSource:
    from .hub import resolve_file

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".pt":
        return _fairseq_source(path, path.parent, config)
    if path.is_dir() and not (path / CONFIG_NAME).is_file():
        ckpt = find_fairseq_checkpoint(path)
        if ckpt is not None:
            return _fairseq_source(ckpt, path, config)
        raise ModelNotFoundError(
            f"{path}: not a model directory; expected {CONFIG_NAME} with {SAFE_WEIGHTS} or "
            f"{PT_WEIGHTS} (Hugging Face), or {' / '.join(FAIRSEQ_CHECKPOINTS)} with dict.txt and "
            "bpecodes (fairseq)"
        )
    common = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
    config_file = resolve_file(name, CONFIG_NAME, **common)
    assert config_file is not None
    if config is None:
        config = BioGptConfig.from_json_file(config_file)
    for single, index in ((SAFE_WEIGHTS, SAFE_INDEX), (PT_WEIGHTS, PT_INDEX)):
        found = resolve_file(name, single, required=False, **common)
        if found is not None:
            return CheckpointSource(name, "hf", config, [found], tokenizer_path=name)
        index_file = resolve_file(name, index, required=False, **common)
        if index_file is not None:
            try:
                weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{index_file}: malformed shard index ({exc})") from None
            shards = []
            for shard in dict.fromkeys(weight_map.values()):
                shard_path = resolve_file(name, shard, **common)
                assert shard_path is not None
                shards.append(shard_path)
            return CheckpointSource(name, "hf", config, shards, tokenizer_path=name)
    where = path if path.is_dir() else name
    raise ModelNotFoundError(
        f"{where}: no weights found; expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {PT_WEIGHTS} or {PT_INDEX}"
    )


def find_fairseq_checkpoint(directory: Path) -> Path | None:
    for candidate in FAIRSEQ_CHECKPOINTS:
        if (directory / candidate).is_file():
            return directory / candidate
    others = sorted(directory.glob("*.pt"))
    return others[0] if others else None


def _fairseq_source(ckpt_path: Path, directory: Path, config: BioGptConfig | None) -> CheckpointSource:
    ckpt = safe_torch_load(ckpt_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{ckpt_path}: not a fairseq checkpoint (expected a dict with a 'model' state dict)")
    state: dict[str, torch.Tensor] = ckpt["model"]
    if "decoder.embed_tokens.weight" not in state:
        raise CheckpointError(
            f"{ckpt_path}: no decoder.embed_tokens.weight; not a fairseq language-model checkpoint"
        )
    dict_size = _fairseq_dict_size(directory)
    rows = state["decoder.embed_tokens.weight"].shape[0]
    extra: list[str] = []
    if dict_size is not None:
        if rows < dict_size:
            raise CheckpointError(
                f"{ckpt_path}: decoder.embed_tokens.weight has {rows} rows but {directory / 'dict.txt'} "
                f"defines {dict_size} symbols (with the 4 specials); the dictionary belongs to another model"
            )
        extra = [f"learned{i}" for i in range(1, rows - dict_size + 1)]
    if config is None:
        config = fairseq_config(ckpt, state, ckpt_path)
    tokenizer_path = str(directory) if (directory / "dict.txt").is_file() else None
    return CheckpointSource(str(ckpt_path), "fairseq", config, [ckpt_path], extra, state, tokenizer_path)


def _fairseq_dict_size(directory: Path) -> int | None:
    dict_file = directory / "dict.txt"
    if not dict_file.is_file():
        return None
    from .tokenizer import fairseq_dict_to_vocab

    return len(fairseq_dict_to_vocab(dict_file))


def fairseq_extra_symbols(directory: Path) -> list[str]:
    """Learned prompt symbols of the checkpoint in `directory` (for the tokenizer alone)."""
    ckpt = find_fairseq_checkpoint(Path(directory))
    if ckpt is None:
        return []
    try:
        return _fairseq_source(ckpt, Path(directory), BioGptConfig()).extra_symbols
    except (CheckpointError, VocabularyError) as exc:
        logger.warning("could not read %s for extra symbols: %s", ckpt, exc)
        return []


def fairseq_config(ckpt: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> BioGptConfig:
    """The architecture of a fairseq transformer_lm checkpoint, from cfg.model / args, checked
    against (and completed by) the tensor shapes."""
    cfg = to_plain(ckpt.get("cfg")) or {}
    hp: dict[str, Any] = {}
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        hp.update(cfg["model"])
    args = to_plain(ckpt.get("args"))
    if isinstance(args, dict):
        for k, v in args.items():
            hp.setdefault(k, v)

    if hp.get("decoder_normalize_before") is False:
        raise CheckpointError(f"{path}: post-LayerNorm decoders (decoder_normalize_before=False) are not BioGPT")
    if "decoder.embed_positions.weight" not in state:
        raise CheckpointError(f"{path}: no learned position embeddings (decoder.embed_positions.weight); not BioGPT")
    if any(k.startswith("decoder.layernorm_embedding") for k in state):
        raise CheckpointError(f"{path}: layernorm_embedding is not part of BioGPT's architecture")

    vocab, hidden = state["decoder.embed_tokens.weight"].shape
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.layers\.(\d+)\.", k))}
    num_layers = max(layer_ids) + 1 if layer_ids else 0
    ffn = state["decoder.layers.0.fc1.weight"].shape[0] if num_layers else 4 * hidden
    positions = state["decoder.embed_positions.weight"].shape[0] - 2
    heads = hp.get("decoder_attention_heads") or {1024: 16, 1600: 25}.get(hidden)
    if not heads:
        raise CheckpointError(
            f"{path}: the checkpoint's cfg does not give decoder_attention_heads and hidden size {hidden} "
            "is not a known BioGPT size; pass a config"
        )
    for key, found, expected in (
        ("decoder_embed_dim", hidden, hp.get("decoder_embed_dim")),
        ("decoder_layers", num_layers, hp.get("decoder_layers")),
        ("decoder_ffn_embed_dim", ffn, hp.get("decoder_ffn_embed_dim")),
    ):
        if expected is not None and int(expected) != found:
            raise CheckpointError(f"{path}: cfg says {key}={expected} but the weights have {found}")
    share = hp.get("share_decoder_input_output_embed", True)
    if not share and "decoder.output_projection.weight" not in state:
        share = True
    return BioGptConfig(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=num_layers,
        num_attention_heads=int(heads),
        intermediate_size=int(ffn),
        hidden_act=str(hp.get("activation_fn") or "gelu"),
        hidden_dropout_prob=float(hp.get("dropout", 0.1) or 0.0),
        attention_probs_dropout_prob=float(hp.get("attention_dropout", 0.1) or 0.0),
        activation_dropout=float(hp.get("activation_dropout", 0.0) or 0.0),
        max_position_embeddings=int(positions),
        scale_embedding=not bool(hp.get("no_scale_embedding", False)),
        tie_word_embeddings=bool(share),
        extra={"architectures": ["BioGptForCausalLM"]},
    )


# ============================================================================ loading into a model
def load_into(
    model: torch.nn.Module,
    source: CheckpointSource,
    *,
    dtype: torch.dtype | str | None,
    device: torch.device | str | None,
) -> None:
    """Assign every tensor of `source` to the meta-built `model`, converting as it goes."""
    expected = dict(model.state_dict(keep_vars=True))
    prefix = getattr(model, "base_model_prefix", "")
    has_prefix = bool(prefix)
    tied = getattr(model.config, "tie_word_embeddings", False)
    loaded: set[str] = set()
    unexpected: list[str] = []
    target_dtype: torch.dtype | None = None if dtype == "auto" else (dtype or torch.float32)  # type: ignore[assignment]
    for key, tensor, path in source.tensors():
        key = _adapt_key(key, has_prefix, prefix)
        if key is None:
            continue
        if key not in expected:
            unexpected.append(key)
            continue
        if tied and key.endswith("output_projection.weight"):
            loaded.add(key)  # shares the embedding matrix; checked below through it
            continue
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(_shape_message(path, key, tuple(tensor.shape), want, model.config))
        if tensor.is_floating_point():
            tensor = tensor.to(device=device or "cpu", dtype=target_dtype or tensor.dtype)
        else:
            tensor = tensor.to(device=device or "cpu")
        _assign(model, key, tensor)
        loaded.add(key)
    if unexpected:
        logger.info("ignored %d checkpoint tensors the model does not use: %s", len(unexpected), ", ".join(unexpected[:5]))
    missing = [k for k in expected if k not in loaded and not (tied and k.endswith("output_projection.weight"))]
    head_missing = [k for k in missing if k.startswith(HEAD_KEYS)]
    body_missing = [k for k in missing if k not in head_missing]
    if body_missing:
        raise CheckpointError(
            f"{source.name}: the checkpoint lacks {len(body_missing)} weights the model needs, e.g. "
            f"{', '.join(body_missing[:4])}"
        )
    if head_missing:
        logger.warning(
            "%s: newly initialised (train before use): %s", source.name, ", ".join(head_missing)
        )
        _materialise(model, head_missing, device, target_dtype or torch.float32)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


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

class PretrainedMixin:
    """from_pretrained / save_pretrained for every model class (mixed into modeling.py's base)."""

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
        name_or_path: str | os.PathLike[str],
        *,
        config: BioGptConfig | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        torch_dtype: str | torch.dtype | None = None,
        device_map: Any = None,
        low_cpu_mem_usage: bool | None = None,
        attn_implementation: str | None = None,
        **config_overrides: Any,
    ):
        """Load a Hugging Face directory or hub id, or a fairseq checkpoint directory/file.

        dtype: None loads float32 (as transformers); "auto" keeps the checkpoint's dtype.
        torch_dtype, device_map, low_cpu_mem_usage, attn_implementation: transformers' names, so
        its loading lines work unchanged (see `_transformers_loading_options`).
        """
        dtype, device = _transformers_loading_options(
            dtype=dtype, device=device, torch_dtype=torch_dtype, device_map=device_map, attn_implementation=attn_implementation
        )
        del low_cpu_mem_usage  # always: the model is built on the meta device and filled tensor by tensor
        source = resolve_checkpoint(
            name_or_path, config=config, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
        cfg = source.config
        for key, value in config_overrides.items():
            if key == "num_labels":
                cfg.num_labels = value
            elif hasattr(cfg, key):
                setattr(cfg, key, value)
            else:
                raise TypeError(f"from_pretrained() got an unexpected keyword argument {key!r}")
        with torch.device("meta"), _skip_init():
            model = cls(cfg, init=False)  # type: ignore[call-arg]
        load_into(model, source, dtype=parse_dtype(dtype), device=device)
        model.eval()
        model.name_or_path = str(name_or_path)  # type: ignore[attr-defined]
        model.tokenizer_source = (source.tokenizer_path, source.extra_symbols)  # type: ignore[attr-defined]
        model.weight_files = list(source.files)  # type: ignore[attr-defined]
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        tokenizer: Any = None,
        max_shard_size: int | None = None,
    ) -> Path:
        """config.json + model.safetensors (+ shards and index) + the tokenizer files: a directory
        transformers loads with the same logits. tokenizer: the one to save; None = the matching
        bundled BioGPT vocabulary; False = weights and config only (no sacremoses needed)."""
        from safetensors.torch import save_file

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        config.extra["architectures"] = [type(self).__name__]
        config.extra["dtype"] = str(next(self.parameters()).dtype).removeprefix("torch.")  # type: ignore[attr-defined]
        config.save_pretrained(directory)
        state = {k: _own_storage(v.detach().contiguous().cpu()) for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        if config.tie_word_embeddings:
            state = {k: v for k, v in state.items() if not k.endswith("output_projection.weight")}
        shards = _shard(state, max_shard_size)
        for stale in (SAFE_WEIGHTS, SAFE_INDEX, PT_WEIGHTS, PT_INDEX, *[p.name for p in directory.glob("model-*.safetensors")]):
            (directory / stale).unlink(missing_ok=True)
        if len(shards) == 1:
            save_file(shards[0], str(directory / SAFE_WEIGHTS), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(directory / name), metadata={"format": "pt"})
                weight_map.update({k: name for k in shard})
            total = sum(t.numel() * t.element_size() for t in state.values())
            (directory / SAFE_INDEX).write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
            )
        tok = tokenizer if tokenizer is not None else self._default_tokenizer()
        if tok is not None and tok is not False:
            tok.save_pretrained(directory)
        return directory

    def _default_tokenizer(self) -> Any:
        from .tokenizer import BioGptTokenizer

        path, extra = getattr(self, "tokenizer_source", (None, []))
        if path is not None:
            try:
                return BioGptTokenizer.from_pretrained(path, extra_symbols=extra)
            except (VocabularyError, ModelNotFoundError) as exc:
                logger.warning("tokenizer of %s not saved: %s", path, exc)
                return None
        vocab = self.config.vocab_size
        for name in ("microsoft/biogpt", "microsoft/BioGPT-Large"):
            tok = BioGptTokenizer.from_pretrained(name)
            if len(tok) == vocab:
                return tok
        logger.warning("no tokenizer saved: pass tokenizer= to save_pretrained (vocab_size %d)", vocab)
        return None


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


def _shard(state: dict[str, torch.Tensor], max_shard_size: int | None) -> list[dict[str, torch.Tensor]]:
    if not max_shard_size:
        return [state]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        n = tensor.numel() * tensor.element_size()
        if shards[-1] and size + n > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += n
    return shards


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """safetensors refuses tensors that share memory (q/k/v after fuse_qkv): copy only those."""
    return t if t.untyped_storage().nbytes() == t.numel() * t.element_size() else t.clone()
