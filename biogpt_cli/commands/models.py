"""`biogpt models`: the presets, bundled vocabularies and hub checkpoints biogpt-cli knows."""

from __future__ import annotations

import typer

KNOWN_CHECKPOINTS = {
    "microsoft/biogpt": "BioGPT (347M), pre-trained on 15M PubMed abstracts",
    "microsoft/BioGPT-Large": "BioGPT-Large (1.5B)",
    "microsoft/BioGPT-Large-PubMedQA": "BioGPT-Large fine-tuned on PubMedQA (reasoning-free setting)",
}


def list_models() -> list[dict[str, str]]:
    from model.config import PRESETS, BioGptConfig
    from model.tokenizer import BUNDLED_VOCABULARIES

    rows = []
    for name, about in KNOWN_CHECKPOINTS.items():
        vocab = "bundled" if name.lower() in BUNDLED_VOCABULARIES else "from the hub"
        rows.append({"name": name, "kind": "hub checkpoint", "tokenizer": vocab, "about": about})
    for name in PRESETS:
        c = BioGptConfig.from_preset(name)
        about = f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads"
        rows.append({"name": name, "kind": "preset (--from-scratch)", "tokenizer": "bundled", "about": about})
    return rows


def models() -> None:
    """List known checkpoints and architecture presets."""
    for row in list_models():
        typer.echo("\t".join((row["name"], row["kind"], row["tokenizer"], row["about"])))


def register(app: typer.Typer) -> None:
    app.command("models")(models)
