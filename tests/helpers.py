"""Tiny random models and checkpoint directories in every format the product loads."""

from __future__ import annotations

import argparse
import shutil
from collections import OrderedDict
from pathlib import Path

import torch

from model import BioGptConfig, BioGptForCausalLM

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "model" / "vocab" / "biogpt"


def tiny_config(**overrides) -> BioGptConfig:
    base = dict(vocab_size=1000, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BioGptConfig.from_preset("tiny", **{**base, **overrides})


def tiny_lm(seed: int = 0, **overrides) -> BioGptForCausalLM:
    torch.manual_seed(seed)
    model = BioGptForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so parity tests see them
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def diverse_lm(seed: int = 0) -> BioGptForCausalLM:
    """A tiny model whose greedy continuations vary from token to token (a tied tiny model tends
    to repeat one token), so generation tests notice wrong positions or cache entries."""
    return tiny_lm(seed, vocab_size=1000, initializer_range=0.2, tie_word_embeddings=False)


def to_fairseq_state(model: BioGptForCausalLM) -> "OrderedDict[str, torch.Tensor]":
    state = OrderedDict()
    for key, value in model.state_dict().items():
        if key == "output_projection.weight":
            state["decoder.output_projection.weight"] = value.clone()
        else:
            state["decoder." + key.removeprefix("biogpt.")] = value.clone()
    state["decoder.version"] = torch.tensor([3.0])
    return state


def write_fairseq_dir(
    directory: Path,
    model: BioGptForCausalLM,
    *,
    dict_entries: int,
    cfg_style: str = "omegaconf",
    optimizer_state_mb: int = 0,
    checkpoint_name: str = "checkpoint.pt",
) -> Path:
    """A directory as fairseq leaves it: checkpoint.pt (cfg as an omegaconf object or argparse
    args), dict.txt holding the first `dict_entries` words of BioGPT's dictionary, bpecodes."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = (VOCAB / "dict.txt").read_text(encoding="utf-8").splitlines()[:dict_entries]
    (directory / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(VOCAB / "bpecodes", directory / "bpecodes")
    c = model.config
    hp = {
        "_name": "transformer_lm_prompt_biogpt",
        "decoder_layers": c.num_hidden_layers,
        "decoder_attention_heads": c.num_attention_heads,
        "decoder_embed_dim": c.hidden_size,
        "decoder_ffn_embed_dim": c.intermediate_size,
        "decoder_normalize_before": True,
        "activation_fn": c.hidden_act,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "max_target_positions": c.max_position_embeddings,
        "share_decoder_input_output_embed": True,
        "no_scale_embedding": False,
    }
    ckpt: dict = {"model": to_fairseq_state(model), "optimizer_history": [{"criterion_name": "CrossEntropyCriterion"}], "extra_state": {"epoch": 3}}
    if cfg_style == "omegaconf":
        from omegaconf import OmegaConf

        ckpt["cfg"] = OmegaConf.create({"model": hp, "task": {"_name": "language_modeling_prompt"}, "common": {"fp16": True}})
        ckpt["args"] = None
    else:
        ckpt["args"] = argparse.Namespace(**hp, task="language_modeling_prompt")
    if optimizer_state_mb:
        n = optimizer_state_mb * 1024 * 1024 // 4
        ckpt["last_optimizer_state"] = {"state": {0: {"exp_avg": torch.zeros(n), "exp_avg_sq": torch.zeros(n)}}}
    torch.save(ckpt, directory / checkpoint_name)
    return directory


def eos_heavy_lm(seed: int = 0, boost: float = 0.3, vocab_size: int = 60) -> BioGptForCausalLM:
    """A tiny model that ends sequences often (EOS logit raised through the final LayerNorm's
    bias), so finishing logic of every search strategy is exercised."""
    model = tiny_lm(seed, vocab_size=vocab_size)
    with torch.no_grad():
        e = model.biogpt.embed_tokens.weight[2]
        model.biogpt.layer_norm.bias.add_(boost * e / e.norm() ** 2)
    return model
