"""KD-DTI drug-target interactions, BioGPT's "relis" format.

source: as BC5CDR (title and abstract joined, lower-cased). target and parser:
`the interaction between {drug} and {target} is {interaction}` (see `_triples.py`). Drugs
and targets named by DrugBank placeholders (`DrugBank####DB08813`) are ordinary strings.
The reference data ships only valid.json (the default test split then fails with a message
naming the splits present). Metric: BioGPT's hard match.
"""

from __future__ import annotations

from typing import Any

from ._triples import TripleTask
from .base import Decoding, Recipe
from .bc5cdr import official_source_join


class KDDTITask(TripleTask):
    name = "kd-dti"
    aliases = ("kd-dti", "kd_dti", "kddti", "dti", "re-dti")
    relation_roles = ("Drug", "Target")
    decoding = Decoding(num_beams=1, max_new_tokens=256)
    recipe = Recipe(lr=1e-5, warmup_updates=1000, max_source_positions=640, prompt_length=9, max_epochs=30)

    def required_fields(self) -> tuple[str, ...]:
        return ("title", "abstract", "triples")

    def source_for_document(self, *, text: str, title: str | None = None, abstract: str | None = None, **options: Any) -> str:
        if title is not None and abstract is not None:
            return self.source_of({"title": title, "abstract": abstract})
        return text.lower()

    def source_of(self, record: dict[str, Any]) -> str:
        return official_source_join(record["title"], record["abstract"]).lower()
