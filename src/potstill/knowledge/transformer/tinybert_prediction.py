"""TinyBERT prediction-layer distillation: soft cross-entropy against the teacher's logits.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351, Sec. 3.1 (prediction-layer distillation):
    L_pred = CE(z_T / t, z_S / t) = - softmax(z_T / t) . log_softmax(z_S / t)
averaged over the batch, with no t^2 factor. The paper finds t = 1 works well, the default. The
released code averages over batch x classes instead (`.mean()` of the element-wise product), which
is this value divided by the number of classes. Only logits are needed, so any model pair can use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_positive


@LOSSES.register("tinybert_prediction")
class TinyBERTPrediction(DistillationLoss):
    """Soft cross-entropy with the teacher's logits at temperature t, no t^2 (Jiao et al. 2020)."""

    modality = "any"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive("tinybert_prediction", temperature=temperature)
        self.temperature = float(temperature)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        teacher_probs = F.softmax(teacher["logits"] / self.temperature, dim=-1)  # (B, K)
        student_log_probs = F.log_softmax(student["logits"] / self.temperature, dim=-1)
        return -(teacher_probs * student_log_probs).sum(dim=-1).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
