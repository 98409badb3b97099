"""`biogpt tag --format pubtator`: title and abstract on their own lines, offsets still valid."""

from __future__ import annotations



from biogpt.commands.tag import pubtator_record
from biogpt.io import Record

from tests.helpers import biogpt
from tests.helpers import FIXTURES

SAMPLE = FIXTURES / "io" / "sample.pubtator"


def test_pubtator_record_splits_title_and_abstract_and_moves_offsets():
    item = Record("1", "Aspirin. Asthma.", {"title": "Aspirin.", "abstract": "Asthma."})
    ent = {"start": 9, "end": 15, "text": "Asthma", "label": "Disease", "score": 0.9}
    out = pubtator_record(item, [ent])
    assert (out["title"], out["abstract"]) == ("Aspirin.", "Asthma.")
    assert out["entities"][0]["start"] == 9
    alone = pubtator_record(Record("2", "Asthma.", {"title": "", "abstract": "Asthma."}), [{**ent, "start": 0, "end": 6}])
    written = f"{alone['title']} {alone['abstract']}"
    assert written[alone["entities"][0]["start"] : alone["entities"][0]["end"]] == "Asthma"




def test_tag_pubtator_output_keeps_the_abstract_line(tagger):
    result = biogpt("-q", "tag", "-m", str(tagger), str(SAMPLE), "-f", "pubtator")
    assert result.returncode == 0, result.stderr
    blocks = [b.splitlines() for b in result.stdout.split("\n\n") if b.strip()]
    titles = [l.split("|", 2)[2] for l in SAMPLE.read_text().splitlines() if "|t|" in l]
    assert [b[0].split("|", 2)[2] for b in blocks] == titles
    mentions = 0
    for lines in blocks:
        assert lines[1].split("|", 2)[1] == "a" and lines[1].split("|", 2)[2]
        text = lines[0].split("|", 2)[2] + " " + lines[1].split("|", 2)[2]
        for line in lines[2:]:
            cols = line.split("\t")
            assert text[int(cols[1]) : int(cols[2])] == cols[3]
            mentions += 1
    assert mentions > 0  # the random tagger finds some, so the offsets were checked
