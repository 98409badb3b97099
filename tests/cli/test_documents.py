"""Documents as passages (issue 29): the JATS reader on three real PMC articles, passages of
every reader (offsets exact, today's text unchanged), BioC offsets and annotations, tar.gz
bundles, and XML attacks refused with one clear line."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from biogpt.documents import passages_of
from biogpt.io import BadRecord, ReadOptions, Record, document_text, read_inputs
from biogpt.model.errors import InvalidOptionError
from tests.helpers import FIXTURES, biogpt

PMC = FIXTURES / "pmc"
ARTICLES = {"pone.0046493.nxml": ("PMC3460867", "23029536"), "pntd.0002065.nxml": ("PMC3585041", "23469300"),
            "ehp-116-1694.nxml": ("PMC2599765", "19079722")}
PUBMED = FIXTURES / "pubmed" / "pubmed-29768149.xml"


def read(*paths, **kwargs) -> list:
    return list(read_inputs([str(p) for p in paths], **kwargs))


def one(path, **options) -> Record:
    [record] = read(path, options=ReadOptions(**options))
    assert isinstance(record, Record), record
    return record


def assert_fits(record: Record) -> None:
    """Every passage is the text at its offset, in order, none overlapping."""
    end = 0
    for p in record.fields["passages"]:
        assert set(p) == {"type", "section", "section_type", "offset", "text"}
        assert p["offset"] >= end and record.text[p["offset"] : p["offset"] + len(p["text"])] == p["text"], p
        end = p["offset"] + len(p["text"])


def xml_tree(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # the test's own reading (stdlib: the fixtures are trusted)


def text(elem: ET.Element) -> str:
    return " ".join("".join(elem.itertext()).split())


# ------------------------------------------------------------------ the three PMC articles
@pytest.mark.parametrize("name", sorted(ARTICLES))
def test_jats_article_passages_offsets_ids_and_meta(name):
    record = one(PMC / name)
    pmcid, pmid = ARTICLES[name]
    assert record.id == pmcid and record.fields["meta"]["pmid"] == pmid and record.fields["meta"]["pmcid"] == pmcid
    root = xml_tree(PMC / name)
    assert record.fields["meta"]["doi"] == root.find(".//article-meta/article-id[@pub-id-type='doi']").text
    assert_fits(record)
    types = [p["type"] for p in record.fields["passages"]]
    assert types[0] == "title" and record.fields["passages"][0]["text"] == text(root.find(".//article-meta/title-group/article-title"))
    # the title and abstract are today's single-space join, the body follows after blank lines
    head = document_text(record.fields["title"], record.fields["abstract"])
    assert record.text.startswith(head + "\n\n")
    assert all(p["section_type"] in ("title", "abstract", "introduction", "methods", "results", "discussion", "conclusion", "other")
               for p in record.fields["passages"])
    # every figure and table caption, with its label
    figures, tables = root.findall(".//body//fig") + root.findall(".//floats-group/fig"), root.findall(".//body//table-wrap")
    captions = [p["text"] for p in record.fields["passages"] if p["type"] == "fig_caption"]
    assert len(captions) == len(figures) and all(c.startswith(text(f.find("label"))) for c, f in zip(captions, figures))
    assert len([p for p in record.fields["passages"] if p["type"] == "table_caption"]) == len(tables)
    # references and table cells are left out by default
    assert not {"reference", "table"} & set(types)
    ref_title = root.find(".//ref-list/ref//article-title")
    assert ref_title is not None and text(ref_title) not in record.text


@pytest.mark.parametrize("name", sorted(ARTICLES))
def test_jats_sections_follow_the_xml_order(name):
    """The section paths of paragraphs, in order, are those of the XML's `<sec>`s holding `<p>`s."""
    root = xml_tree(PMC / name)
    expected: list[str] = []

    def walk(elem: ET.Element, path: list[str]) -> None:
        for child in elem:
            if child.tag == "sec":
                title = child.find("title")
                walk(child, path + [text(title)] if title is not None and text(title) else path)
            elif child.tag in ("p", "supplementary-material") and (not expected or expected[-1] != " > ".join(path)):
                expected.append(" > ".join(path))

    walk(root.find("body"), [])
    seen: list[str] = []
    for p in one(PMC / name).fields["passages"]:
        if p["type"] == "paragraph" and (not seen or seen[-1] != p["section"]):
            seen.append(p["section"])
    assert seen == expected


def test_jats_author_summary_is_its_own_abstract_passage():
    record = one(PMC / "pntd.0002065.nxml")
    abstracts = [p for p in record.fields["passages"] if p["type"] == "abstract"]
    assert [a["section"] for a in abstracts] == ["", "Author Summary"]
    assert abstracts[1]["text"].startswith("Rift Valley fever (RVF) is a mosquito-borne disease")
    assert record.fields["abstract"] == abstracts[0]["text"] + " " + abstracts[1]["text"]


def test_jats_include_references_and_tables():
    name = "pntd.0002065.nxml"
    root = xml_tree(PMC / name)
    record = one(PMC / name, include=frozenset({"references", "tables"}))
    assert_fits(record)
    refs = [p for p in record.fields["passages"] if p["type"] == "reference"]
    assert len(refs) == len(root.findall(".//ref-list/ref")) and text(root.find(".//ref-list/ref//article-title")) in record.text
    assert refs[1]["text"].startswith("2 Rich KM , Wanyoike F")  # names inside a mixed citation stay apart
    tables = [p for p in record.fields["passages"] if p["type"] == "table"]
    assert len(tables) == len(root.findall(".//body//table-wrap//table")) and " | " in tables[0]["text"]
    # references come last; the body before them is what the default reading gives
    default = one(PMC / name)
    assert record.fields["passages"][-1]["type"] == "reference"
    def without_offsets(passages):
        return [{k: v for k, v in p.items() if k != "offset"} for p in passages if p["type"] not in ("reference", "table")]

    assert without_offsets(record.fields["passages"]) == without_offsets(default.fields["passages"])


def test_jats_sections_option_keeps_title_abstract_and_those_types():
    record = one(PMC / "pone.0046493.nxml", sections=frozenset({"methods"}))
    assert_fits(record)
    kinds = {p["section_type"] for p in record.fields["passages"]}
    assert kinds == {"title", "abstract", "methods"}
    assert any(p["section"].startswith("Materials and Methods > ") for p in record.fields["passages"])


SYNTHETIC = """<?xml version="1.0"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.0 20120330//EN" "http://jats.nlm.nih.gov/archiving/1.0/JATS-archivearticle1.dtd">
<article xmlns:mml="http://www.w3.org/1998/Math/MathML"><front><article-meta>
<article-id pub-id-type="doi">10.1/x</article-id>
<title-group><article-title>Aspirin  and <italic>H</italic><sub>2</sub>O</article-title></title-group>
<abstract><title>Summary</title><p>Short   abstract.</p></abstract>
</article-meta></front>
<body><sec sec-type="intro"><title>Background</title><p>See <xref ref-type="bibr" rid="r1">[1]</xref> and
<inline-formula><mml:math><mml:mi>x</mml:mi><mml:mo>=</mml:mo><mml:mn>1</mml:mn></mml:math></inline-formula>here.</p>
<disp-formula><tex-math>E=mc^2</tex-math></disp-formula></sec>
<sec><title>Patients and methods</title><sec><title>Dosing</title><p>Dose <bold>5</bold> mg.<table-wrap><label>Table 1</label>
<caption><p>Doses.</p></caption><table><tr><th>Drug</th><th>mg</th></tr><tr><td>aspirin</td><td>5</td></tr></table></table-wrap></p></sec></sec>
</body>
<back><ref-list><title>References</title><ref id="r1"><label>1</label><mixed-citation>Smith J. A study. 2001.</mixed-citation></ref></ref-list></back>
<floats-group><fig><label>Figure 1</label><caption><title>A plot.</title></caption></fig></floats-group>
</article>
"""


def test_jats_exact_text_of_markup_formulas_tables_and_references(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(SYNTHETIC, encoding="utf-8")
    record = one(path)
    assert record.id == f"{path}:1" and record.fields["meta"] == {"pmid": None, "pmcid": None, "doi": "10.1/x"}
    assert record.text == ("Aspirin and H2O Short abstract.\n\nSee [1] and here.\n\nDose 5 mg.\n\nTable 1 Doses.\n\nFigure 1 A plot.")
    sections = [(p["type"], p["section"], p["section_type"]) for p in record.fields["passages"]]
    assert sections == [("title", "", "title"), ("abstract", "Summary", "abstract"), ("paragraph", "Background", "introduction"),
                        ("paragraph", "Patients and methods > Dosing", "methods"), ("table_caption", "Patients and methods > Dosing", "methods"),
                        ("fig_caption", "", "other")]
    full = one(path, include=frozenset({"formulas", "tables", "references"}))
    assert_fits(full)
    assert "See [1] and x=1 here." in full.text and "\n\nE=mc^2\n\n" in full.text
    assert "\n\nDrug | mg; aspirin | 5\n\n" in full.text and full.text.endswith("\n\n1 Smith J. A study. 2001.")


def test_jats_gzip_folder_and_tar_gz_bundle(tmp_path):
    names = sorted(ARTICLES)
    gz = tmp_path / "one.nxml.gz"
    gz.write_bytes(gzip.compress((PMC / names[0]).read_bytes()))
    assert one(gz).text == one(PMC / names[0]).text
    folder = tmp_path / "PMC"
    (folder / "sub").mkdir(parents=True)
    for name in names:
        (folder / "sub" / name).write_bytes((PMC / name).read_bytes())
    assert [r.id for r in read(folder)] == [ARTICLES[n][0] for n in names]
    bundle = tmp_path / "PMC_bundle.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(folder, arcname="pkg", recursive=False)  # a folder member: skipped
        for name in names:
            tar.add(PMC / name, arcname=f"pkg/{name}")
        link = tarfile.TarInfo("pkg/evil.nxml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)  # a link: skipped, never followed
        image = tarfile.TarInfo("pkg/fig1.jpg")
        image.size = 4
        tar.addfile(image, io.BytesIO(b"\xff\xd8\x00\x00"))
    items = read(bundle)
    assert [(r.id, r.text) for r in items] == [(r.id, r.text) for r in read(*(PMC / n for n in names))]
    assert items[0].location == f"{bundle}:pkg/{names[0]}"


def test_tar_member_over_the_limit_is_one_bad_record(tmp_path, monkeypatch):
    import biogpt.jats as jats

    monkeypatch.setattr(jats, "MAX_MEMBER_BYTES", 1000)
    bundle = tmp_path / "b.tgz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(PMC / "pntd.0002065.nxml", arcname="pntd.0002065.nxml")
    [bad] = read(bundle)
    assert isinstance(bad, BadRecord) and bad.location.endswith(":pntd.0002065.nxml") and "more than" in bad.message


def test_data_passages_end_to_end(tmp_path):
    out = tmp_path / "p.jsonl"
    articles = [str(PMC / name) for name in sorted(ARTICLES)]
    result = biogpt("data", "passages", *articles, str(PUBMED), "-o", str(out), "--include", "references", "--sections", "methods,results")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["PMC2599765", "PMC3585041", "PMC3460867", "29768149"]
    for r in rows:
        assert set(r) == {"id", "text", "passages", "meta"} and set(r["meta"]) == {"pmid", "pmcid", "doi"}
        assert all(r["text"][p["offset"] : p["offset"] + len(p["text"])] == p["text"] for p in r["passages"])
    assert {p["section_type"] for p in rows[0]["passages"]} == {"title", "abstract", "methods", "results"}
    bad = biogpt("data", "passages", articles[0], "--sections", "method")
    assert bad.returncode == 2 and "--sections method" in bad.stderr
    # what `data passages` writes reads back as JSONL with the same passages
    back = read(out)
    assert [passages_of(r) for r in back] == [r["passages"] for r in rows]


# ------------------------------------------------------------------ every reader's passages
def test_pubmed_structured_abstract_passages_keep_todays_text():
    [record] = read(PUBMED)
    assert record.text == document_text(record.fields["title"], record.fields["abstract"])
    assert_fits(record)
    abstracts = [p for p in record.fields["passages"] if p["type"] == "abstract"]
    assert [a["section"] for a in abstracts] == [s["label"] for s in record.fields["sections"]] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert record.fields["meta"] == {"pmid": "29768149", "pmcid": None, "doi": "10.1056/NEJMoa1715274"}
    assert "β 2-agonist" in abstracts[0]["text"]


@pytest.mark.parametrize("name, fmt", [("sample.pubtator", "auto"), ("pubmed.xml", "auto"), ("bioc.xml", "auto"), ("bioc.json", "auto"),
                                       ("docs.paragraphs.txt", "paragraphs"), ("docs.paragraphs.txt", "lines")])
def test_every_reader_yields_passages_that_fit(name, fmt):
    for record in read(FIXTURES / "io" / name, input_format=fmt):
        assert isinstance(record, Record) and record.fields["passages"] and passages_of(record) == record.fields["passages"]
        assert_fits(record)
        if "title" in record.fields:  # title + abstract are today's single-space join
            assert record.text == document_text(record.fields["title"], record.fields.get("abstract", ""))


def test_pubtator_passages_do_not_collapse_text_offsets_index(tmp_path):
    path = tmp_path / "x.pubtator"
    path.write_text("1|t|A  title\n1|a|The  abstract.\n1\t9\t12\tThe\tChemical\tD1\n\n", encoding="utf-8")
    [record] = read(path)
    assert record.text == "A  title The  abstract." and [p["offset"] for p in record.fields["passages"]] == [0, 9]
    e = record.fields["entities"][0]
    assert record.text[e["start"] : e["end"]] == "The"


def test_jsonl_title_abstract_and_text_passages(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1, "title": "T.", "abstract": "A b."}\n{"id": 2, "text": "plain"}\n', encoding="utf-8")
    first, second = read(path)
    assert [p["type"] for p in first.fields["passages"]] == ["title", "abstract"] and first.text == "T. A b."
    assert second.fields["passages"] == [{"type": "text", "section": "", "section_type": "other", "offset": 0, "text": "plain"}]


def _bioc(passages: list[dict], tmp_path: Path) -> Path:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"source": "x", "documents": [{"id": "d1", "passages": passages}]}, indent=1), encoding="utf-8")
    return path


def test_bioc_written_with_our_offsets_reads_back_with_the_same_passages_and_spans(tmp_path):
    article = one(PMC / "pntd.0002065.nxml")
    # the passages as a BioC writer lays them out, one annotation in the last paragraph
    last = [p for p in article.fields["passages"] if p["type"] == "paragraph"][-1]
    word = last["text"].split()[0]
    bioc = [{"infons": {"type": p["type"], "section": p["section"], "section_type": p["section_type"]}, "offset": p["offset"], "text": p["text"],
             "annotations": [{"infons": {"type": "Disease", "identifier": "D1"}, "text": word,
                              "locations": [{"offset": p["offset"], "length": len(word)}]}] if p is last else []}
            for p in article.fields["passages"]]
    record = one(_bioc(bioc, tmp_path))
    assert record.text == article.text and record.fields["passages"] == article.fields["passages"]
    assert record.fields["entities"] == [{"start": last["offset"], "end": last["offset"] + len(word), "text": word, "label": "Disease", "id": "D1"}]


def test_bioc_with_other_offsets_is_rebuilt_by_the_rule_and_annotations_move(tmp_path):
    passages = [  # NCBI style: one space between every passage, section headings as title_1
        {"infons": {"type": "front", "article-id_pmc": "123"}, "offset": 0, "text": "Title."},
        {"infons": {"type": "abstract"}, "offset": 7, "text": "Abstract."},
        {"infons": {"type": "title_1", "section_type": "METHODS"}, "offset": 17, "text": "Methods"},
        {"infons": {"type": "paragraph", "section_type": "METHODS"}, "offset": 25, "text": "We gave aspirin.",
         "annotations": [{"infons": {"type": "Chemical"}, "text": "aspirin", "locations": [{"offset": 33, "length": 7}]}]},
    ]
    record = one(_bioc(passages, tmp_path))
    assert record.text == "Title. Abstract.\n\nMethods\n\nWe gave aspirin." and record.id == "d1"
    assert_fits(record)
    assert record.fields["passages"][3]["section"] == "Methods" and record.fields["passages"][3]["section_type"] == "methods"
    [e] = record.fields["entities"]
    assert record.text[e["start"] : e["end"]] == "aspirin" == e["text"] and record.fields["meta"]["pmcid"] == "PMC123"


def test_option_values_are_checked():
    from biogpt.documents import passage_options

    assert passage_options("tables, references", None) == {"include": frozenset({"tables", "references"}), "sections": None}
    assert passage_options(None, "methods,results")["sections"] == frozenset({"methods", "results"})
    with pytest.raises(InvalidOptionError, match="--sections title"):
        passage_options(None, "title")


# ------------------------------------------------------------------ malicious XML
LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE {root} [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{url}">]>
"""
BODIES = {
    "jats": ("article", '<article><front><article-meta><title-group><article-title>T {ref}</article-title></title-group></article-meta></front></article>'),
    "pubmed-xml": ("PubmedArticleSet", "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>T {ref}</ArticleTitle>"
                   "</Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"),
    "bioc-xml": ("collection", "<collection><document><id>1</id><passage><offset>0</offset><text>T {ref}</text></passage></document></collection>"),
}


@pytest.mark.parametrize("fmt", sorted(BODIES))
@pytest.mark.parametrize("attack", ["billion-laughs", "file", "http"])
def test_malicious_xml_is_refused_with_one_clear_line(tmp_path, fmt, attack):
    root, body = BODIES[fmt]
    if attack == "billion-laughs":
        doc = LAUGHS.format(root=root) + body.format(ref="&lol9;")
    else:
        url = "file:///etc/passwd" if attack == "file" else "http://127.0.0.1:9/evil.dtd"
        doc = EXTERNAL.format(root=root, url=url) + body.format(ref="&xxe;")
    path = tmp_path / "evil.xml"
    path.write_text(doc, encoding="utf-8")
    [bad] = read(path)
    assert isinstance(bad, BadRecord) and bad.location == str(path)
    assert bad.message.startswith("refused: XML entity declarations are not allowed"), bad.message
    result = biogpt("data", "passages", str(path), "--input-format", fmt)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and str(path) in lines[0] and "entity declarations are not allowed" in lines[0]
    assert result.stdout == "" and "root:" not in result.stderr and "lollol" not in result.stderr


def test_an_external_dtd_is_never_fetched(tmp_path):
    """A DOCTYPE naming a DTD parses (JATS and PubMed files all have one); the DTD's entities are
    not loaded, so an entity it would define stays undefined: a malformed file, nothing leaked."""
    dtd = tmp_path / "x.dtd"
    dtd.write_text('<!ENTITY secret "TOP-SECRET">', encoding="utf-8")
    path = tmp_path / "a.nxml"
    path.write_text(f'<!DOCTYPE article SYSTEM "{dtd.as_uri()}"><article><front><article-meta><title-group>'
                    "<article-title>T &secret;</article-title></title-group></article-meta></front></article>", encoding="utf-8")
    [bad] = read(path)
    assert isinstance(bad, BadRecord) and "undefined entity" in bad.message and "TOP-SECRET" not in bad.message
    path.write_text(SYNTHETIC, encoding="utf-8")
    assert isinstance(one(path), Record)  # an http DTD in the DOCTYPE: parsed offline
