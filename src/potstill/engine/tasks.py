"""What a task measures: the loop, the held-out evaluation and the report ask the data's task,
never assume one. Two tasks, chosen by the data (DataSplits.task):

    classification   (B, K) logits against (B,) class indices: images and text topics
    causal_lm        (B, L, V) next-token logits against (B, L) next tokens (potstill.positions):
                     perplexity first, then next-token top-1, agreement and calibration per token

Both count only the positions the batch's targets allow (IGNORE_INDEX elsewhere), so the loop,
the hard-label loss and the losses never branch on the task.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from potstill.engine.metrics import (
    accuracy,
    agreement,
    calibration_error,
    class_accuracy,
    expected_calibration_error,
    macro_f1,
    predict,
    reliability,
)
from potstill.model_io import call_model
from potstill.positions import counted_mask


class Classification:
    """Top-1 accuracy while training and on held-out splits; the report adds macro-F1, agreement
    with the teacher and calibration (ECE)."""

    name = "classification"

    def step_counts(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(correct, counted) on one training batch, without a host sync (the loop sums them)."""
        return (logits.argmax(dim=1) == batch["target"]).sum(), len(batch["target"])

    def held_out(self, model: nn.Module, loader, split: str) -> dict[str, float]:
        """e.g. {"test_acc": 0.91}: what each epoch's record and line show for a held-out split."""
        return {f"{split}_acc": accuracy(*predict(model, loader))}

    def predict(self, model: nn.Module, loader) -> dict[str, torch.Tensor]:
        """What the report needs of a model's test predictions: logits (N, K) and targets (N,)."""
        logits, targets = predict(model, loader)
        return {"logits": logits, "target": targets}

    def report(self, prediction: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor] | None,
               bins: int) -> dict[str, Any]:
        """A summary row's quality fields from a model's test predictions (and the teacher's)."""
        logits, targets = prediction["logits"], prediction["target"]
        return {
            "test_acc": accuracy(logits, targets),
            "macro_f1": macro_f1(logits, targets),  # per-class F1, averaged: unbalanced classes count alike
            "teacher_agreement": agreement(logits, teacher["logits"]) if teacher is not None else None,
            "ece": expected_calibration_error(logits, targets, bins),
            "class_acc": class_accuracy(logits, targets),  # per class index: the report's per-class chart
            "reliability": reliability(*confidence_correct(logits, targets), bins),  # the reliability diagram
        }


class CausalLM:
    """Next-token prediction. Held out: perplexity exp(mean NLL) over the counted tokens (the
    primary measure) and next-token top-1; the report adds bits per byte (NLL / ln 2 per UTF-8
    byte of the predicted text: comparable across tokenizers), top-1 agreement with the teacher
    per token, and calibration (ECE) over tokens."""

    name = "causal_lm"

    def step_counts(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        mask = counted_mask(batch["target"])
        return ((logits.argmax(dim=-1) == batch["target"]) & mask).sum(), int(mask.sum())

    def held_out(self, model: nn.Module, loader, split: str) -> dict[str, float]:
        tokens = self.predict(model, loader)
        return {f"{split}_ppl": perplexity(tokens["nll"]), f"{split}_acc": float(tokens["correct"].float().mean())}

    @torch.inference_mode()
    def predict(self, model: nn.Module, loader) -> dict[str, torch.Tensor]:
        """Per counted token (T of them, on the CPU): nll, argmax, confidence, correct; and `bytes`,
        the UTF-8 bytes the counted targets decode to (absent when the data does not know them)."""
        was_training = model.training
        model.eval()
        parts: dict[str, list[torch.Tensor]] = {"nll": [], "argmax": [], "confidence": [], "correct": []}
        total_bytes = 0
        byte_counts = getattr(loader.data, "target_bytes", None)
        for batch in loader.batches():
            logits = call_model(model, batch).float()
            mask = counted_mask(batch["target"])
            log_probs = logits[mask].log_softmax(dim=-1)  # (T_batch, V)
            target = batch["target"][mask]
            confidence, argmax = log_probs.max(dim=-1)
            parts["nll"].append(-log_probs.gather(1, target[:, None])[:, 0].cpu())
            parts["argmax"].append(argmax.cpu())
            parts["confidence"].append(confidence.exp().cpu())
            parts["correct"].append((argmax == target).cpu())
            if byte_counts is not None:
                total_bytes += int(byte_counts[batch["index"]].sum())
        model.train(was_training)
        tokens = {name: torch.cat(values) for name, values in parts.items()}
        if byte_counts is not None:
            tokens["bytes"] = torch.tensor(total_bytes)
        return tokens

    def report(self, prediction: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor] | None,
               bins: int) -> dict[str, Any]:
        nll = prediction["nll"]
        total_bytes = int(prediction["bytes"]) if "bytes" in prediction else 0
        return {
            "test_ppl": perplexity(nll),
            "test_bpb": float(nll.double().sum() / math.log(2) / total_bytes) if total_bytes else None,
            "test_acc": float(prediction["correct"].float().mean()),  # next-token top-1
            "teacher_agreement": float((prediction["argmax"] == teacher["argmax"]).float().mean())
            if teacher is not None else None,
            "ece": calibration_error(prediction["confidence"], prediction["correct"].float(), bins),
            "reliability": reliability(prediction["confidence"], prediction["correct"], bins),
            "test_tokens": len(nll),
        }


def confidence_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prediction's top softmax probability and whether it is right."""
    confidence, predicted = logits.softmax(dim=1).max(dim=1)
    return confidence, predicted == targets


def perplexity(nll: torch.Tensor) -> float:
    """exp of the mean negative log-likelihood (nats) per counted token."""
    return float(torch.exp(nll.double().mean()))


TASKS = {"classification": Classification(), "causal_lm": CausalLM()}
