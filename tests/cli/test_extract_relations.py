"""`biogpt extract-relations`: its --task list, PubTator title/abstract lines and CID lines."""

from __future__ import annotations

import json

import pytest

from biogpt._common import UserError
from biogpt.commands.extract_relations import pubtator_record, resolve_task
from biogpt.io import Record
from biogpt.model import BioGptConfig
from biogpt.tasks import get_task

from tests.helpers import biogpt
from tests.helpers import FIXTURES

SAMPLE = FIXTURES / "io" / "sample.pubtator"


def _relation(head: tuple[str, list, str | None], tail: tuple[str, list, str | None]) -> dict:
    def entity(name, spans, mesh):
        return {"text": name, "name": name, "spans": spans, "found": bool(spans), **({"id": mesh} if mesh else {})}

    return {"head": entity(*head), "tail": entity(*tail), "relation": "CID", "score": None}


def test_pubtator_record_title_abstract_offsets_and_cid_lines():
    item = Record("7", "Aspirin. Asthma.", {"title": "Aspirin.", "abstract": "Asthma."})
    result = {"relations": [_relation(("aspirin", [(0, 7)], "D001241"), ("asthma", [(9, 15)], "D001249")),
                            _relation(("aspirin", [(0, 7)], "D001241"), ("asthma", [(9, 15)], "-1"))]}
    out = pubtator_record(get_task("bc5cdr"), item, result)
    assert (out["title"], out["abstract"]) == ("Aspirin.", "Asthma.")
    assert [(e["start"], e["end"], e["label"]) for e in out["entities"]] == [(0, 7, "Chemical"), (9, 15, "Disease")]
    assert out["relations"] == [{"type": "CID", "head": "D001241", "tail": "D001249"}]  # "-1": no MeSH, no line
    alone = pubtator_record(get_task("bc5cdr"), Record("8", "Asthma.", {"title": "", "abstract": "Asthma."}),
                            {"relations": [_relation(("x", [], None), ("asthma", [(0, 6)], None))]})
    assert alone["entities"][0]["start"] == 1  # PubTator's text is "" + " " + "Asthma."


@pytest.mark.parametrize("name", ["foo", "pubmedqa", "hoc", "ner"])
def test_task_error_lists_only_relation_tasks(name):
    with pytest.raises(UserError, match="expected one of bc5cdr, kd-dti, ddi, custom$") as err:
        resolve_task(name, None)
    assert "pubmedqa" not in str(err.value).split("expected")[1]


def test_a_model_recorded_for_another_task_is_refused(tmp_path):
    data = {**BioGptConfig.from_preset("tiny").to_dict(), "biogpt_task": {"task": "pubmedqa"}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="fine-tuned for pubmedqa"):
        resolve_task(None, str(tmp_path))


def test_pubtator_without_entities_warns_once_that_cid_lines_need_them(model_dir):  # noqa: F811
    result = biogpt("extract-relations", str(SAMPLE), "--task", "bc5cdr", "-m", str(model_dir), "-f", "pubtator", "--max-new-tokens", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no CID lines") == 1 and "--entities" in result.stderr
    first = result.stdout.split("\n\n")[0].splitlines()
    assert first[0] == "8701013|t|Famotidine-associated delirium. A series of six cases."
    assert first[1].startswith("8701013|a|Famotidine is a histamine")
