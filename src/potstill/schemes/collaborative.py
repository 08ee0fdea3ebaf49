"""Online distillation from the peers' ensemble: every peer learns from the average of all peers'
logits, a target better than any single peer (Guo et al., "Online Knowledge Distillation via
Collaborative Learning", KDCL, CVPR 2020; the "naive" ensemble of that paper).

    z_e = 1/K sum_l z_l        L_k = alpha * CE(z_k, y) + sum_terms w * term(z_k, stopgrad(z_e))

Unlike deep mutual learning each peer sees one target that includes its own prediction; with
two peers it is mutual learning towards the midpoint of the two.
"""

from __future__ import annotations

import torch

from potstill.schemes.base import SCHEMES
from potstill.schemes.online import Online, PeerLearning


class EnsembleLearning(PeerLearning):
    def targets(self, name: str, logits: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One target for every peer: the mean of all peers' detached logits, (B, K)."""
        return [torch.stack(list(logits.values())).mean(dim=0)]


@SCHEMES.register("collaborative")
class Collaborative(Online):
    """KDCL: the student and scheme.peers all learn from the mean of their logits."""

    task = EnsembleLearning
