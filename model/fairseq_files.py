"""fairseq's checkpoint layout, as the official BioGPT checkpoints use it.

A fairseq directory holds `checkpoint.pt` (a dict: `model`, the state dict; `cfg` or `args`, the
training options) beside dict.txt and bpecodes. This module knows what those mean:
- which file is the checkpoint (`find_fairseq_checkpoint`) and what a valid one holds
  (`read_fairseq_checkpoint`);
- the architecture, from cfg/args checked against the tensor shapes (`fairseq_config`);
- `decoder.*` keys are transformers' `biogpt.*` (`fairseq_key`);
- embedding rows after dict.txt's symbols are the fine-tuned checkpoints' learned prompt tokens
  `learned1...learnedN`: fairseq appended them to the dictionary in memory (`add_symbol`), so
  only the checkpoint's row count says how many there are (`learned_symbols`).

checkpoint.py (loading weights) and tokenizer.py (a tokenizer loaded alone from a fairseq
directory needs the learned tokens too) both import it; it imports neither.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from .config import BioGptConfig
from .errors import CheckpointError
from .safe_pickle import safe_torch_load, to_plain
from .vocab_files import FAIRSEQ_DICT_FILE, fairseq_dict_to_vocab

logger = logging.getLogger(__name__)

FAIRSEQ_CHECKPOINTS = ("checkpoint.pt", "checkpoint_avg.pt", "checkpoint_best.pt", "checkpoint_last.pt")
EMBEDDINGS = "decoder.embed_tokens.weight"


def find_fairseq_checkpoint(directory: Path) -> Path | None:
    """The official names first, then the first other `*.pt` file by name."""
    for candidate in FAIRSEQ_CHECKPOINTS:
        if (directory / candidate).is_file():
            return directory / candidate
    others = sorted(directory.glob("*.pt"))
    return others[0] if others else None


def read_fairseq_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(the checkpoint dict, its `model` state dict), checked to be a fairseq language model.
    Tensors stay memory-mapped: reading a shape touches none of their bytes."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a fairseq checkpoint (expected a dict with a 'model' state dict)")
    state: dict[str, torch.Tensor] = ckpt["model"]
    if EMBEDDINGS not in state:
        raise CheckpointError(f"{path}: no {EMBEDDINGS}; not a fairseq language-model checkpoint")
    return ckpt, state


def learned_symbols(rows: int, directory: Path, ckpt_path: Path) -> list[str]:
    """Names of the `rows` embedding rows after the symbols of `directory`'s dict.txt (specials
    included); none when there is no dict.txt to count from."""
    dict_file = directory / FAIRSEQ_DICT_FILE
    if not dict_file.is_file():
        return []
    dict_size = len(fairseq_dict_to_vocab(dict_file))
    if rows < dict_size:
        raise CheckpointError(
            f"{ckpt_path}: {EMBEDDINGS} has {rows} rows but {dict_file} defines {dict_size} symbols "
            "(with the 4 specials); the dictionary belongs to another model"
        )
    return [f"learned{i}" for i in range(1, rows - dict_size + 1)]


def checkpoint_learned_symbols(directory: Path) -> list[str]:
    """The learned prompt symbols of the checkpoint in `directory`, for a tokenizer loaded without
    the model; empty (with a warning when the checkpoint is unreadable) when there is none."""
    ckpt_path = find_fairseq_checkpoint(directory)
    if ckpt_path is None:
        return []
    try:
        _, state = read_fairseq_checkpoint(ckpt_path)
        return learned_symbols(state[EMBEDDINGS].shape[0], directory, ckpt_path)
    except CheckpointError as exc:
        logger.warning("could not read %s for extra symbols: %s", ckpt_path, exc)
        return []


def fairseq_key(key: str) -> str | None:
    """fairseq `decoder.*` names -> transformers' (None for bookkeeping entries)."""
    if key.endswith(".version") or key.endswith("_float_tensor"):
        return None
    if key == "decoder.output_projection.weight":
        return "output_projection.weight"
    if key.startswith("decoder."):
        return "biogpt." + key[len("decoder.") :]
    return None


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
