import json

import pytest

from biogpt.model import BioGptConfig, ConfigError


def test_defaults_equal_transformers():
    transformers = pytest.importorskip("transformers")
    ref = transformers.BioGptConfig()
    ours = BioGptConfig()
    for key, value in ref.to_dict().items():
        if key in ("transformers_version", "dtype", "architectures", "output_attentions", "output_hidden_states", "return_dict"):
            continue
        if hasattr(ours, key):
            assert getattr(ours, key) == value, key
    assert ours.num_labels == ref.num_labels
    assert ours.id2label == ref.id2label


def test_json_round_trip(tmp_path):
    cfg = BioGptConfig.from_preset("tiny", id2label={0: "O", 1: "B-Chemical", 2: "I-Chemical"}, problem_type="single_label_classification")
    cfg.extra["architectures"] = ["BioGptForTokenClassification"]
    cfg.save_pretrained(tmp_path)
    again = BioGptConfig.from_pretrained(tmp_path)
    assert again == cfg
    assert again.num_labels == 3 and again.label2id["B-Chemical"] == 1
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "biogpt" and data["id2label"]["1"] == "B-Chemical"
    assert "head_dim" not in data and "num_labels" not in data  # derived, not stored


def test_transformers_reads_our_config_and_we_read_theirs(tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = BioGptConfig.from_preset("biogpt-large", id2label={0: "no", 1: "yes"})
    ours.save_pretrained(tmp_path / "ours")
    ref = transformers.BioGptConfig.from_pretrained(tmp_path / "ours")
    assert ref.hidden_size == 1600 and ref.num_hidden_layers == 48 and ref.vocab_size == 57717
    assert ref.id2label == {0: "no", 1: "yes"}
    ref_cfg = transformers.BioGptConfig(hidden_size=64, num_attention_heads=4, num_labels=5)
    ref_cfg.save_pretrained(tmp_path / "theirs")
    back = BioGptConfig.from_pretrained(tmp_path / "theirs")
    assert back.hidden_size == 64 and back.num_labels == 5 and back.head_dim == 16


def test_presets():
    large = BioGptConfig.from_preset("microsoft/BioGPT-Large")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads) == (1600, 48, 25)
    assert (large.intermediate_size, large.vocab_size, large.max_position_embeddings) == (6400, 57717, 2048)
    assert BioGptConfig.from_preset("biogpt") == BioGptConfig()
    with pytest.raises(ConfigError, match="unknown preset"):
        BioGptConfig.from_preset("gpt5")


def test_bad_config_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        BioGptConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match="model_type 'bert'"):
        BioGptConfig.from_pretrained(tmp_path)



def test_shapes_are_checked_when_a_model_is_built():
    """transformers builds such configs (its config tests use hidden_size=37 with 16 heads) and
    refuses only the model; so do we."""
    from biogpt.model import BioGptModel

    cfg = BioGptConfig(hidden_size=30, num_attention_heads=4, num_hidden_layers=1, vocab_size=10, intermediate_size=8)
    assert cfg.hidden_size == 30
    with pytest.raises(ConfigError, match="divisible") as info:
        BioGptModel(cfg)
    assert isinstance(info.value, ValueError)  # what transformers raises
