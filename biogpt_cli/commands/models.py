"""`biogpt models`: the checkpoints and presets biogpt-cli knows — size, purpose, where to get them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import typer

FAIRSEQ_SOURCE = "github.com/microsoft/BioGPT (README: 'Pre-trained models' / 'Fine-tuned models'); pass the unpacked folder to -m"


@dataclass
class KnownModel:
    name: str
    kind: str
    parameters: str
    purpose: str
    source: str
    usage: str


KNOWN: list[KnownModel] = [
    KnownModel("microsoft/biogpt", "hub", "347M", "pre-trained BioGPT: generation, fine-tuning base",
               "Hugging Face hub (downloaded into the HF cache on first use)", 'biogpt generate --prompt "COVID-19 is"'),
    KnownModel("microsoft/BioGPT-Large", "hub", "1.5B", "pre-trained BioGPT-Large", "Hugging Face hub",
               "biogpt generate -m microsoft/BioGPT-Large --prompt ..."),
    KnownModel("microsoft/BioGPT-Large-PubMedQA", "hub", "1.5B", "PubMedQA yes/no/maybe (reasoning-free setting; 81.0 accuracy reported)",
               "Hugging Face hub", "biogpt qa --question ... --context ... (the default model)"),
    KnownModel("RE-BC5CDR-BioGPT", "fairseq", "347M", "BC5CDR chemical-induced-disease relations (44.98 F1 reported)", FAIRSEQ_SOURCE,
               "biogpt extract-relations --task bc5cdr -m RE-BC5CDR-BioGPT/"),
    KnownModel("RE-DDI-BioGPT", "fairseq", "347M", "DDI drug-drug interactions (40.76 F1 reported)", FAIRSEQ_SOURCE,
               "biogpt extract-relations --task ddi -m RE-DDI-BioGPT/"),
    KnownModel("RE-DTI-BioGPT", "fairseq", "347M", "KD-DTI drug-target interactions (38.42 F1 reported)", FAIRSEQ_SOURCE,
               "biogpt extract-relations --task kd-dti -m RE-DTI-BioGPT/"),
    KnownModel("QA-PubMedQA-BioGPT", "fairseq", "347M", "PubMedQA (78.2 accuracy reported)", FAIRSEQ_SOURCE,
               "biogpt qa -m QA-PubMedQA-BioGPT/ ..."),
    KnownModel("DC-HoC-BioGPT", "fairseq", "347M", "Hallmarks of Cancer document classification", FAIRSEQ_SOURCE,
               "biogpt classify --task hoc -m DC-HoC-BioGPT/ ..."),
]


def list_models() -> list[dict[str, str]]:
    from biogpt.model.config import PRESETS, BioGptConfig

    rows = [asdict(m) for m in KNOWN]
    for name in PRESETS:
        c = BioGptConfig.from_preset(name)
        size = c.num_hidden_layers * (4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size) + c.vocab_size * c.hidden_size
        rows.append({
            "name": name, "kind": "preset", "parameters": f"{size / 1e6:.0f}M" if size >= 1e6 else f"{size / 1e3:.0f}K",
            "purpose": f"architecture for --from-scratch ({c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads)",
            "source": "built in", "usage": f"biogpt train ner data.jsonl -o out --from-scratch {name}",
        })
    return rows


def models(
    output_format: str = typer.Option("text", "--format", "-f", help="text or jsonl."),
) -> None:
    """List known checkpoints and presets: size, purpose, where to get them.

    Example: biogpt models --format jsonl | jq -r .name
    """
    from .._common import UserError

    if output_format not in ("text", "jsonl"):
        raise UserError(f"--format {output_format}: expected text or jsonl")
    for row in list_models():
        if output_format == "jsonl":
            typer.echo(json.dumps(row))
        else:
            typer.echo("\t".join((row["name"], row["kind"], row["parameters"], row["purpose"], row["source"])))


def register(app: typer.Typer) -> None:
    app.command("models")(models)
