"""`tasks.pubtator`: how a document is split back onto PubTator's title and abstract lines."""

from __future__ import annotations

import pytest

from biogpt.tasks.pubtator import title_abstract_lines


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
