"""DDI-2013 drug-drug interactions, BioGPT's "relis" format.

source: the abstract, newlines replaced by spaces, stripped, lower-cased. target and parser:
`the interaction between {drug} and {target} is {interaction}` (see `_triples.py`).
Ids are the JSON keys (e.g. `DDI-DrugBank.d700`). The 195 train and 9 valid documents without
a triple are dropped, as the official preprocessing does. Metric: BioGPT's hard match.
"""

from __future__ import annotations

from typing import Any

from ._triples import TripleTask
from .base import COPY, Decoding, Recipe


class DDITask(TripleTask):
    name = "ddi"
    aliases = ("ddi", "ddi2013", "re-ddi")
    relation_roles = ("Drug", "Drug")
    decoding = Decoding(num_beams=1, max_new_tokens=256)
    recipe = Recipe(lr=1e-4, warmup_updates=500, max_source_positions=640, prompt_length=9, max_epochs=100)

    clause_template = ("the interaction between", COPY, "and", COPY, "is", ("mechanism", "effect", "advise", "int"))

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        return self.source_of({"abstract": abstract if abstract is not None else text})

    def source_of(self, record: dict[str, Any]) -> str:
        return record["abstract"].strip().replace("\n", " ").lower()
