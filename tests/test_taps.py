"""Taps capture what a module computes, by name, without editing the model; dry runs and the
automatic pairing of layers by relative depth."""

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.models import create_model
from potstill.taps import Taps, dry_run, embedding_tap, pair_by_depth, stage_taps
from tests.knowledge.nets import conv_net


def test_capture_returns_module_outputs_and_inputs():
    model = conv_net(0).eval()
    x = torch.randn(3, 1, 8, 8)
    taps = Taps(model, ["block2", "classifier:input"], "student")
    with taps.capture() as features:
        logits = model(x)
    by_hand = model.block2(model.block1(x))
    embedding = model.relu(model.fc(model.flatten(model.pool(by_hand))))
    assert torch.equal(features["block2"], by_hand)
    assert torch.equal(features["classifier:input"], embedding)
    assert torch.equal(logits, model.classifier(embedding))


def test_hooks_exist_only_inside_capture():
    model = conv_net(0)
    with Taps(model, ["block1"], "student").capture():
        assert model.block1._forward_hooks
        model(torch.randn(2, 1, 8, 8))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unknown_tap_lists_the_nearest_names():
    with pytest.raises(PotstillError, match=r"student has no module named 'blok2' \(nearest: block2.*potstill list taps"):
        Taps(conv_net(0), ["blok2"], "student")


def test_a_tap_that_never_runs_is_named():
    class WithSpareHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.unused = conv_net(0), nn.Linear(5, 5)

        def forward(self, x):
            return self.net(x)  # `unused` exists but never runs

    model = WithSpareHead()
    taps = Taps(model, ["unused", "net.block1"], "teacher")
    with pytest.raises(PotstillError, match=r"teacher tap 'unused' never ran in the forward pass"), taps.capture():
        model(torch.randn(2, 1, 8, 8))


def test_dry_run_changes_no_statistics_and_restores_the_mode():
    model = conv_net(0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    infos, logits = dry_run(model, torch.randn(4, 1, 8, 8))
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    names = [i.name for i in infos]
    assert names.index("block1") < names.index("block1.0") < names.index("block2")  # parents first
    assert dict((i.name, i.shape) for i in infos)["block2"] == (4, 8, 4, 4) and logits.shape == (4, 5)


@pytest.mark.parametrize("name,shape,stages,embedding", [
    ("cnn", (1, 28, 28), ["block1", "block2"], "classifier:input"),
    ("small_cnn", (1, 28, 28), ["block1", "block2"], "classifier:input"),
    ("resnet8x4", (3, 32, 32), ["layer1", "layer2", "layer3"], "fc:input"),
    ("mlp", (1, 28, 28), ["hidden1", "hidden2"], "classifier:input"),
])
def test_stage_ends_and_embedding_of_registered_models(name, shape, stages, embedding):
    model = create_model(name, input_shape=shape, num_classes=10)
    infos, _ = dry_run(model, torch.zeros(2, *shape))
    assert stage_taps(model, infos) == stages
    assert embedding_tap(model, infos) == embedding


@pytest.mark.parametrize("student,teacher,expected", [
    (["a1", "a2"], ["b1", "b2"], [("a1", "b1"), ("a2", "b2")]),
    (["a1", "a2", "a3"], ["b1", "b2", "b3", "b4"], [("a1", "b2"), ("a2", "b3"), ("a3", "b4")]),
    (["a1"], ["b1", "b2", "b3"], [("a1", "b3")]),
    (["a1", "a2", "a3", "a4"], ["b1", "b2"], [("a2", "b1"), ("a4", "b2")]),
    ([], ["b1"], []),
])
def test_pairing_by_relative_depth(student, teacher, expected):
    assert pair_by_depth(student, teacher) == expected
