"""What the report measures: accuracy, agreement with the teacher, calibration, size, latency."""

from __future__ import annotations

import time

import torch
from torch import nn

from potstill.data import BatchLoader
from potstill.model_io import call_model
from potstill.models import count_parameters  # noqa: F401  (re-exported for the report)


@torch.inference_mode()
def predict(model: nn.Module, loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and targets (N,) on the CPU, model in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for batch in loader.batches():
        logits.append(call_model(model, batch).float().cpu())
        targets.append(batch["target"].cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((logits.argmax(dim=1) == targets).float().mean())


def macro_f1(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro-averaged F1: each class's F1 = 2TP / (predicted + actual) (= 2PR / (P + R); 0 with no
    true positive), averaged over the classes that occur in `targets` or in the predictions."""
    predicted = logits.argmax(dim=1)
    classes = torch.unique(torch.cat([targets, predicted]))
    scores = []
    for label in classes:
        true_positive = float(((predicted == label) & (targets == label)).sum())
        predicted_count, actual_count = float((predicted == label).sum()), float((targets == label).sum())
        scores.append(2 * true_positive / (predicted_count + actual_count))  # = 2PR / (P + R)
    return sum(scores) / len(scores)


def agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Fraction of samples where two models predict the same class."""
    return float((logits.argmax(dim=1) == reference_logits.argmax(dim=1)).float().mean())


def expected_calibration_error(logits: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over equal-width confidence bins of |accuracy - confidence| * share."""
    probs = logits.softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    return calibration_error(confidence, (predicted == targets).float(), bins)


def calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """ECE from each prediction's confidence (its top probability) and correctness (1.0 or 0.0)."""
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            share = in_bin.float().mean()
            ece += share * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> dict[str, list]:
    """The reliability diagram's data (Guo et al. 2017, fig. 1): per equal-width confidence bin
    (edges[i], edges[i+1]] its sample count, mean confidence and accuracy (None for an empty bin).
    ECE is sum(count * |accuracy - confidence|) / sum(count) over these bins."""
    edges = torch.linspace(0, 1, bins + 1)
    counts, confidences, accuracies = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        count = int(in_bin.sum())
        counts.append(count)
        confidences.append(round(float(confidence[in_bin].mean()), 6) if count else None)
        accuracies.append(round(float(correct[in_bin].float().mean()), 6) if count else None)
    return {"edges": [round(float(edge), 6) for edge in edges], "count": counts, "confidence": confidences, "accuracy": accuracies}


def class_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None) -> list[float | None]:
    """Top-1 accuracy per class index 0..K-1 (recall); None for a class with no test sample."""
    size = num_classes or logits.shape[1]
    correct = logits.argmax(dim=1) == targets
    result: list[float | None] = []
    for label in range(size):
        in_class = targets == label
        result.append(round(float(correct[in_class].float().mean()), 6) if in_class.any() else None)
    return result


@torch.inference_mode()
def cpu_latency_ms(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, repeats: int) -> float:
    """Mean wall time of one forward pass on a CPU batch, after 3 warm-up passes."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval().to("cpu")
    batch = {"input": torch.randn(batch_size, *input_shape)}
    for _ in range(3):
        call_model(model, batch)
    start = time.perf_counter()
    for _ in range(repeats):
        call_model(model, batch)
    elapsed = (time.perf_counter() - start) / repeats
    model.to(device).train(was_training)
    return elapsed * 1000
