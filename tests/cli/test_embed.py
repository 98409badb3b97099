"""`biogpt embed` and the embedding it shares with `biogpt serve`'s /v1/embeddings: the mean of the
last hidden states over a document's real tokens, whatever it is batched with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from biogpt.model import BioGptForCausalLM, BioGptTokenizer
from biogpt.serve.embeddings import embed_ids
from tests.helpers import biogpt, tiny_lm

DOCS = [
    {"id": "a", "text": "Aspirin reduces the risk of myocardial infarction."},
    {"id": "b", "text": "The p53 gene"},
    {"id": "c", "text": "Metformin is a first-line treatment for type 2 diabetes in adults with normal kidney function."},
]


def _write_docs(path: Path, docs: list[dict] = DOCS) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def test_embed_ids_is_the_masked_mean_and_does_not_depend_on_the_batch():
    model = tiny_lm()
    short, long = [2, 17, 40], [2, 5, 6, 7, 8, 9, 10]
    together = embed_ids(model, [short, long])
    assert together.dtype == torch.float32 and together.shape == (2, model.config.hidden_size)
    alone = embed_ids(model, [short])
    with torch.no_grad():
        expected = model.biogpt(torch.tensor([short])).last_hidden_state.mean(dim=1)
    torch.testing.assert_close(alone, expected)
    torch.testing.assert_close(together[0], alone[0], rtol=1e-5, atol=1e-5)  # padding changes nothing
    torch.testing.assert_close(together[1], embed_ids(model, [long])[0], rtol=1e-5, atol=1e-5)
    assert embed_ids(model, []).shape == (0, model.config.hidden_size)


def test_embed_ids_refuses_what_it_cannot_embed_whole():
    model = tiny_lm()
    with pytest.raises(ValueError, match="input 1: no tokens"):
        embed_ids(model, [[2, 5], []])
    positions = model.config.max_position_embeddings
    with pytest.raises(ValueError, match=f"{positions + 1} tokens, more than the model's {positions} positions"):
        embed_ids(model, [[2] * (positions + 1)])


def test_embed_writes_jsonl_and_npy_with_the_same_vectors(model_dir, tmp_path):
    src = _write_docs(tmp_path / "docs.jsonl")
    out_jsonl, out_npy = tmp_path / "v.jsonl", tmp_path / "v.npy"
    jsonl = biogpt("-q", "embed", str(src), "-m", str(model_dir), "-o", str(out_jsonl), "-b", "2")
    assert jsonl.returncode == 0, jsonl.stderr
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert records[0]["provenance"]["model"] == str(model_dir)

    npy = biogpt("-q", "embed", str(src), "-m", str(model_dir), "-o", str(out_npy))
    assert npy.returncode == 0, npy.stderr
    array = np.load(out_npy)
    assert array.dtype == np.float32 and array.shape == (3, 32)
    np.testing.assert_allclose(array, np.array([r["embedding"] for r in records], dtype=np.float32), rtol=1e-5, atol=1e-5)

    # the library's vectors: the tokenizer's ids of each text, embedded alone
    model = BioGptForCausalLM.from_pretrained(str(model_dir))
    tokenizer = BioGptTokenizer.from_pretrained(str(model_dir))
    expected = torch.cat([embed_ids(model, [tokenizer(d["text"])["input_ids"]]) for d in DOCS]).numpy()
    np.testing.assert_allclose(array, expected, rtol=1e-5, atol=1e-5)


def test_a_document_longer_than_the_model_fails_alone_in_jsonl_and_stops_an_npy(model_dir, tmp_path):
    docs = [DOCS[0], {"id": "huge", "text": " ".join(["aspirin"] * 400)}, DOCS[1]]
    src = _write_docs(tmp_path / "docs.jsonl", docs)
    out = tmp_path / "v.jsonl"
    skipped = biogpt("-q", "embed", str(src), "-m", str(model_dir), "-o", str(out), "--keep-going")
    assert skipped.returncode == 0, skipped.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]

    stopped = biogpt("embed", str(src), "-m", str(model_dir), "-o", str(tmp_path / "v.npy"))
    assert stopped.returncode == 1 and len(stopped.stderr.strip().splitlines()) == 1, stopped.stderr
    assert "docs.jsonl:2" in stopped.stderr and "more than the model's 128 positions" in stopped.stderr
    assert not (tmp_path / "v.npy").exists()


def test_an_npy_output_refuses_the_flags_it_cannot_honour(tmp_path):
    src = _write_docs(tmp_path / "docs.jsonl")
    for flags, says in ((["--keep-going"], "write JSONL (-o FILE.jsonl) to use --keep-going"),
                        (["--resume"], "--resume needs a JSONL output"),
                        (["--shard", "0/2"], "sharded runs (--shard or torchrun) need a JSONL output")):
        # refused before any model loads: the model named here does not exist
        result = biogpt("embed", str(src), "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "v.npy"), *flags)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("biogpt: error: ") and says in result.stderr and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]
