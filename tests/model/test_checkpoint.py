"""Checkpoint formats, safety and errors: HF directories (single, sharded, .bin), hub cache,
fairseq directories (omegaconf cfg / argparse args, learned prompt rows), malicious pickles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import biogpt.model
from biogpt.model import (
    BioGptForCausalLM,
    BioGptForSequenceClassification,
    BioGptForTokenClassification,
    BioGptModel,
    BioGptTokenizer,
    CheckpointError,
    ModelNotFoundError,
    UnsafeCheckpointError,
)
from biogpt.model.errors import PathError
from biogpt.model.safe_pickle import safe_torch_load

from tests.helpers import ROOT, tiny_config, tiny_lm, write_fairseq_dir

LEARNED = [f"learned{i}" for i in range(1, 10)]


def ids_batch(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(4, vocab, (2, 9), generator=g)


# ------------------------------------------------------------------ Hugging Face formats
@torch.no_grad()
def test_sharded_and_bin_weights(tmp_path):
    model = tiny_lm()
    ids = ids_batch(1000)
    want = model(ids).logits
    model.save_pretrained(tmp_path / "sharded", max_shard_size=20_000)
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert torch.equal(BioGptForCausalLM.from_pretrained(tmp_path / "sharded")(ids).logits, want)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_text((tmp_path / "sharded" / "config.json").read_text())
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    assert torch.equal(BioGptForCausalLM.from_pretrained(bin_dir)(ids).logits, want)


@torch.no_grad()
def test_transformers_loading_options_are_understood(tmp_path):
    """transformers' loading line (torch_dtype=..., device_map=..., low_cpu_mem_usage=...,
    attn_implementation=...) loads the same model here; contradictions and what we do not
    offer (a model split over devices, an unknown attention) are one clear error each."""
    model = tiny_lm()
    model.save_pretrained(tmp_path, tokenizer=False)
    ids = ids_batch(1000)
    want = BioGptForCausalLM.from_pretrained(tmp_path, dtype=torch.float16)
    for options in (
        dict(torch_dtype=torch.float16),
        dict(torch_dtype="float16", dtype="torch.float16"),
        dict(torch_dtype=torch.float16, device_map="auto" if not torch.cuda.is_available() else "cpu"),
        dict(torch_dtype=torch.float16, device_map={"": "cpu"}, low_cpu_mem_usage=True),
        dict(torch_dtype=torch.float16, device_map="cpu", device="cpu", attn_implementation="eager"),
    ):
        loaded = BioGptForCausalLM.from_pretrained(tmp_path, **options)
        assert loaded.dtype == torch.float16 and loaded.device.type == "cpu", options
        if options.get("attn_implementation") == "eager":  # the same attention written out: float16 rounding apart
            assert loaded.config._attn_implementation == "eager"
            assert torch.allclose(loaded(ids).logits.float(), want(ids).logits.float(), atol=2e-3), options
        else:
            assert torch.equal(loaded(ids).logits, want(ids).logits), options
    sdpa = BioGptForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert sdpa.dtype == torch.float32
    with pytest.raises(TypeError, match="got dtype=.*and torch_dtype=.*pass one"):
        BioGptForCausalLM.from_pretrained(tmp_path, dtype="bfloat16", torch_dtype=torch.float16)
    with pytest.raises(TypeError, match="got device=.*and device_map=.*pass one"):
        BioGptForCausalLM.from_pretrained(tmp_path, device="meta", device_map="cpu")
    with pytest.raises(ValueError, match=r"places the model on 2 devices \(cpu, meta\).*pass one"):
        BioGptForCausalLM.from_pretrained(tmp_path, device_map={"biogpt.embed_tokens": "cpu", "output_projection": "meta"})
    with pytest.raises(ValueError, match="unknown attn_implementation 'flex'; choose sdpa, eager, flash_attention_2"):
        BioGptForCausalLM.from_pretrained(tmp_path, attn_implementation="flex")


@torch.no_grad()
def test_transformers_checkpoint_loads_without_renaming(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BioGptConfig(
        vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    ref = transformers.BioGptForCausalLM(cfg).eval()
    ref.save_pretrained(str(tmp_path))
    ours = BioGptForCausalLM.from_pretrained(tmp_path)
    ids = ids_batch(1000)
    assert (ours(ids).logits - ref(ids).logits).abs().max() < 1e-4


@torch.no_grad()
def test_hub_id_from_filled_cache_offline(tmp_path, monkeypatch):
    """A hub id resolves through the standard cache layout with HF_HUB_OFFLINE=1."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_lm()
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someorg--tiny-biogpt"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    model.save_pretrained(repo / "snapshots" / commit, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    loaded = BioGptForCausalLM.from_pretrained("someorg/tiny-biogpt", cache_dir=tmp_path)
    ids = ids_batch(1000)
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    tok = BioGptTokenizer.from_pretrained("someorg/tiny-biogpt", cache_dir=tmp_path)
    assert tok("COVID-19 is")["input_ids"] == [2, 4805, 9, 656, 21]
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache.*offline"):
        BioGptForCausalLM.from_pretrained("someorg/not-downloaded", cache_dir=tmp_path)


def test_unreachable_hub_is_one_quick_error_and_asked_once(tmp_path, monkeypatch):
    """A hub id whose files are not cached, with no network: one request without retries says
    so at once (huggingface_hub alone retries for ~25 s), remembered for the next files; a
    bare word is a missing folder, not a hub id; a cached file never asks the hub first."""
    import huggingface_hub
    from huggingface_hub import constants

    from biogpt.model import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_UNREACHABLE", [])
    asked: list[str] = []

    def no_network(url, *args, **kwargs):
        asked.append(url)
        raise ConnectionError("no route to host")

    def no_download(*args, **kwargs):
        raise AssertionError("hf_hub_download must not run when the hub is unreachable")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(ModelNotFoundError, match=r"someorg/m: config.json is not in the Hugging Face cache and the hub cannot be reached \(ConnectionError: no route to host\)"):
        BioGptForCausalLM.from_pretrained("someorg/m", cache_dir=tmp_path)
    assert hub.resolve_file("someorg/m", "tokenizer_config.json", cache_dir=tmp_path, required=False) is None
    assert len(asked) == 1
    with pytest.raises(PathError, match="biogtp: no such directory, and not a Hugging Face hub id"):
        BioGptForCausalLM.from_pretrained("biogtp")

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--someorg--cached" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--someorg--cached" / "refs").mkdir()
    (tmp_path / "models--someorg--cached" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kwargs: str(snapshot / kwargs["filename"]))
    assert hub.resolve_file("someorg/cached", "config.json", cache_dir=tmp_path) == snapshot / "config.json"
    assert len(asked) == 1


def test_token_and_force_download_reach_every_hub_request(tmp_path, monkeypatch):
    """transformers' `token=` (a private or gated repository) and `force_download=` are passed
    to every file the load fetches (config, weights, generation config); force_download skips
    the cache lookup, so a cached file is fetched again; trust_remote_code is accepted."""
    import huggingface_hub
    from huggingface_hub import constants

    from biogpt.model import hub

    repo = tmp_path / "repo"
    tiny_lm().save_pretrained(repo, tokenizer=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_UNREACHABLE", [])
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # reachable
    looked_up: list[str] = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, filename, **kw: looked_up.append(filename))
    fetched: list[tuple[str, object, bool]] = []

    def download(*, repo_id, filename, token=None, force_download=False, **kwargs):
        fetched.append((filename, token, force_download))
        found = repo / filename
        if not found.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        return str(found)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    model = BioGptForCausalLM.from_pretrained("someorg/private", token="hf_secret", force_download=True, trust_remote_code=True)
    names = [name for name, _, _ in fetched]
    assert {"config.json", "model.safetensors", "generation_config.json"} <= set(names)
    assert all(token == "hf_secret" and force for _, token, force in fetched)
    assert looked_up == []  # no cache shortcut when a fresh download is asked for
    ids = ids_batch(model.config.vocab_size)
    assert torch.equal(model(ids).logits, BioGptForCausalLM.from_pretrained(repo)(ids).logits)

    fetched.clear()
    BioGptForCausalLM.from_pretrained("someorg/private")
    assert all(token is None and not force for _, token, force in fetched) and looked_up


def test_tokenizer_takes_the_hub_options_and_a_subfolder(tmp_path, monkeypatch):
    """BioGptTokenizer.from_pretrained(subfolder=, token=, force_download=) as transformers': the
    files are looked up inside the subfolder of a local folder or of a hub repository."""
    import huggingface_hub
    from huggingface_hub import constants

    from biogpt.model import hub

    repo = tmp_path / "repo"
    BioGptTokenizer.from_pretrained("microsoft/biogpt").save_pretrained(repo / "tok")
    local = BioGptTokenizer.from_pretrained(repo, subfolder="tok")
    assert len(local) == 42384 and local("aspirin")["input_ids"] == BioGptTokenizer.from_pretrained("microsoft/biogpt")("aspirin")["input_ids"]
    with pytest.raises(OSError, match="no such subfolder"):
        BioGptTokenizer.from_pretrained(repo, subfolder="nope")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_UNREACHABLE", [])
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)
    fetched: list[tuple[str, object, object, bool]] = []

    def download(*, repo_id, filename, subfolder=None, token=None, force_download=False, **kwargs):
        fetched.append((filename, subfolder, token, force_download))
        found = repo / (subfolder or "") / filename
        if not found.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        return str(found)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    remote = BioGptTokenizer.from_pretrained("someorg/private", subfolder="tok", token="hf_secret", force_download=True)
    assert len(remote) == len(local)
    assert {"vocab.json", "merges.txt"} <= {name for name, *_ in fetched}
    assert all(sub == "tok" and token == "hf_secret" and force for _, sub, token, force in fetched)


# ------------------------------------------------------------------ fairseq
@torch.no_grad()
@pytest.mark.parametrize("cfg_style", ["omegaconf", "argparse"])
def test_fairseq_checkpoint_with_learned_prompt_rows(tmp_path, cfg_style):
    if cfg_style == "omegaconf":
        pytest.importorskip("omegaconf")  # only to *write* the fixture; loading never imports it
    model = tiny_lm(vocab_size=1009)  # 4 specials + 996 dict words + learned1..learned9
    directory = write_fairseq_dir(tmp_path / "ft", model, dict_entries=996, cfg_style=cfg_style, optimizer_state_mb=4)
    loaded = BioGptForCausalLM.from_pretrained(directory)
    assert loaded.config.vocab_size == 1009 and loaded.config.num_attention_heads == 4
    ids = ids_batch(1009)
    assert (loaded(ids).logits - model(ids).logits).abs().max() < 1e-6
    tok = BioGptTokenizer.from_pretrained(directory)
    assert len(tok) == 1009
    assert tok.convert_tokens_to_ids(LEARNED) == list(range(1000, 1009))
    assert tok("the learned1 learned2 effect")["input_ids"][2:4] == [1000, 1001]
    assert len(BioGptTokenizer.from_pretrained(directory, extra_symbols=[])) == 1000  # given, not counted


def test_fairseq_loading_never_imports_omegaconf(tmp_path):
    pytest.importorskip("omegaconf")
    directory = write_fairseq_dir(tmp_path / "ft", tiny_lm(vocab_size=1009), dict_entries=996)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["omegaconf"] = None  # importing it would raise
        from biogpt.model import BioGptForCausalLM
        m = BioGptForCausalLM.from_pretrained({str(directory)!r})
        assert m.config.vocab_size == 1009
        assert not any(k.startswith(("omegaconf", "fairseq")) for k in sys.modules if sys.modules[k] is not None)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@torch.no_grad()
def test_convert_fairseq_to_hf_then_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_lm(vocab_size=1009)
    directory = write_fairseq_dir(tmp_path / "ft", model, dict_entries=996, cfg_style="argparse")
    out = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "biogpt", "convert", str(directory), str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    ref = transformers.BioGptForCausalLM.from_pretrained(str(out)).eval()
    ids = ids_batch(1009)
    assert (ref(ids).logits - model(ids).logits).abs().max() < 1e-4
    ref_tok = transformers.BioGptTokenizer.from_pretrained(str(out))
    assert len(ref_tok) == 1009 and ref_tok.convert_tokens_to_ids("learned9") == 1008
    again = subprocess.run(
        [sys.executable, "-m", "biogpt", "convert", str(directory), str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr


# ------------------------------------------------------------------ safety
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["fairseq", "bin"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    model = tiny_lm()
    if where == "fairseq":
        directory = write_fairseq_dir(tmp_path / "ft", model, dict_entries=996)
        ckpt = torch.load(directory / "checkpoint.pt", weights_only=False)
        ckpt["cfg"] = _Evil(marker)
        torch.save(ckpt, directory / "checkpoint.pt")
    else:
        directory = tmp_path / "hf"
        model.save_pretrained(directory)
        (directory / "model.safetensors").unlink()
        state = dict(model.state_dict())
        state["evil"] = _Evil(marker)
        torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match=r": corrupt or unsafe checkpoint \(refused: the pickle imports (posix|os|nt)\.system"):
        BioGptForCausalLM.from_pretrained(directory)
    assert not marker.exists()


def test_safe_loader_refuses_builtins_eval(tmp_path):
    class EvalEvil:
        def __reduce__(self):
            return (eval, ("1+1",))

    torch.save({"model": {}, "x": EvalEvil()}, tmp_path / "c.pt")
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        safe_torch_load(tmp_path / "c.pt")


# ------------------------------------------------------------------ errors
def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(PathError, match="no such directory"):
        BioGptForCausalLM.from_pretrained(str(tmp_path / "missing" / "model"))
    with pytest.raises(PathError, match="not a model directory; expected config.json"):
        BioGptForCausalLM.from_pretrained(tmp_path)

    model = tiny_lm()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "elsewhere.safetensors")
    with pytest.raises(PathError, match="m: no weights found beside config.json; expected model.safetensors"):
        BioGptForCausalLM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "elsewhere.safetensors").rename(tmp_path / "m" / "model.safetensors")

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "vocab_size": 1200}))
    with pytest.raises(CheckpointError, match=r"embed_tokens.weight has 1000 rows but the configuration says vocab_size=1200"):
        BioGptForCausalLM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 128}))
    with pytest.raises(CheckpointError, match=r"layers\.0\.fc1\.(bias|weight) has shape \[64.*\], expected \[128.*\] from the configuration"):
        BioGptForCausalLM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match=r"lacks \d+ weights the model needs, e.g. biogpt.layers.2"):
        BioGptForCausalLM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt or unsafe checkpoint \(not a readable safetensors file"):
        BioGptForCausalLM.from_pretrained(tmp_path / "m")

    fs = write_fairseq_dir(tmp_path / "fs", tiny_lm(vocab_size=1009), dict_entries=996)
    lines = (fs / "dict.txt").read_text().splitlines()
    (fs / "dict.txt").write_text("\n".join(lines + [f"extra{i} 1" for i in range(20)]) + "\n")
    with pytest.raises(CheckpointError, match=r"1009 rows but .*dict.txt defines 1020 symbols"):
        BioGptForCausalLM.from_pretrained(fs)


def test_cli_reports_missing_model_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "biogpt", "convert", str(tmp_path / "nope"), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2  # a missing path is a usage error
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biogpt: error:") and "nope" in lines[0]


# ------------------------------------------------------------------ lean loading
LEAN_SCRIPT = """
import sys, torch
def peak_kb():
    # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from biogpt.model import BioGptForCausalLM
path = sys.argv[1]
before = peak_kb()
m = BioGptForCausalLM.from_pretrained(path)
with torch.no_grad():  # touch every weight, so lazily mapped pages count too
    total = sum(float(p.float().sum()) for p in m.parameters())
after = peak_kb()
size = sum(p.numel() * p.element_size() for p in {id(p): p for p in m.parameters()}.values())
print((after - before) * 1024 / size)
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "fairseq"])
def test_loading_peak_rss_stays_below_1_2x_weights(tmp_path, fmt):
    """347M shapes (1.4 GB fp32); the fairseq file also carries 1.4 GB of optimizer state."""
    make = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from biogpt.model import BioGptConfig, BioGptForCausalLM
        from tests.helpers import write_fairseq_dir
        from pathlib import Path
        m = BioGptForCausalLM(BioGptConfig())
        if {fmt!r} == "safetensors":
            m.save_pretrained({str(tmp_path / "m")!r})
        else:
            write_fairseq_dir(Path({str(tmp_path / "m")!r}), m, dict_entries=42380, cfg_style="argparse", optimizer_state_mb=700)
        """
    )
    subprocess.run([sys.executable, "-c", make], check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, "-c", LEAN_SCRIPT, str(tmp_path / "m")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    ratio = float(out.stdout.strip().splitlines()[-1])
    print(f"{fmt}: peak RSS increase while loading = {ratio:.3f} x weights")
    assert ratio <= 1.2


def test_weights_only_save_needs_no_tokenizer_or_sacremoses(tmp_path):
    """tokenizer=False: config and weights only (the GPU suite runs where sacremoses is absent)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["sacremoses"] = None  # any import of it now fails
        import torch
        from biogpt.model import BioGptForCausalLM
        sys.path.insert(0, {str(ROOT)!r})
        from tests.helpers import tiny_lm
        model = tiny_lm()
        model.save_pretrained({str(tmp_path)!r}, tokenizer=False)
        back = BioGptForCausalLM.from_pretrained({str(tmp_path)!r})
        ids = torch.tensor([[2, 5, 6, 7]])
        assert torch.equal(back(ids).logits, model(ids).logits)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]


# ------------------------------------------------------------------ atomic saving, corrupt files
def _same_weights(a: BioGptForCausalLM, b: BioGptForCausalLM) -> bool:
    return all(torch.equal(p, b.state_dict()[k]) for k, p in a.state_dict().items())


def test_save_pretrained_on_a_full_disk_leaves_nothing_and_names_the_folder(tmp_path):
    from biogpt.model.errors import OutputError

    from tests.faults import file_size_limit, temporaries

    model = tiny_lm()
    target = tmp_path / "new"
    with pytest.raises(OutputError) as info:
        with file_size_limit(50_000):  # config.json fits, the weights (~170 kB) do not
            model.save_pretrained(target, tokenizer=False)
    assert str(info.value) == f"{target}: file too large"  # not safetensors' SafetensorError text
    assert list(tmp_path.iterdir()) == []
    # over an existing model: the old one stays whole and loadable
    old = tiny_lm(seed=1)
    old.save_pretrained(target, tokenizer=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(OutputError, match="file too large"):
        with file_size_limit(50_000):
            model.save_pretrained(target, tokenizer=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert _same_weights(BioGptForCausalLM.from_pretrained(target), old)
    assert temporaries(tmp_path) == []


def test_config_and_tokenizer_saved_alone_are_atomic(tmp_path):
    from biogpt.model.errors import OutputError

    from tests.faults import file_size_limit, temporaries

    tokenizer = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    with pytest.raises(OutputError, match=r"vocab.json: file too large"):
        with file_size_limit(10_000):
            tokenizer.save_pretrained(tmp_path / "tok")
    assert not (tmp_path / "tok").exists() and temporaries(tmp_path) == []  # the folder appears whole or not at all
    (tmp_path / "tok").mkdir()  # save_vocabulary, as transformers', writes into an existing folder
    files = tokenizer.save_vocabulary(tmp_path / "tok")
    assert [Path(f).name for f in files] == ["vocab.json", "merges.txt"]
    config = tiny_lm().config
    with pytest.raises(OutputError, match=r"config.json: file too large"):
        with file_size_limit(10):
            config.save_pretrained(tmp_path / "cfg")
    assert list((tmp_path / "cfg").iterdir()) == []
    config.save_pretrained(tmp_path / "cfg")
    assert json.loads((tmp_path / "cfg" / "config.json").read_text())["hidden_size"] == 32


def test_saving_over_a_model_switches_single_and_sharded_weights_cleanly(tmp_path):
    import stat

    model, other = tiny_lm(), tiny_lm(seed=1)
    target = tmp_path / "m"
    old = os.umask(0o022)
    try:
        model.save_pretrained(target, tokenizer=False, max_shard_size=40_000)
        (target / "NOTES.md").write_text("mine")
        shards = sorted(p.name for p in target.glob("model-*.safetensors"))
        assert len(shards) > 1 and (target / "model.safetensors.index.json").is_file()
        other.save_pretrained(target, tokenizer=False)  # single file where shards were
        assert sorted(p.name for p in target.iterdir()) == ["NOTES.md", "config.json", "generation_config.json", "model.safetensors"]
        assert _same_weights(BioGptForCausalLM.from_pretrained(target), other)
        model.save_pretrained(target, tokenizer=False, max_shard_size=40_000)  # and back
        assert not (target / "model.safetensors").exists()
        assert sorted(p.name for p in target.glob("model-*.safetensors")) == shards
        assert _same_weights(BioGptForCausalLM.from_pretrained(target), model)
        # every file with the mode an ordinary open() gives (safetensors alone writes 0600)
        assert {stat.S_IMODE(p.stat().st_mode) for p in target.iterdir() if p.name != "NOTES.md"} == {0o644}
    finally:
        os.umask(old)


@pytest.mark.parametrize("damage", ["random", "truncated", "bad-header"])
def test_corrupt_safetensors_is_one_checkpoint_error(tmp_path, damage):
    directory = tiny_lm().save_pretrained(tmp_path / "m", tokenizer=False)
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    if damage == "random":
        weights.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:  # a valid length prefix over a header whose shapes are nonsense
        header = json.dumps({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}).encode()
        weights.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(CheckpointError, match=rf"^{weights}: corrupt or unsafe checkpoint \(not a readable safetensors file: .+\)$"):
        BioGptForCausalLM.from_pretrained(directory)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_fairseq_checkpoint_is_one_checkpoint_error(tmp_path, damage):
    directory = write_fairseq_dir(tmp_path / "fs", tiny_lm(), dict_entries=996)
    ckpt = directory / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(os.urandom(4096) if damage == "random" else data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        BioGptForCausalLM.from_pretrained(directory)
    message = str(info.value)
    assert message.startswith(f"{ckpt}: corrupt or unsafe checkpoint (") and message.endswith(")")
    assert "weights_only" not in message and "\n" not in message and len(message) < 300


def test_training_state_loader_refuses_garbage_and_code(tmp_path):
    from biogpt.model.safe_pickle import load_state

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"step": 1, "x": torch.zeros(2)}, tmp_path / "ok.pt")
    assert load_state(tmp_path / "ok.pt")["step"] == 1
    torch.save({"evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"evil.pt: corrupt or unsafe checkpoint \(refused: the pickle imports (posix|os|nt)\.system"):
        load_state(tmp_path / "evil.pt")
    (tmp_path / "random.pt").write_bytes(os.urandom(3000))
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name in ("random.pt", "cut.pt"):
        with pytest.raises(CheckpointError) as info:
            load_state(tmp_path / name)
        assert str(info.value).startswith(f"{tmp_path / name}: corrupt or unsafe checkpoint (")
        assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_a_file_or_a_foreign_folder_is_not_a_model(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    with pytest.raises(PathError, match=rf"^{text}: is a file, expected a model folder or hub id$"):
        BioGptForCausalLM.from_pretrained(text)
    with pytest.raises(PathError, match=rf"^{text}: is a file, expected a model folder or hub id$"):
        BioGptTokenizer.from_pretrained(str(text))


def test_cli_model_paths_and_corrupt_weights_are_one_line(tmp_path):
    """-m a text file: usage error (2); random weights: "corrupt or unsafe checkpoint" (1)."""
    from tests.helpers import biogpt

    text = tmp_path / "notes.txt"
    text.write_text("COVID-19 is\n")
    result = biogpt("generate", "-m", str(text), "--prompt", "x")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"biogpt: error: {text}: is a file, expected a model folder or hub id"]
    directory = tiny_lm().save_pretrained(tmp_path / "m", tokenizer=False)
    (directory / "model.safetensors").write_bytes(os.urandom(5000))
    result = biogpt("generate", "-m", str(directory), "--prompt", "x")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "corrupt or unsafe checkpoint (not a readable safetensors file" in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr


def test_generate_with_a_classifier_is_a_usage_error(tmp_path):
    from biogpt.model import BioGptConfig

    from tests.helpers import biogpt

    cfg = BioGptConfig.from_preset("tiny", vocab_size=42384, id2label={0: "O", 1: "B-X"})
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    BioGptForTokenClassification(cfg).save_pretrained(tmp_path / "tagger", tokenizer=tok)
    result = biogpt("generate", "-m", str(tmp_path / "tagger"), "--prompt", "x")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"biogpt: error: {tmp_path / 'tagger'}: a token-classification model (BioGptForTokenClassification), "
        "not a language model; use it with `biogpt tag`"
    ]
    from biogpt._common import UserError, load_causal_lm

    BioGptForSequenceClassification(cfg).save_pretrained(tmp_path / "cls", tokenizer=tok)
    with pytest.raises(UserError, match=r"sequence-classification model .*`biogpt classify`"):
        load_causal_lm(str(tmp_path / "cls"), device="cpu", dtype="float32")
    tiny_lm(vocab_size=42384).save_pretrained(tmp_path / "lm", tokenizer=tok)
    model, _ = load_causal_lm(str(tmp_path / "lm"), device="cpu", dtype="float32")  # a language model still loads
    assert type(model).__name__ == "BioGptForCausalLM"


def test_hub_logging_routes_library_records_through_the_root_logger_and_restores():
    import logging

    from biogpt.model.hub import hub_logging, offline_hub
    from huggingface_hub import constants

    lib = logging.getLogger("huggingface_hub")
    handler = logging.StreamHandler()
    lib.addHandler(handler)
    lib.setLevel(logging.WARNING)
    try:
        with hub_logging():
            assert lib.handlers == [] and lib.level == logging.NOTSET and lib.propagate
        assert handler in lib.handlers and lib.level == logging.WARNING
    finally:
        lib.removeHandler(handler)
    before = constants.HF_HUB_OFFLINE
    with offline_hub():
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE == before


def test_pubmedqa_offline_is_one_quick_line_exit_1(tmp_path, monkeypatch, capsys):
    """No network: one request without retries, then the datasets cache only (offline mode);
    a hub failure for a data set is a runtime error like a model's (1), in one line."""
    import datasets
    import huggingface_hub

    from biogpt.main import main
    from biogpt.model import hub

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "_UNREACHABLE", [])
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked = []

    def no_network(url, *args, **kwargs):
        asked.append(url)
        raise ConnectionError("no route to host")

    def cache_only(*args, **kwargs):
        assert constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
        raise ConnectionError("offline mode and not cached")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    monkeypatch.setattr(datasets, "load_dataset", cache_only)
    import logging

    from biogpt import _common

    # main() sets -q's process state (the CLI's flags, the root logger): restored for later tests
    for flag in ("QUIET", "DEBUG"):
        monkeypatch.setattr(_common, flag, getattr(_common, flag))
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        assert main(["-q", "eval", "pubmedqa"]) == 1
    finally:
        root.handlers = handlers
        root.setLevel(level)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "biogpt: error: pubmedqa: could not fetch qiaojin/PubMedQA from the Hugging Face hub (not cached, the hub "
        "cannot be reached: ConnectionError: no route to host); pass --data PATH (the PubMedQA folder or ori_pqal.json)"
    ]
    assert len(asked) == 1 and "datasets/qiaojin/PubMedQA" in asked[0]
    assert constants.HF_HUB_OFFLINE is False


# ------------------------------------------------------------------ transformers' loading options
def _hf(name: str):
    import transformers

    return getattr(transformers, name)


@pytest.mark.parametrize("tied", [True, False])
def test_loading_info_matches_transformers(tmp_path, tied):
    """output_loading_info=True returns (model, report) with transformers' keys and sets: a
    model's own folder reports nothing (a bare body from an untied language model: the head,
    unexpected); a bare body loaded into a head reports the head as
    missing; a folder whose weights hold none of the model's reports every parameter (loaded
    and initialised, as transformers does, instead of refused as without the report)."""
    from safetensors.torch import save_file

    folder = tmp_path / "lm"
    tiny_lm(tie_word_embeddings=tied).save_pretrained(folder, tokenizer=False)
    for name in ("BioGptForCausalLM", "BioGptModel"):
        ours = getattr(biogpt.model, name).from_pretrained(folder, output_loading_info=True)[1]
        theirs = _hf(name).from_pretrained(folder, output_loading_info=True)[1]
        assert ours == theirs, name
    assert ours["missing_keys"] == set() and ours["unexpected_keys"] == ({"output_projection.weight"} if not tied else set())

    body = tmp_path / "body"
    BioGptModel(tiny_config(tie_word_embeddings=tied)).save_pretrained(body, tokenizer=False)
    for name in ("BioGptForSequenceClassification", "BioGptForTokenClassification"):
        ours = getattr(biogpt.model, name).from_pretrained(body, output_loading_info=True)[1]
        theirs = _hf(name).from_pretrained(body, output_loading_info=True)[1]
        assert ours["missing_keys"] == theirs["missing_keys"] and ours["missing_keys"], name

    save_file({"tensor": torch.tensor([1, 2])}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lacks"):
        BioGptForCausalLM.from_pretrained(folder)
    model, info = BioGptForCausalLM.from_pretrained(folder, output_loading_info=True)
    theirs = _hf("BioGptForCausalLM").from_pretrained(folder, output_loading_info=True)[1]
    assert info["missing_keys"] == {name for name, _ in model.named_parameters()}
    assert info["unexpected_keys"] == theirs["unexpected_keys"]
    assert not any(p.is_meta for p in model.parameters())
    assert model.output_projection.weight is model.biogpt.embed_tokens.weight or not tied


def test_from_pretrained_none_with_config_and_state_dict(tmp_path):
    """from_pretrained(None, config=, state_dict=) builds the model from those two, and a folder
    with state_dict= takes its config from the folder and its weights from the dict."""
    model = tiny_lm(seed=3)
    again = BioGptForCausalLM.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    model.save_pretrained(tmp_path / "lm", tokenizer=False)
    other = tiny_lm(seed=4)
    mixed = BioGptForCausalLM.from_pretrained(pretrained_model_name_or_path=tmp_path / "lm", state_dict=other.state_dict())
    assert torch.equal(mixed.biogpt.embed_tokens.weight, other.biogpt.embed_tokens.weight)
    with pytest.raises(ValueError, match="needs both config= and state_dict="):
        BioGptForCausalLM.from_pretrained(None, config=model.config)


def test_ignore_mismatched_sizes_reinitialises_as_transformers(tmp_path, caplog):
    """A classifier of 3 labels loaded with num_labels=42: a ShapeMismatchError (a RuntimeError,
    as transformers raises) naming the key, or with ignore_mismatched_sizes=True a new `score`
    of 42 rows reported in mismatched_keys as transformers reports it (and logged where
    transformers logs it); the caller's config object is not changed."""
    config = tiny_config(num_labels=3, pad_token_id=1)
    BioGptForSequenceClassification(config).save_pretrained(tmp_path / "cls", tokenizer=False)
    with pytest.raises(RuntimeError, match="score.weight"):
        BioGptForSequenceClassification.from_pretrained(tmp_path / "cls", num_labels=42)
    with caplog.at_level("WARNING", logger="transformers.modeling_utils"):
        model, info = BioGptForSequenceClassification.from_pretrained(
            tmp_path / "cls", num_labels=42, ignore_mismatched_sizes=True, output_loading_info=True
        )
    assert "Reinit due to size mismatch" in caplog.text
    theirs = _hf("BioGptForSequenceClassification").from_pretrained(
        tmp_path / "cls", num_labels=42, ignore_mismatched_sizes=True, output_loading_info=True
    )[1]
    assert info["mismatched_keys"] == theirs["mismatched_keys"] == {("score.weight", (3, config.hidden_size), (42, config.hidden_size))}
    assert model(torch.tensor([[5, 6, 7]])).logits.shape == (1, 42)

    small = tiny_config(vocab_size=10)
    body = BioGptModel.from_pretrained(tmp_path / "cls", config=small, ignore_mismatched_sizes=True)
    assert body.embed_tokens.weight.shape[0] == 10 and small.vocab_size == 10
    assert body(torch.tensor([[1, 2, 9]])).last_hidden_state.shape == (1, 3, small.hidden_size)


def test_from_pretrained_refuses_a_meta_default_device(tmp_path):
    """transformers refuses from_pretrained under `with torch.device("meta")` (the weights would
    be placeholders): the same RuntimeError."""
    tiny_lm().save_pretrained(tmp_path / "lm", tokenizer=False)
    with torch.device("meta"), pytest.raises(RuntimeError, match="meta device context manager"):
        BioGptForCausalLM.from_pretrained(tmp_path / "lm")
