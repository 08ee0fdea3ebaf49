"""Online schemes: deep mutual learning and KDCL. Every peer learns; each only from its own loss."""

import copy
import math

import torch
import torch.nn.functional as F

from potstill.engine.checkpoint import load_tensors
from potstill.knowledge.wiring import build_terms
from potstill.models import create_model
from potstill.recipe import DistillSpec
from potstill.schemes.collaborative import EnsembleLearning
from potstill.schemes.online import PeerLearning
from tests.engine.test_resume import run_recipe, weights
from tests.schemes.helpers import scheme_recipe


def peers(count=2, seed=0):
    torch.manual_seed(seed)
    return {name: create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8])
            for name in ["student"] + [f"peer{i}" for i in range(1, count)]}


def kd_terms(names, temperature=1.0):
    spec = DistillSpec(loss="kd", temperature=temperature, beta=1.0)
    return {name: build_terms(spec, epochs=1) for name in names}


def batch(size=5):
    torch.manual_seed(1)
    return {"input": torch.randn(size, 1, 4, 4), "target": torch.randint(0, 3, (size,)), "index": torch.arange(size)}


def test_mutual_learning_term_is_the_kl_to_the_other_peer_and_reaches_only_its_own_peer():
    models = peers()
    task = PeerLearning(models, kd_terms(models), alpha=1.0)
    data = batch()
    result = task.step(data, progress=0.0)
    with torch.no_grad():
        student, other = models["student"](data["input"]), models["peer1"](data["input"])
    # KL(p_other || p_student), batch mean, at T = 1 (T^2 = 1), written out
    p_other, log_p_student = F.softmax(other, dim=1), F.log_softmax(student, dim=1)
    expected = sum(
        sum(p_other[i, k] * (math.log(p_other[i, k]) - log_p_student[i, k]) for k in range(3)) for i in range(5)
    ) / 5
    assert torch.allclose(result.terms["student_kd"], torch.tensor(float(expected)), atol=1e-6)
    result.terms["student_kd"].backward()
    assert all(p.grad is None for p in models["peer1"].parameters())  # the target is detached
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in models["student"].parameters() if p.ndim > 1)


def test_each_peer_has_its_own_optimizer_group():
    models = peers(3)
    task = PeerLearning(models, kd_terms(models))
    groups = task.parameter_groups()
    assert list(groups) == ["student", "peer1", "peer2"]
    for name, params in groups.items():
        assert {id(p) for p in params} == {id(p) for p in models[name].parameters()}


def test_kdcl_target_is_the_mean_of_all_peers_logits():
    models = peers(3)
    task = EnsembleLearning(models, kd_terms(models))
    logits = {name: torch.full((2, 3), float(value)) for name, value in zip(models, (1.0, 2.0, 6.0))}
    [target] = task.targets("peer1", logits)
    assert torch.equal(target, torch.full((2, 3), 3.0))


def test_mutual_learning_trains_every_peer_and_exports_each(tmp_path, monkeypatch):
    initial = {}
    original = PeerLearning.__init__

    def remember(self, peers, *args, **kwargs):
        initial.update({name: copy.deepcopy(peer.state_dict()) for name, peer in peers.items()})
        original(self, peers, *args, **kwargs)

    monkeypatch.setattr(PeerLearning, "__init__", remember)
    recipe = scheme_recipe("online", distill__baseline=False, scheme__args={"peer_baselines": False})
    summary = run_recipe(tmp_path, recipe)
    assert [row["role"] for row in summary["models"]] == ["student", "peer1"]
    assert summary["models"][1]["title"] == "peer 1 (online)"
    trained = {"student": weights(tmp_path, "student"), "peer1": load_tensors(tmp_path / "student" / "peer1.safetensors")[0]}
    for name, state in trained.items():
        assert state.keys() == initial[name].keys()
        assert all(not torch.equal(state[key], initial[name][key]) for key in state if key.endswith("weight")), name
    log = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"stage": "student"' in line]
    assert '"peer1_test_acc"' in log[-1] and '"peer1_kd"' in log[-1] and '"student_kd"' in log[-1]
