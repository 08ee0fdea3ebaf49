"""Causal language models (models/hf_lm.py) and the checks that keep classifiers, image models and
per-sample losses away from language-modelling data (startup.preflight, workbench.check_model)."""

from __future__ import annotations

import pytest
import torch

from potstill import config
from potstill.data.bpe import train_bpe
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.models import create_model
from potstill.models.hf_files import load_tokenizer
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench, preflight
from tests.lm.conftest import CONTEXT, SPEAKERS, VOCABULARY, lm_recipe

TINY = {"layers": 1, "hidden": 16, "heads": 2}


def lm(model_type="gpt2", context=CONTEXT, vocabulary=VOCABULARY, **kwargs):
    return create_model("hf_lm_config", input_shape=(context,), num_classes=vocabulary, seed=0,
                        model_type=model_type, **{**TINY, **kwargs})


@pytest.mark.parametrize("model_type, positions", [("gpt2", "n_positions"), ("llama", "max_position_embeddings")])
def test_hf_lm_config_predicts_the_datas_vocabulary_at_every_position(model_type, positions):
    model = lm(model_type)
    assert model.config.model_type == model_type and model.config.vocab_size == VOCABULARY
    assert getattr(model.config, positions) == CONTEXT  # max_positions defaults to the data's context
    ids = torch.randint(0, VOCABULARY, (3, CONTEXT))
    logits = call_model(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert logits.shape == (3, CONTEXT, VOCABULARY)
    assert torch.isfinite(logits).all()
    shorter = call_model(model, {"input_ids": ids[:, :5], "attention_mask": torch.ones_like(ids[:, :5])})
    assert torch.allclose(shorter, logits[:, :5], atol=1e-5)  # causal: a position sees only what precedes it


def test_max_positions_can_exceed_the_context():
    assert lm(max_positions=64).config.n_positions == 64


def test_a_context_longer_than_the_models_positions_is_refused():
    with pytest.raises(PotstillError) as error:
        lm(context=32, max_positions=16)
    assert "32 tokens" in str(error.value) and "16 positions" in str(error.value)


def test_the_too_long_context_error_names_the_key_that_sets_it():
    with pytest.raises(PotstillError) as error:
        lm(context=32, max_positions=16)
    assert "data.args.context" in str(error.value) or "max_positions" in str(error.value), str(error.value)


@pytest.mark.parametrize("args, fragment", [
    ({"hidden": 15}, "multiple of heads"), ({"dropout": 1.0}, "dropout"), ({"layers": 0}, "layers"),
])
def test_hf_lm_config_refuses_bad_sizes(args, fragment):
    with pytest.raises(PotstillError, match=fragment):
        lm(**args)


@pytest.fixture(scope="module")
def tokenizer_folder(plays, lm_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POTSTILL_CACHE_DIR", str(lm_cache))
        texts = [(plays / f"{name}_gut.txt").read_text() for name in sorted(SPEAKERS) if name != "othello"]
        return train_bpe(texts, VOCABULARY)


def save_folder(folder, tokenizer_folder, vocabulary=VOCABULARY):
    model = lm(vocabulary=vocabulary)
    model.save_pretrained(str(folder))  # safetensors by default
    load_tokenizer(str(tokenizer_folder)).save_pretrained(str(folder))
    return model


def test_hf_lm_loads_the_weights_save_pretrained_wrote(tmp_path, tokenizer_folder):
    saved = save_folder(tmp_path / "gpt", tokenizer_folder)
    assert (tmp_path / "gpt" / "model.safetensors").is_file()
    loaded = create_model("hf_lm", input_shape=(CONTEXT,), num_classes=VOCABULARY, path=str(tmp_path / "gpt"))
    expected, found = saved.state_dict(), loaded.state_dict()
    assert expected.keys() == found.keys()
    assert all(torch.equal(expected[name], found[name]) for name in expected)
    ids = torch.randint(0, VOCABULARY, (2, CONTEXT))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    assert torch.equal(call_model(loaded.eval(), batch), call_model(saved.eval(), batch))


def test_hf_lm_refuses_a_folder_whose_vocabulary_differs(tmp_path, tokenizer_folder):
    save_folder(tmp_path / "gpt", tokenizer_folder, vocabulary=VOCABULARY + 20)
    with pytest.raises(PotstillError) as error:
        create_model("hf_lm", input_shape=(CONTEXT,), num_classes=VOCABULARY, path=str(tmp_path / "gpt"))
    message = str(error.value)
    assert f"predicts {VOCABULARY + 20} tokens" in message and f"vocabulary has {VOCABULARY}" in message
    assert "data.args.tokenizer" in message


def test_hf_lm_refuses_a_context_beyond_its_positions(tmp_path, tokenizer_folder):
    save_folder(tmp_path / "gpt", tokenizer_folder)
    with pytest.raises(PotstillError, match="64 tokens are longer than its 16 positions"):
        create_model("hf_lm", input_shape=(64,), num_classes=VOCABULARY, path=str(tmp_path / "gpt"))


def test_hf_lm_refuses_a_folder_without_safetensors(tmp_path, tokenizer_folder):
    save_folder(tmp_path / "gpt", tokenizer_folder)
    (tmp_path / "gpt" / "model.safetensors").unlink()
    with pytest.raises(PotstillError, match="no model.safetensors"):
        create_model("hf_lm", input_shape=(CONTEXT,), num_classes=VOCABULARY, path=str(tmp_path / "gpt"))


def preflight_error(recipe: dict) -> str:
    with pytest.raises(PotstillError) as error:
        preflight(config.validate(recipe, Recipe), "distill")
    return str(error.value)


@pytest.mark.parametrize("role, spec, fragments", [
    ("teacher", {"name": "hf", "args": {"path": "/no/such/model"}},
     ["teacher: model 'hf' is a classification model", "'shakespeare' asks for causal lm", "hf_lm or hf_lm_config"]),
    ("student", {"name": "mlp", "args": {"hidden": [16]}},
     ["student: model 'mlp' is a classification model", "causal lm", "hf_lm or hf_lm_config"]),
])
def test_a_classifier_on_language_modelling_data_is_refused_before_anything_runs(plays, role, spec, fragments):
    recipe = lm_recipe(plays)
    if role == "teacher":
        recipe["teacher"]["model"] = spec
    else:
        recipe["student"] = spec
    message = preflight_error(recipe)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("loss", ["kd", "dkd", "at"])
def test_a_per_sample_loss_on_language_modelling_data_lists_the_token_losses(plays, loss):
    recipe = lm_recipe(plays)
    recipe["distill"] = {"loss": loss}
    message = preflight_error(recipe)
    assert f"loss '{loss}' compares one distribution per sample" in message and "causal lm data" in message
    assert "use one of forward_kl, jsd, reverse_kl, skew_kl, skew_reverse_kl, tvd" in message


def test_the_language_model_recipe_passes_preflight(plays):
    preflight(config.validate(lm_recipe(plays), Recipe), "distill")
    preflight(config.validate(lm_recipe(plays), Recipe), "train")


def test_gkd_on_a_classification_dataset_is_refused():
    from tests.conftest import tiny_recipe

    recipe = tiny_recipe(scheme={"name": "gkd"}, distill={"loss": "forward_kl", "teacher_check": "warn"})
    with pytest.raises(PotstillError, match="scheme gkd distils language models; dataset 'synthetic' is not one"):
        preflight(config.validate(recipe, Recipe), "distill")


@pytest.fixture(scope="module")
def bench(plays, lm_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POTSTILL_CACHE_DIR", str(lm_cache))
        return open_workbench(config.validate(lm_recipe(plays), Recipe))


def test_the_dry_run_refuses_a_model_that_gives_one_distribution_per_row(bench):
    class Pooled(torch.nn.Module):  # a sequence classifier's shape: (B, V)
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCABULARY, VOCABULARY)

        def forward(self, inputs):
            return self.embed(inputs["input_ids"]).mean(dim=1)

    with pytest.raises(PotstillError) as error:
        bench.check_model(Pooled(), "student")
    message = str(error.value)
    assert f"given a batch of 2 rows of {CONTEXT} tokens, the student returns shape (2, {VOCABULARY})" in message
    assert f"(2, {CONTEXT}, V)" in message and "not a sequence classifier" in message


def test_the_dry_run_refuses_a_model_of_another_vocabulary_size(bench):
    model = lm(vocabulary=VOCABULARY + 20)
    with pytest.raises(PotstillError) as error:
        bench.check_model(model, "student")
    assert f"predicts {VOCABULARY + 20} tokens but the data's tokenizer has {VOCABULARY}" in str(error.value)
    bench.check_model(lm(), "student")  # the data's size: accepted


def test_a_model_with_another_tokenizer_of_the_same_size_is_named_as_a_vocabulary_mismatch(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path))
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    other = train_bpe([" ".join(words[(i * 7) % len(words)] for i in range(3000))], VOCABULARY)
    model = lm(tokenizer=str(other))
    with pytest.raises(PotstillError) as error:
        bench.check_model(model, "student")
    assert "vocabulary" in str(error.value) and "differs from the one the data was tokenised with" in str(error.value), \
        str(error.value)


def test_build_model_gives_the_recipes_student_the_datas_shape(bench, plays):
    recipe = config.validate(lm_recipe(plays), Recipe)
    model = build_model(recipe.student, bench, "student", 0)
    assert model.config.vocab_size == VOCABULARY and model.config.n_positions == CONTEXT
