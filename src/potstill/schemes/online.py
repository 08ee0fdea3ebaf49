"""Online distillation by deep mutual learning: peers with no pre-trained teacher learn together,
each from the others (Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018,
arXiv 1706.00384).

    L_k = alpha * CE(z_k, y) + sum_terms w * 1/(K-1) * sum_{l != k} term(z_k, stopgrad(z_l))

With `kd` at temperature 1 the term is the paper's KL(p_l || p_k). The targets are detached, so
peer k's gradient comes from L_k alone: each peer's optimizer group is its own optimizer. All peers
update on the same batch at once (the paper alternates; simultaneous updates are the common
implementation and cost one forward pass per peer). A larger and a smaller peer is "teacher and
student updated simultaneously".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, Task, WeightedTerm, hard_label_loss
from potstill.errors import PotstillError
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


class PeerLearning(Task):
    """Peers trained together; `targets` picks what each peer learns from."""

    def __init__(self, peers: dict[str, nn.Module], terms: dict[str, list[WeightedTerm]], alpha: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        self.peers = peers
        self.terms = terms
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        losses = nn.ModuleDict({name: nn.ModuleDict({t.name: t.loss for t in peer_terms}) for name, peer_terms in terms.items()})
        self.module = nn.ModuleDict({**peers, "losses": losses})

    @property
    def model(self) -> nn.Module:
        return self.peers["student"]

    def models_to_compile(self) -> list[nn.Module]:
        return list(self.peers.values())

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {name: list(peer.parameters()) for name, peer in self.peers.items()}
        for name, peer_terms in self.terms.items():  # a loss's own parameters train with its peer
            groups[name] += [p for term in peer_terms for p in term.loss.parameters() if p.requires_grad]
        return groups

    def reported_models(self) -> dict[str, nn.Module]:
        return {name: peer for name, peer in self.peers.items() if name != "student"}

    def targets(self, name: str, logits: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The detached logits peer `name` learns from: every other peer's."""
        return [other for key, other in logits.items() if key != name]

    def step(self, batch: Batch, progress: float) -> StepResult:
        logits = {name: self.run(peer, batch) for name, peer in self.peers.items()}  # each (B, K)
        detached = {name: value.detach() for name, value in logits.items()}
        terms: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        for name, peer_logits in logits.items():
            weights[f"{name}_ce"] = self.alpha
            if self.alpha > 0:
                terms[f"{name}_ce"] = self.alpha * hard_label_loss(peer_logits, batch["target"], self.label_smoothing)
            targets = self.targets(name, detached)
            for term in self.terms[name]:
                weight = weights[f"{name}_{term.name}"] = term.weight_at(progress)
                if weight > 0:
                    losses = [term.on_logits(peer_logits, target, batch) for target in targets]
                    terms[f"{name}_{term.name}"] = weight * torch.stack(losses).mean()
        return StepResult(terms, logits["student"], weights)


@SCHEMES.register("online")
class Online(Scheme):
    """Deep mutual learning: the student and scheme.peers learn together, each from all the others."""

    teacher = "none"
    model_lists = ("peers",)
    cache = False
    logits_only = True
    task = PeerLearning

    def __init__(self, peer_baselines: bool = True) -> None:
        """peer_baselines: also train every peer alone (same budget), so each peer's gain is measured."""
        self.peer_baselines = peer_baselines

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if not recipe.scheme.peers:
            raise PotstillError(
                f"scheme '{self.name}' needs at least one peer beside the student; add scheme.peers, e.g. peers: [{{name: cnn}}]"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        student_init = student if student is not None else runner.student()
        peers = {"student": student_init}
        for index, spec in enumerate(recipe.scheme.peers, start=1):
            # a different seed per peer: identical peers from identical weights would stay identical
            peers[f"peer{index}"] = runner.build(spec, f"scheme.peers[{index - 1}]", seed=recipe.seed + index)
            runner.describe_role(f"peer{index}", f"peer {index} ({self.name})", spec, runner.run.stage("student") / f"peer{index}.safetensors")
            runner.describe_role(f"peer{index}_alone", f"peer {index} alone", spec)
        models = named("baseline", runner.baseline(student_init))
        for name, peer in list(peers.items())[1:] if self.peer_baselines else []:
            models += named(f"{name}_alone", runner.baseline(peer, f"{name}_alone"))
        runner.describe_role("student", f"student ({self.name})")
        terms = {name: runner.terms() for name in peers}
        task = self.task(peers, terms, recipe.distill.alpha, recipe.train.label_smoothing)
        runner.stage("student", task, recipe.train)
        return models + [(name, peer) for name, peer in peers.items()]
