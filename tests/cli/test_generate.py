"""End to end: the installed `biogpt` command in subprocesses, with a tiny model directory."""

from __future__ import annotations

import json

import torch

from biogpt.model import BioGptForCausalLM, BioGptTokenizer

from tests.helpers import biogpt
from tests.helpers import FIXTURES







def test_stdin_jsonl_round_trip(model_dir):
    result = biogpt("generate", "--input", "-", "--format", "jsonl", "-m", str(model_dir), "--max-new-tokens", "6",
                    input="COVID-19 is\nAspirin induced asthma\n\nThe p53 gene\n")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["stdin:1", "stdin:2", "stdin:4"]
    assert [r["prompt"] for r in records] == ["COVID-19 is", "Aspirin induced asthma", "The p53 gene"]
    for r in records:
        assert 0 < r["new_tokens"] <= 6 and r["generated"] and r["text"].startswith(r["prompt"].split()[0])
        assert r["provenance"]["model"] == str(model_dir) and r["provenance"]["tool"].startswith("biogpt-cli")
        assert len(r["provenance"]["weights_blake2b"]) == 32 and r["provenance"]["options"]["max_new_tokens"] == 6


def test_inputs_are_positional_as_in_every_batch_command_and_input_stays_an_alias(model_dir, tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_text("COVID-19 is\nAspirin induced\n")
    common = ["-m", str(model_dir), "--format", "jsonl", "--max-new-tokens", "3"]
    strip = lambda out: [{k: v for k, v in json.loads(l).items() if k not in ("tokens_per_second", "provenance")} for l in out.splitlines()]  # noqa: E731
    positional, alias = biogpt("generate", str(src), *common), biogpt("generate", "--input", str(src), *common)
    assert positional.returncode == 0 and alias.returncode == 0, positional.stderr + alias.stderr
    assert strip(positional.stdout) == strip(alias.stdout)
    assert [r["prompt"] for r in strip(positional.stdout)] == ["COVID-19 is", "Aspirin induced"]
    piped = biogpt("generate", "-", *common, input="COVID-19 is\nAspirin induced\n")
    assert [r["prompt"] for r in strip(piped.stdout)] == ["COVID-19 is", "Aspirin induced"]
    both = biogpt("generate", str(src), "--prompt", "x", *common)
    assert both.returncode == 2 and both.stderr.strip() == "biogpt: error: give either --prompt or input files, not both"


def test_cli_output_equals_library_generate(model_dir):
    result = biogpt("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--num-beams", "3")
    assert result.returncode == 0, result.stderr
    model = BioGptForCausalLM.from_pretrained(model_dir)
    tok = BioGptTokenizer.from_pretrained(model_dir)
    enc = tok("COVID-19 is", return_tensors="pt")
    out = model.generate(enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=8, num_beams=3)
    assert result.stdout.strip() == tok.decode(out[0], skip_special_tokens=True)


def test_batched_jsonl_input_with_text_key_and_seeded_sampling(model_dir, tmp_path):
    src = tmp_path / "prompts.jsonl"
    src.write_text("\n".join(json.dumps({"pmid": str(i), "sentence": f"Patient {i} received"}) for i in range(5)) + "\n")
    args = ["generate", "--input", str(src), "--text-key", "sentence", "--id-key", "pmid", "-m", str(model_dir),
            "--format", "jsonl", "--do-sample", "--seed", "7", "--max-new-tokens", "5", "-b", "2"]
    first, second = biogpt(*args), biogpt(*args)
    assert first.returncode == 0, first.stderr
    ids = [json.loads(l)["id"] for l in first.stdout.splitlines()]
    assert ids == ["0", "1", "2", "3", "4"]
    strip = lambda out: [{k: v for k, v in json.loads(l).items() if k != "tokens_per_second"} for l in out.splitlines()]
    assert strip(first.stdout) == strip(second.stdout)


def test_output_file_is_never_overwritten_without_force(model_dir, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("precious\n")
    result = biogpt("generate", "--prompt", "x", "-m", str(model_dir), "-o", str(out), "--max-new-tokens", "3")
    assert result.returncode == 2 and "exists; pass --force" in result.stderr
    assert out.read_text() == "precious\n"
    result = biogpt("generate", "--prompt", "x", "-m", str(model_dir), "-o", str(out), "--force", "--max-new-tokens", "3")
    assert result.returncode == 0 and out.read_text().startswith("x")


def test_user_errors_are_one_line(model_dir, tmp_path):
    for args, code, needle in (
        (["generate", "--prompt", "x", "-m", str(tmp_path / "none")], 2, "no such directory"),
        (["generate", "--input", str(tmp_path / "missing.txt"), "-m", str(model_dir)], 2, "missing.txt: no such file"),
        (["generate", "--prompt", "x", "-m", str(model_dir), "--format", "xml"], 2, "--format xml"),
        (["generate", "--prompt", "x", "-m", str(model_dir), "--num-beams", "2", "--num-return-sequences", "3"], 2, "at most --num-beams"),
        (["generate", "--prompt", "x", "-m", str(model_dir), "--device", "cuda"] if not torch.cuda.is_available() else ["generate", "--bogus"], 2, "cuda" if not torch.cuda.is_available() else "bogus"),
    ):
        result = biogpt(*args)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr and needle in result.stderr
        assert len([l for l in result.stderr.splitlines() if l.startswith("biogpt: error")]) <= 1


def test_long_prompt_is_truncated_with_a_warning(model_dir):
    long = " ".join(["protein"] * 200)  # the tiny model has 128 positions
    result = biogpt("generate", "--prompt", long, "-m", str(model_dir), "--max-new-tokens", "4", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert "truncated" in result.stderr
    assert json.loads(result.stdout)["new_tokens"] <= 4


def test_compile_is_ignored_with_a_warning_on_the_cpu(model_dir):
    """--compile is for the captured GPU step: on a CPU the run goes on unchanged, and says so."""
    plain = biogpt("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--no-stream")
    compiled = biogpt("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--no-stream", "--compile")
    assert plain.returncode == compiled.returncode == 0, compiled.stderr
    assert compiled.stdout == plain.stdout
    assert "--compile applies to the captured decode step on a CUDA device; ignored on cpu" in compiled.stderr


def test_kernels_option_is_checked_and_triton_is_ignored_with_a_warning_on_the_cpu(model_dir):
    base = ("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--no-stream")
    plain = biogpt(*base)
    fused = biogpt(*base, "--kernels", "triton")
    assert plain.returncode == fused.returncode == 0, fused.stderr
    assert fused.stdout == plain.stdout
    assert "--kernels triton applies to the captured decode step on a CUDA device; ignored on cpu" in fused.stderr
    bad = biogpt(*base, "--kernels", "cuda")
    assert bad.returncode == 2 and "--kernels cuda: expected auto, torch or triton" in bad.stderr and "Traceback" not in bad.stderr
    both = biogpt(*base, "--kernels", "triton", "--compile")
    assert both.returncode == 2 and "--kernels triton and --compile exclude each other" in both.stderr


def test_compiled_steps_decode_in_static_batches():
    """The refill engine's attention span changes as it runs (a compiled step would recompile for
    each span): with compile_step greedy decoding takes the static-batch path."""
    from biogpt.commands.generate import continuous_applies
    from biogpt.model.generation import GenerationConfig

    assert continuous_applies(GenerationConfig(max_new_tokens=8))
    assert not continuous_applies(GenerationConfig(max_new_tokens=8, compile_step=True))


def test_streaming_prints_the_same_text(model_dir):
    plain = biogpt("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--no-stream")
    streamed = biogpt("generate", "--prompt", "COVID-19 is", "-m", str(model_dir), "--max-new-tokens", "8", "--stream")
    assert plain.returncode == streamed.returncode == 0
    assert streamed.stdout.strip() == plain.stdout.strip()


def test_a_missing_model_or_an_option_out_of_range_is_one_line(model_dir, tmp_path):
    """One line each: a model folder that is not there (a bare word is not taken for a hub id:
    a usage error, exit 2, as test_user_errors_are_one_line), an option the library rejects (its
    InvalidOptionError: a usage error, exit 2)."""
    for args, code, message in (
        (("-m", str(tmp_path / "nomodel")), 2, "nomodel: no such directory, and not a Hugging Face hub id"),
        (("-m", "biogtp"), 2, "biogtp: no such directory, and not a Hugging Face hub id"),
        (("-m", str(model_dir), "--repetition-penalty", "0"), 2, "repetition_penalty must be > 0, got 0.0"),
    ):
        result = biogpt("generate", "--prompt", "Aspirin", "--max-new-tokens", "2", *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and "internal error" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_documents_stop_the_run_or_are_skipped_with_keep_going(model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "Aspirin"}) + "\n{broken\n" + json.dumps({"id": "c", "text": "  "}) + "\n" + json.dumps({"id": "d", "text": "Heparin"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = biogpt("generate", "--input", str(src), "-m", str(model_dir), "--format", "jsonl", "--max-new-tokens", "3", "-o", str(out))
    assert result.returncode == 1
    assert "in.jsonl:2: malformed JSON" in result.stderr and "Traceback" not in result.stderr
    # what was written before stays, in OUT.partial for --resume: the final name holds only complete outputs
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and [json.loads(l)["id"] for l in partial.read_text().splitlines()] == ["a"]

    errors = tmp_path / "errors.jsonl"
    result = biogpt("generate", "--input", str(src), "-m", str(model_dir), "--format", "jsonl", "--max-new-tokens", "3",
                    "-o", str(out), "--force", "--keep-going", "--errors", str(errors))
    assert result.returncode == 0, result.stderr
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a", "d"]
    failed = [json.loads(l) for l in errors.read_text().splitlines()]
    assert [f["location"].rsplit(":", 1)[1] for f in failed] == ["2", "3"]
    assert "empty document" in failed[1]["error"] and "2 documents skipped" in result.stderr


def test_limit_formats_and_binary_input(model_dir, tmp_path):
    pubtator = FIXTURES / "io" / "sample.pubtator"
    result = biogpt("generate", "--input", str(pubtator), "-m", str(model_dir), "--format", "jsonl", "--max-new-tokens", "2", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02garbage")
    result = biogpt("generate", "--input", str(binary), "-m", str(model_dir))
    assert result.returncode == 1 and "binary file" in result.stderr and "Traceback" not in result.stderr  # bad data: 1
    result = biogpt("--debug", "generate", "--input", str(binary), "-m", str(model_dir))
    assert result.returncode == 1 and "Traceback" in result.stderr
