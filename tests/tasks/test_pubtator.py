"""`tasks.pubtator`: the one PubTator parser, and how a document is split back onto its title and abstract lines."""

from __future__ import annotations

import gzip

import pytest

from biogpt.model.errors import InputDataError
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
    """A broken line spoils its own document; an annotation line of no document (before any
    title, or of another pmid) is an error of its own line, never a document."""
    items = parsed(["1\t0\t3\tabc\tChemical\tD1", *DOC[:2], "7\tx\ty", "8\t0\t1\ta\tChemical\tD2", Malformed(6, "not UTF-8")])
    assert items[0] == Malformed(1, "annotation line of pmid '1' with no title or abstract line of that pmid before it; is this PubTator?")
    assert items[1] == Malformed(5, "annotation line of pmid '8' with no title or abstract line of that pmid before it (inside document 7)")
    assert items[2].pmid == "7" and items[2].problem.line == 4  # the first problem wins
    assert "expected 'pmid<TAB>start" in items[2].problem.message
    assert [type(i).__name__ for i in items] == ["Malformed", "Malformed", "PubTatorDocument"]  # no phantom document 8
    unreadable = Malformed(4, "not UTF-8")
    items = parsed([*DOC[:2], "", unreadable, *DOC[:2], unreadable])
    assert items[0].problem is None and items[1] == unreadable and items[2].problem == unreadable


def test_a_concatenated_copy_is_a_second_document_never_merged():
    """`cat a b` of files without a final blank line, or a document repeated: a title line that
    the current document already has starts a new one, so mentions are never doubled."""
    docs = parsed(DOC + DOC)
    assert [d.pmid for d in docs] == ["7", "7"] and [len(d.mentions) for d in docs] == [2, 2]
    assert [d.line for d in docs] == [1, 6]


@pytest.mark.parametrize(
    "line, why",
    [
        ("7\t-3\t4\tAspi\tChemical\tD1", "lies outside the text"),  # negative
        ("7\t40\t60\tasthma\tDisease\tD2", "lies outside the text"),  # past the end
        ("7\t5\t5\t\tDisease\tD2", "lies outside the text"),  # empty
        ("7\t0\t7\tAsprin\tChemical\tD1", "does not match the text there ('Aspirin')"),
    ],
)
def test_the_one_bad_offset_rule_skips_and_records_the_mention(line, why):
    """The rule every command shares: such a mention is dropped from the document and kept in
    `skipped` with its line and reason; the document and its good mentions stay."""
    (doc,) = parsed([*DOC[:3], line])
    assert [m.text for m in doc.mentions] == ["Aspirin"] and doc.problem is None
    assert len(doc.skipped) == 1 and doc.skipped[0].line == 4 and why in doc.skipped[0].message


def test_offsets_that_are_not_integers_are_malformed_lines():
    (doc,) = parsed([*DOC[:2], "7\t²\t3\tAsp\tChemical\tD1"])  # "²".isdigit() is True; int() refuses it
    assert doc.problem is not None and doc.problem.line == 3


# ------------------------------------------------------------------ the whole-file reader
def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_pubtator_stops_at_the_first_problem_naming_the_line(tmp_path):
    path = _write(tmp_path / "bad.PubTator.txt", [*DOC, "7\tzero\t3\tAsp\tChemical\tD1", ""])
    with pytest.raises(TaskDataError, match=r"bad.PubTator.txt:6: expected"):
        read_pubtator(path)
    _write(path, [*DOC, "", "8\t0\t3\tAsp\tChemical\tD1"])
    with pytest.raises(TaskDataError, match=r"bad.PubTator.txt:7: annotation line of pmid '8'"):
        read_pubtator(path)
    path.write_bytes(b"7|t|caf\xe9\n")
    with pytest.raises(InputDataError, match=r"bad.PubTator.txt:1: bytes that are not UTF-8 \(at column 8\)"):
        read_pubtator(path)


def test_repeated_pmids_keep_the_first_copy_with_one_warning_or_are_refused(tmp_path, caplog):
    """Twelve copies of a document are one document and one warning with the count (not 12x the
    mentions); --strict (`strict=True`) refuses the first repeat, naming its line."""
    path = _write(tmp_path / "dup.txt", [*DOC, "", "8|t|Other.", ""] + [*DOC, ""] * 11)
    with caplog.at_level("WARNING"):
        docs = read_pubtator(path)
    assert list(docs) == ["7", "8"] and len(docs["7"].mentions) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "11 documents repeat the pmid of an earlier one (first: 7 at line 9, first at line 1)" in warnings[0]
    with pytest.raises(TaskDataError, match=r"dup.txt:9: document 7 appears a second time \(first at line 1\)"):
        read_pubtator(path, strict=True)


def test_bad_offsets_are_skipped_with_one_warning_or_refused(tmp_path, caplog):
    path = _write(tmp_path / "off.txt", [*DOC, "7\t-1\t3\tx\tChemical\tD1", "7\t0\t99\tx\tChemical\tD1", ""])
    with caplog.at_level("WARNING"):
        docs = read_pubtator(path)
    assert len(docs["7"].mentions) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "2 mentions whose offsets do not fit the text skipped (first: line 6" in warnings[0]
    with pytest.raises(TaskDataError, match=r"off.txt:6: mention 'x' at -1-3 lies outside the text"):
        read_pubtator(path, strict=True)


def test_read_pubtator_reads_gzip_by_its_bytes_not_its_name(tmp_path):
    path = tmp_path / "CDR.PubTator.txt"  # no .gz suffix: recognised by the magic bytes
    path.write_bytes(gzip.compress(("\n".join(DOC) + "\n").encode()))
    assert read_pubtator(path)["7"].cid_pairs() == [("D001241", "D001249")]
