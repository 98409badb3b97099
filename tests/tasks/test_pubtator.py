"""`tasks.pubtator`: the one PubTator parser, and how a document is split back onto its title and abstract lines."""

from __future__ import annotations

import pytest

from biogpt.tasks.base import TaskDataError
from biogpt.tasks.pubtator import Malformed, PubTatorDocument, parse_pubtator, read_pubtator, title_abstract_lines


def test_title_and_abstract_keep_their_lines_and_offsets():
    text = "Aspirin and asthma. Aspirin induced asthma."
    title, abstract, shift = title_abstract_lines(text, "Aspirin and asthma. ", " Aspirin induced asthma.")
    assert (title, abstract, shift) == ("Aspirin and asthma.", "Aspirin induced asthma.", 0)
    assert f"{title} {abstract}" == text  # PubTator's offsets index title + " " + abstract


def test_an_empty_title_shifts_offsets_past_pubtators_space():
    title, abstract, shift = title_abstract_lines("Only an abstract.", "", "Only an abstract.")
    assert (title, abstract, shift) == ("", "Only an abstract.", 1)
    assert f"{title} {abstract}"[shift:] == "Only an abstract."


@pytest.mark.parametrize(
    "title, abstract",
    [(None, None), ("A title.", None), ("Another title.", "An abstract."), (3, "x")],
)
def test_a_text_that_is_not_the_join_goes_whole_on_the_title_line(title, abstract):
    text = "A title. An abstract."
    assert title_abstract_lines(text, title, abstract) == (text, "", 0)


# ------------------------------------------------------------------ the parser
DOC = [
    "7|t|Aspirin and asthma.",
    "7|a|Aspirin induced asthma.",
    "7\t0\t7\tAspirin\tChemical\tD001241",
    "7\t12\t18\tasthma\tDisease",  # no id: accepted, empty id
    "7\tCID\tD001241\tD001249",
]


def parsed(lines):
    return list(parse_pubtator(enumerate(lines, 1)))


def test_a_document_its_mentions_and_cid_pairs():
    (doc,) = parsed(DOC)
    assert isinstance(doc, PubTatorDocument) and doc.problem is None and doc.line == 1
    assert doc.text[0:7] == "Aspirin" and doc.text[12:18] == "asthma"
    assert [(m.start, m.end, m.type, m.id) for m in doc.mentions] == [(0, 7, "Chemical", "D001241"), (12, 18, "Disease", "")]
    assert doc.cid_pairs() == [("D001241", "D001249")]


def test_documents_end_at_a_blank_line_or_another_pmid():
    docs = parsed(DOC + ["", "8|t|Second.", "9|t|Third."])
    assert [d.pmid for d in docs] == ["7", "8", "9"] and [d.line for d in docs] == [1, 7, 8]


def test_a_malformed_line_marks_its_document_and_orphans_stand_alone():
    items = parsed(["1\t0\t3\tabc\tChemical\tD1", *DOC[:2], "7\tx\ty", "8\t0\t1\ta\tChemical\tD2", Malformed(6, "not UTF-8")])
    assert items[0] == Malformed(1, "annotation line before any 'pmid|t|title' line; is this PubTator?")
    assert items[1].pmid == "7" and items[1].problem.line == 4  # the first problem wins
    assert "expected 'pmid<TAB>start" in items[1].problem.message
    unreadable = Malformed(4, "not UTF-8")
    items = parsed([*DOC[:2], "", unreadable, *DOC[:2], unreadable])
    assert items[0].problem is None and items[1] == unreadable and items[2].problem == unreadable


def test_read_pubtator_stops_at_the_first_problem_naming_the_line(tmp_path):
    path = tmp_path / "bad.PubTator.txt"
    path.write_text("\n".join([*DOC, "7\tzero\t3\tAsp\tChemical\tD1", ""]) + "\n")
    with pytest.raises(TaskDataError, match=r"bad.PubTator.txt:6: expected"):
        read_pubtator(path)
    path.write_text("\n".join([*DOC, "", *DOC]) + "\n")
    with pytest.raises(TaskDataError, match=r":7: document 7 appears a second time"):
        read_pubtator(path)
    path.write_bytes(b"7|t|caf\xe9\n")
    with pytest.raises(TaskDataError, match="not UTF-8"):
        read_pubtator(path)
