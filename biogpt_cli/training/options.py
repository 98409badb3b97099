"""How a training run's options resolve: built-in defaults, then a recipe's (the official
fine-tuning recipe), then a JSON or YAML config file, then the values given explicitly (None
means not given). Every range is checked up front, for given values and the config file alike,
so a typo is one error before any data or model is loaded, not an optimizer's exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from biogpt import DEFAULT_MODEL
from biogpt.model.errors import InvalidOptionError

from .errors import TrainingError

DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL, "from_scratch": None, "epochs": 3, "max_steps": None, "lr": 5e-5, "batch_size": 8,
    "grad_accum": 1, "max_samples": None, "seed": 42, "deterministic": False, "dropout": None, "eval_steps": None, "save_steps": None,
    "save_total_limit": None, "patience": None, "scheduler": "linear", "warmup_steps": 0, "bf16": False, "gradient_checkpointing": False, "cuda_graph": True,
    "resume": None, "device": "auto", "dev": None, "block_size": None,
    # generative task fine-tuning (train re / qa / classify --generative)
    "task": None, "recipe": "default", "max_tokens": None, "data_split": "train", "dev_split": "valid", "dev_limit": None,
    "setting": None, "template": None, "max_new_tokens": None, "loss": None, "betas": [0.9, 0.999], "max_grad_norm": 1.0,
    "weight_decay": 0.01, "save_epochs": True, "average_last": None,
}

# A randomly initialised model needs a larger step and more passes than fine-tuning; these
# apply only where neither the config file, a recipe nor a given value chose one.
FROM_SCRATCH_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "epochs": 20}

# (option, lowest allowed, whether the lowest itself is allowed)
RANGES = (
    ("lr", 0.0, False), ("epochs", 1, True), ("max_steps", 1, True), ("batch_size", 1, True), ("grad_accum", 1, True),
    ("max_samples", 1, True), ("eval_steps", 1, True), ("save_steps", 1, True), ("save_total_limit", 1, True),
    ("patience", 1, True), ("warmup_steps", 0, True), ("dropout", 0.0, True), ("max_grad_norm", 0.0, False),
    ("weight_decay", 0.0, True), ("average_last", 1, True), ("max_tokens", 1, True), ("block_size", 1, True),
)


def read_config(config_file: Path) -> dict[str, Any]:
    """The option values of a JSON or YAML file (dashes in names read as underscores)."""
    from biogpt.model.files import read_text  # the one reader: PathError / file:line for bad bytes

    text = read_text(config_file)
    try:
        if config_file.suffix.lower() in (".yaml", ".yml"):
            import yaml  # PyYAML comes with `datasets`

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"--config {config_file}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise TrainingError(f"--config {config_file}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TrainingError(f"--config {config_file}: expected a mapping of option names to values")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise TrainingError(f"--config {config_file}: unknown keys {', '.join(sorted(unknown))}")
    return data


def resolve_options(config_file: Optional[Path], given: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < `base` (a recipe's defaults) < `config_file` < `given` (None: not given)."""
    options = {**DEFAULTS, **(base or {})}
    configured = read_config(config_file) if config_file is not None else {}
    options.update(configured)
    options.update({k: v for k, v in given.items() if v is not None})
    if options["from_scratch"]:
        chosen = {k for k, v in given.items() if v is not None} | set(base or {}) | set(configured)
        for key, value in FROM_SCRATCH_DEFAULTS.items():
            if key not in chosen:
                options[key] = value
    check_ranges(options)
    return options


def check_ranges(options: dict[str, Any]) -> None:
    for name, lowest, inclusive in RANGES:
        value = options.get(name)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or not (value >= lowest if inclusive else value > lowest):
            flag = "--" + name.replace("_", "-")
            raise InvalidOptionError(f"{flag} {value}: expected a number {'>=' if inclusive else '>'} {lowest}")
    if options.get("dropout") is not None and not options["dropout"] < 1:
        raise InvalidOptionError(f"--dropout {options['dropout']}: expected a probability below 1")
