"""Reading PyTorch pickles without running code.

`torch.load(weights_only=True)` refuses fairseq checkpoints: their metadata (an omegaconf `cfg`,
an argparse `args`) needs globals outside torch's allow-list. Unpickling them normally would run
whatever the pickle names, so `safe_torch_load` falls back to an allow-list unpickler that turns
omegaconf/fairseq objects into inert `_Record`s without importing those packages, and refuses a
pickle that names anything else (os.system, builtins.eval, ...) before anything runs.
Files are memory-mapped where the format allows, so unused tensors (optimizer state) stay on disk.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import re
import types
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError


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
            raise checkpoint_problem(self.source, _refused(f"{module}.{name}"), unsafe=True)
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


def checkpoint_problem(path: str | os.PathLike[str], why: str, *, unsafe: bool = False) -> CheckpointError:
    """The one error for a weights, checkpoint or training-state file that cannot be read or
    trusted: "PATH: corrupt or unsafe checkpoint (WHY)", WHY a few words (never torch's advice
    to load it with weights_only=False, which would run what the pickle names)."""
    cls = UnsafeCheckpointError if unsafe else CheckpointError
    return cls(f"{path}: corrupt or unsafe checkpoint ({why})")


def _refused(qualname: str) -> str:
    return f"refused: the pickle imports {qualname}, which could run code; nothing was executed"


_TORCH_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", re.IGNORECASE)


def short_reason(exc: BaseException) -> str:
    """A library's exception in a few words: torch's weights-only preamble and documentation
    links dropped, the first sentence of what is left, at most ~120 characters."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    elif text.startswith("Weights only load failed"):
        text = text.split("\n\n", 1)[-1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Check the documentation")), "")
    line = line.split(". ", 1)[0].rstrip(".")
    if not line:
        return type(exc).__name__
    if line.startswith(("Unsupported operand", "invalid load key")):  # the pickle layer's words for noise
        line = f"not a PyTorch file: {line}"
    return line if len(line) <= 120 else line[:117] + "..."


def _torch_load(path: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # torch warns about pickle protocols: noise for a user
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", **kwargs)


def load_state(path: str | os.PathLike[str]) -> Any:
    """A file written by torch.save of tensors and plain containers (a training state), read with
    torch's weights-only unpickler: nothing a pickle names is imported. A file that is not such a
    pickle (random bytes, cut short, naming os.system) is a `checkpoint_problem`."""
    path = Path(path)
    try:
        return _torch_load(path, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file") from None
    except OSError as exc:
        if exc.errno is None:
            raise checkpoint_problem(path, short_reason(exc)) from None
        raise  # a failing disk, not a bad file: the CLI names it as such
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...
        found = _TORCH_GLOBAL.search(str(exc))
        if found:
            raise checkpoint_problem(path, _refused(found.group(1)), unsafe=True) from None
        raise checkpoint_problem(path, short_reason(exc)) from None


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
            return _torch_load(path, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:  # needs globals outside torch's weights-only set
            last_error = exc
            break
        except RuntimeError as exc:  # e.g. mmap of a legacy (non-zip) file
            last_error = exc
            continue
        except Exception as exc:  # noqa: BLE001 - EOFError and the like: a cut file; the allow-list path says
            last_error = exc
            break
    for mmap in (True, False):
        try:
            return _torch_load(path, weights_only=False, mmap=mmap, pickle_module=_safe_pickle_module(str(path)))
        except UnsafeCheckpointError:
            raise
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc).lower():
                continue
            last_error = exc
            break
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file
            last_error = exc
            break
    raise checkpoint_problem(path, short_reason(last_error) if last_error else "unreadable")


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
