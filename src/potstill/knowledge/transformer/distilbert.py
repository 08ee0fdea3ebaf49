"""DistilBERT's triple loss, for a classification task: soft targets plus cosine alignment of the
last hidden states.

Sanh, Debut, Chaumond & Wolf, "DistilBERT, a distilled version of BERT: smaller, faster, cheaper
and lighter", NeurIPS 2019 EMC^2 workshop, arXiv:1910.01108. The paper trains on
    L = alpha_ce * L_ce + alpha_mlm * L_mlm + alpha_cos * L_cos
with L_ce the cross-entropy -sum_i t_i log s_i against the teacher's softened probabilities
t_i = softmax(z_T / T)_i, which the released code writes as a KL (the same up to the teacher's
entropy, a constant):
    L_ce  = T^2 * KL( softmax(z_T / T) || softmax(z_S / T) )          (mean over the batch)
    L_cos = mean over real tokens of  1 - cos(h_S, h_T)               (last hidden states)
This loss returns soft_weight * L_ce + cosine_weight * L_cos. Defaults are the released training
command's (transformers examples/research_projects/distillation, README and train.py):
alpha_ce = 5.0, alpha_cos = 1.0, temperature 2.0.
The masked-LM term (alpha_mlm = 2.0) is not part of this loss: on a classification task the
student's own hard-label cross-entropy plays its role, and that is the recipe's `distill.alpha`
(set it to 2.0 to mirror alpha_mlm); the teacher may have no MLM head at all. DistilBERT keeps the
teacher's width, so the hidden states are compared without a projection; for a narrower student
use `tinybert_hidden`, which learns one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_non_negative, check_positive
from potstill.knowledge.response.kd import soft_target_kl
from potstill.knowledge.transformer.sequences import HIDDEN, check_sequences, token_mask


def check_widths(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    check_sequences(loss, student, teacher, HIDDEN)
    if student.shape[-1] != teacher.shape[-1]:
        raise PotstillError(
            f"loss '{loss}' compares hidden states of equal width (DistilBERT keeps the teacher's), got student "
            f"{student.shape[-1]} and teacher {teacher.shape[-1]}; use tinybert_hidden, which learns a projection"
        )


@LOSSES.register("distilbert")
class DistilBERT(DistillationLoss):
    """Soft targets at T (KL * T^2) plus 1 - cosine of the last hidden states (Sanh et al. 2019)."""

    kind = "feature"
    single_process = "it averages over the batch's tokens, which the processes' parts hold unequally"
    pairing = "last_layer"
    modality = "text"

    def __init__(self, temperature: float = 2.0, soft_weight: float = 5.0, cosine_weight: float = 1.0) -> None:
        super().__init__()
        check_positive("distilbert", temperature=temperature)
        check_non_negative("distilbert", soft_weight=soft_weight, cosine_weight=cosine_weight)
        self.temperature = float(temperature)
        self.soft_weight = float(soft_weight)  # the released script's alpha_ce
        self.cosine_weight = float(cosine_weight)  # its alpha_cos

    def setup(self, probe: Probe) -> None:
        check_widths(probe.loss, probe.student[0], probe.teacher[0])

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        soft = soft_target_kl(student["logits"], teacher["logits"], self.temperature)
        hidden_student, hidden_teacher = student["features"][0], teacher["features"][0]  # (B, L, D)
        check_widths("distilbert", hidden_student, hidden_teacher)
        mask = token_mask("distilbert", batch, hidden_student)  # (B, L)
        cosine = F.cosine_similarity(hidden_student[mask], hidden_teacher[mask], dim=-1)  # (N,) real tokens
        cosine_loss = (1 - cosine).sum() / max(cosine.numel(), 1)
        return self.soft_weight * soft + self.cosine_weight * cosine_loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, soft_weight={self.soft_weight}, cosine_weight={self.cosine_weight}"
