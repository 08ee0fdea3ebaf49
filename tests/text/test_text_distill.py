"""Text distillation end to end on tiny BERTs (tests/text/conftest.py): every transformer loss
wired to real encoder layers, students initialised from the teacher, the same report as images;
and every text mistake the issue names refused in one line before anything trains."""

from __future__ import annotations

import json

import pytest
import torch

from potstill.cli.main import main
from potstill.engine.checkpoint import load_tensors
from tests.conftest import write_recipe
from tests.text.conftest import save_tokenizer, text_recipe

pytest.importorskip("transformers")


def run(capsys, *argv):
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def distill(tmp_path, capsys, recipe):
    code, out, err = run(capsys, "distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "run")
    assert code == 0, err
    return json.loads((tmp_path / "run" / "summary.json").read_text()), out + err


def user_error(tmp_path, capsys, recipe, *fragments, before_training=True):
    code, _, err = run(capsys, "distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad")
    assert code == 2, err
    assert "Traceback" not in err and err.count("potstill: error:") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    if before_training:
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.safetensors"))
    return err


def test_kd_on_text_reports_what_image_runs_report(tmp_path, capsys, tiny_tokenizer, topic_files):
    """Catches: a loop or report that still assumes images (input key, latency inputs, accuracy)."""
    summary, _ = distill(tmp_path, capsys, text_recipe(tiny_tokenizer, topic_files))
    roles = [row["role"] for row in summary["models"]]
    assert roles == ["teacher", "baseline", "student"]
    teacher = summary["models"][0]
    assert teacher["test_acc"] > 0.6  # three topics of disjoint words: an easy task
    assert all(row["latency_batch1_ms"] > 0 and row["params"] > 0 for row in summary["models"])
    assert summary["data"]["input_shape"] == [12] and summary["data"]["num_classes"] == 3
    assert (tmp_path / "run" / "teacher_cache" / "manifest.json").is_file()  # logits of token batches cached too


@pytest.mark.parametrize("terms, shown", [
    ([{"loss": "tinybert_embedding"}, {"loss": "tinybert_hidden"}, {"loss": "tinybert_attention"}],
     ["tinybert_hidden: student bert.encoder.layer.0", "teacher bert.encoder.layer.1 (", "attention.self:1"]),
    ([{"loss": "minilm"}], ["minilm: student bert.encoder.layer.0.attention.self:1", "attention runs eagerly"]),
])
def test_transformer_losses_pair_encoder_layers(tmp_path, capsys, tiny_tokenizer, topic_files, terms, shown):
    """Catches: transformer pairings resolved to the wrong layers (uniform map: 1 student layer <- teacher layer 2 of 2),
    attention maps missing because SDPA computes none, projections that never train."""
    recipe = text_recipe(tiny_tokenizer, topic_files, distill__terms=terms)
    summary, log = distill(tmp_path, capsys, recipe)
    for fragment in shown:
        assert fragment in log, log
    trained = summary["terms"]["student"] if "terms" in summary else None
    assert trained is None or all(name in trained for name in (t["loss"] for t in terms))
    module, _ = load_tensors(tmp_path / "run" / "student" / "module.safetensors")
    if terms[0]["loss"] == "tinybert_embedding":  # 8 -> 16 projections trained and saved with the run
        assert any(name.startswith("losses.tinybert_hidden") for name in module)


def test_distilbert_needs_equal_widths_and_runs_with_them(tmp_path, capsys, tiny_tokenizer, topic_files):
    recipe = text_recipe(tiny_tokenizer, topic_files, distill__loss="distilbert", distill__alpha=2.0, distill__beta=1.0)
    user_error(tmp_path, capsys, recipe, "distilbert", "tinybert_hidden", before_training=False)  # found by the dry run of the pairs
    recipe["student"]["args"].update(hidden=16, intermediate=32)
    summary, log = distill(tmp_path, capsys, recipe)
    assert "distilbert: student bert.encoder.layer.0 (" in log and "teacher bert.encoder.layer.1 (" in log


def test_student_initialised_from_teacher_layers_then_trained(tmp_path, capsys, tiny_tokenizer, topic_files):
    """Catches: init applied after the baseline copied the student (the two would start apart), or not at all."""
    recipe = text_recipe(tiny_tokenizer, topic_files, student__init={"layers": [1], "method": "select"}, train__epochs=1)
    summary, log = distill(tmp_path, capsys, recipe)
    assert "student block 0 <- teacher block 1" in log and "selected" in log
    assert [row["role"] for row in summary["models"]] == ["teacher", "baseline", "student"]


def test_tokenizer_mismatch_is_named_with_both_sizes(tmp_path, capsys, tiny_tokenizer, topic_files):
    other = save_tokenizer(tmp_path / "other", ["zebra", "yak", "xylophone"])
    recipe = text_recipe(tiny_tokenizer, topic_files)
    recipe["student"]["args"]["tokenizer"] = str(other)
    err = user_error(tmp_path, capsys, recipe, "vocabulary", "8 tokens", "37 tokens")
    assert str(other) in err


@pytest.mark.parametrize("change, fragments", [
    ({"teacher__model": {"name": "hf", "args": {"path": "/no/such/model"}}}, ["/no/such/model", "does not exist"]),
    ({"data__args": {"max_length": 40}}, ["40 tokens", "16 positions", "max_length"]),
    ({"distill__loss": "at"}, ["'at'", "image", "text data"]),
    ({"student": {"name": "mlp"}}, ["'mlp'", "images", "text data"]),
    ({"distill__layer_map": [0, 1], "distill__loss": "tinybert_hidden"}, ["layer_map", "2 teacher layers", "1"]),
    ({"distill__layer_map": [5], "distill__loss": "tinybert_hidden"}, ["teacher layer(s) [5]", "0..1"]),
    ({"teacher__model__preprocess": "dataset"}, ["preprocess", "token ids"]),
])
def test_text_mistakes_are_one_line_each(tmp_path, capsys, tiny_tokenizer, topic_files, change, fragments):
    user_error(tmp_path, capsys, text_recipe(tiny_tokenizer, topic_files, **change), *fragments)


def test_a_model_folder_without_weights_is_refused(tmp_path, capsys, tiny_tokenizer, topic_files):
    recipe = text_recipe(tiny_tokenizer, topic_files, teacher__model={"name": "hf", "args": {"path": str(tiny_tokenizer)}})
    user_error(tmp_path, capsys, recipe, "no model.safetensors", "save_pretrained")


def test_a_text_loss_on_image_data_is_refused(tmp_path, capsys):
    from tests.conftest import tiny_recipe

    user_error(tmp_path, capsys, tiny_recipe(distill__loss="minilm", distill__temperature=None), "'minilm'", "text", "image data")


def test_attention_taps_on_a_model_without_attention_maps(tmp_path):
    """Catches: a tap on an output element the module does not return passing silently as an empty feature."""
    from potstill.errors import PotstillError
    from potstill.taps import Taps

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    taps = Taps(model, ["0:1"], "student")
    with pytest.raises(PotstillError, match="no tensor at that output element"):
        with taps.capture():
            model(torch.zeros(2, 4))


def test_transformers_imports_in_this_environment():
    """The project environment must never hold a torchvision that breaks transformers' model imports."""
    from transformers import BertForSequenceClassification, BertModel  # noqa: F401

    import importlib.util

    assert importlib.util.find_spec("torchvision") is None, "torchvision is installed: it breaks transformers imports next to torch 2.13 CPU"


def test_any_transformers_model_and_numpy_token_ids_from_python(tmp_path):
    """Catches: Python-given Hugging Face models called the image way, or the caller's arrays modified."""
    import numpy as np
    import transformers

    import potstill

    def bert(layers, hidden, seed):
        torch.manual_seed(seed)
        config = transformers.BertConfig(vocab_size=30, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                         intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=2)
        return transformers.BertForSequenceClassification(config)

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    ids = rng.integers(5, 15, (64, 8)) + 10 * labels[:, None]  # the label decides which ids appear
    mask = np.ones((64, 8), dtype=np.int64)
    mask[::3, 5:] = 0
    train = {"input_ids": ids[:48], "attention_mask": mask[:48], "labels": labels[:48]}
    test = {"input_ids": ids[48:], "attention_mask": mask[48:], "labels": labels[48:]}
    before = ids.copy()
    teacher = bert(2, 16, 0)
    potstill.train(teacher, train, test, epochs=4, lr=3e-3, run_dir=tmp_path / "teacher")
    result = potstill.distill(teacher, bert(1, 16, 1), train, test, loss="distilbert", temperature=2.0, epochs=2,
                              lr=3e-3, run_dir=tmp_path / "run", teacher_check="warn")
    assert [row["role"] for row in result.summary["models"]] == ["teacher", "baseline", "student"]
    assert np.array_equal(ids, before)
    assert result.summary["data"]["input_shape"] == [8]


def test_image_students_initialise_from_the_teacher_too(tmp_path, capsys):
    """Weight selection on potstill's own MLPs: 32 -> 16 wide, the baseline starts from the same weights."""
    from tests.conftest import tiny_recipe

    recipe = tiny_recipe(teacher__model={"name": "mlp", "args": {"hidden": [32, 32]}}, student__args={"hidden": [16, 16]},
                         student__init={"method": "select"})
    summary, log = distill(tmp_path, capsys, recipe)
    assert "selected (32 -> 16" in log or "32 -> 16" in log
    baseline, student = (tmp_path / "run" / "baseline"), (tmp_path / "run" / "student")
    assert baseline.is_dir() and student.is_dir()


def test_an_init_that_cannot_fit_fails_before_the_teacher_trains(tmp_path, capsys):
    from tests.conftest import tiny_recipe

    recipe = tiny_recipe(student__init={"method": "select"})  # small_cnn teacher, mlp student: no names in common
    user_error(tmp_path, capsys, recipe, "cannot initialise the student", "hidden1.linear.weight (16, 64) vs teacher: missing")


@pytest.mark.parametrize("where", ["after_epoch_1", "inside_epoch_2"])
def test_a_resumed_text_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, tiny_tokenizer, topic_files, where):
    """Catches: text batches (trimmed per batch), TinyBERT projections or eager-attention switching that a
    resumed run rebuilds differently: every file and log line must match bit for bit on CPU."""
    from potstill.schemes.offline import OfflineDistillation
    from tests.engine.test_resume import run_recipe
    from tests.resume_checks import assert_same_files, assert_same_log, interrupt_and_resume

    recipe = text_recipe(tiny_tokenizer, topic_files, train__epochs=3, teacher__train__epochs=2, distill__loss="kd",
                         distill__terms=[{"loss": "tinybert_hidden"}, {"loss": "tinybert_attention"}])
    run_recipe(tmp_path / "whole", recipe)
    interrupt_and_resume(tmp_path / "cut", recipe, monkeypatch, OfflineDistillation, "student", where)
    assert_same_files(tmp_path / "whole", tmp_path / "cut", "student")
    assert_same_log(tmp_path / "whole", tmp_path / "cut")


def test_caching_teacher_layers_of_text_is_refused_in_one_line(tmp_path, capsys, tiny_tokenizer, topic_files):
    recipe = text_recipe(tiny_tokenizer, topic_files, distill__terms=[{"loss": "tinybert_hidden"}],
                         distill__cache={"enabled": True, "features": True})
    user_error(tmp_path, capsys, recipe, "distill.cache", "differ in length")
