"""Recipe terms wired to layers: automatic and explicit pairs, adapters, and the errors a user
gets for pairs a loss cannot use."""

import pytest
import torch
from torch import nn

from potstill import config
from potstill.errors import PotstillError
from potstill.knowledge.adapters import FeatureAdapter
from potstill.knowledge.wiring import build_terms, check_explicit_pairs, connect_terms
from potstill.recipe import DistillSpec, Recipe
from tests.knowledge.nets import conv_net, make_batch, make_task


def spec(**data) -> DistillSpec:
    return config.validate(data, DistillSpec)


def wire(distill: DistillSpec, student_channels=(3, 5), teacher_channels=(6, 10)):
    student, teacher = conv_net(0, channels=student_channels), conv_net(1, channels=teacher_channels)
    terms = build_terms(distill, epochs=2)
    lines = connect_terms(terms, student, teacher, make_batch(4)["input"], num_classes=5, num_samples=64,
                          adapters=distill.adapters)
    return terms, lines


def test_automatic_pairing_is_printed_and_follows_the_loss():
    terms, lines = wire(spec(loss="at", terms=[{"loss": "fitnet"}, {"loss": "kd", "weight": 0.2}]))
    at, fitnet, kd = terms
    assert (at.student_taps, at.teacher_taps) == (["block1", "block2"], ["block1", "block2"])
    assert (fitnet.student_taps, fitnet.teacher_taps) == (["block1"], ["block1"])  # the middle stage
    assert kd.student_taps == [] and kd.weight == 0.2
    assert lines[0] == "at: student block1 (3, 8, 8) -> teacher block1 (6, 8, 8)"
    assert len(lines) == 3  # kd pairs nothing


def test_weights_default_to_the_papers():
    terms = build_terms(spec(loss="at", beta=None, terms=[{"loss": "fitnet"}, {"loss": "fitnet", "weight": 3.0}]), 2)
    assert [(t.name, t.weight) for t in terms] == [("at", 1000.0), ("fitnet", 100.0), ("fitnet_2", 3.0)]


def test_explicit_pairs_and_adapters_from_the_dry_run():
    pairs = [{"student": "block2", "teacher": "block1"}]
    terms, lines = wire(spec(loss="fitnet", pairs=pairs))
    regressor = terms[0].loss.regressors[0]
    assert isinstance(regressor, FeatureAdapter)
    assert lines == ["fitnet: student block2 (5, 4, 4) -> teacher block1 (6, 8, 8)"]
    assert regressor(torch.randn(2, 5, 4, 4)).shape == (2, 6, 8, 8)


def test_adapters_disabled_and_shapes_differ_is_a_clear_error():
    with pytest.raises(PotstillError, match=r"loss 'fitnet' cannot compare student block1 \(3, 8, 8\) -> teacher "
                                            r"block1 \(6, 8, 8\) without an adapter.*distill.adapters: true"):
        wire(spec(loss="fitnet", adapters=False))


def test_adapters_disabled_and_equal_shapes_compare_directly():
    terms, _ = wire(spec(loss="fitnet", adapters=False), student_channels=(6, 10))
    assert isinstance(terms[0].loss.regressors[0], nn.Identity)


def test_feature_map_loss_on_vectors_is_a_clear_error():
    with pytest.raises(PotstillError, match=r"loss 'at' needs feature maps \(B, C, H, W\) from both models.*fc"):
        wire(spec(loss="at", pairs=[{"student": "fc", "teacher": "fc"}]))


def test_pairs_on_a_logits_loss_are_refused():
    with pytest.raises(PotstillError, match=r"distill.terms\[0\].pairs: loss 'kd' compares logits only"):
        build_terms(spec(loss="at", terms=[{"loss": "kd", "pairs": [{"student": "a", "teacher": "b"}]}]), 2)


def test_misspelt_layer_is_caught_before_any_training():
    terms = build_terms(spec(loss="at", pairs=[{"student": "block1", "teacher": "blokc2"}]), 2)
    with pytest.raises(PotstillError, match=r"teacher \(loss at\) has no module named 'blokc2' \(nearest: block2"):
        check_explicit_pairs(terms, conv_net(0), conv_net(1))


def test_a_model_without_stages_needs_explicit_pairs():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    terms = build_terms(spec(loss="at"), 2)
    with pytest.raises(PotstillError, match="found no stage ends in the student.*set pairs explicitly"):
        connect_terms(terms, flat, conv_net(1), make_batch(2)["input"], num_classes=5, num_samples=8)


def test_recipe_checks_init_stage_consistency():
    with pytest.raises(PotstillError, match="init_epochs: no term has stages \\[init\\]"):
        spec(init_epochs=2)
    with pytest.raises(PotstillError, match="a term has stages \\[init\\] but init_epochs is 0"):
        spec(terms=[{"loss": "fitnet", "stages": ["init"]}])
    recipe = {"name": "r", "data": {"name": "digits"}, "student": {"name": "mlp"}, "distill": {"loss": None}}
    with pytest.raises(PotstillError, match="distill.loss: null leaves no distillation term"):
        config.validate(recipe, Recipe)
    config.validate(recipe | {"scheme": {"name": "seq_kd", "args": {"sequences": "s"}}}, Recipe)  # the sequences teach


def test_task_step_feeds_each_term_its_own_layers():
    task, term = make_task("at", "smaller_student_maps")
    seen = {}
    original = term.loss.forward

    def spy(student, teacher, batch):
        seen["shapes"] = [tuple(f.shape) for f in student["features"] + teacher["features"]]
        return original(student, teacher, batch)

    term.loss.forward = spy
    task.step(make_batch(2), 0.0)
    assert seen["shapes"] == [(2, 4, 4, 4), (2, 6, 2, 2), (2, 5, 8, 8), (2, 8, 4, 4)]
