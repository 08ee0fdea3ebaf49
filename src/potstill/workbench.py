"""The data side of a run: splits, loaders on the device, and held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from potstill.data import Augment, BatchLoader, DataSplits
from potstill.engine.metrics import accuracy, predict
from potstill.errors import PotstillError
from potstill.recipe import DataSpec


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PotstillError("device is 'cuda' but no CUDA GPU is available; set device: cpu (or auto)")
    return torch.device(name)


@dataclass
class Workbench:
    splits: DataSplits
    data: DataSpec
    device: torch.device

    def train_loader(self, seed: int, views: torch.Tensor | None = None, channels_last: bool = False) -> BatchLoader:
        """Shuffled, augmented training batches; with a view bank (N, V, 3) each sample shows one
        of its stored views (those a teacher cache was built from)."""
        augment = Augment(hflip=self.data.hflip, crop_padding=self.data.crop_padding)
        return BatchLoader(
            self.splits.train, self.data.batch_size,
            augment=augment, shuffle=True, seed=seed, device=self.device, views=views, channels_last=channels_last,
        )

    def eval_loader(self, split: str = "test") -> BatchLoader:
        data = self.splits.test if split == "test" else self.splits.val
        return BatchLoader(data, self.data.eval_batch_size, device=self.device)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Top-1 accuracy on the validation split (if any) and the test split."""
        results = {}
        if self.splits.val is not None:
            results["val_acc"] = accuracy(*predict(model, self.eval_loader("val")))
        results["test_acc"] = accuracy(*predict(model, self.eval_loader("test")))
        return results

    def check_model(self, model: nn.Module, role: str) -> None:
        """One dry-run forward pass: the model must accept the data and predict its classes."""
        inputs = next(self.eval_loader("test").batches())["input"][:2]
        logits = dry_run(
            model, role, inputs, f"{self.splits.name} inputs of shape {tuple(inputs.shape[1:])}",
            "pick a model built for this input shape",
        )
        if logits.shape[1] != self.splits.num_classes:
            raise PotstillError(
                f"the {role} predicts {logits.shape[-1]} classes but {self.splits.name} has "
                f"{self.splits.num_classes}; build the {role} with num_classes={self.splits.num_classes}"
            )


def dry_run(model: nn.Module, role: str, inputs: torch.Tensor, what: str, fix: str) -> torch.Tensor:
    """One forward pass in eval mode without gradients on `inputs` (B, C, H, W), described as `what`;
    the model must take them (else the error ends with `fix`) and return logits (B, K)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PotstillError(f"the {role} cannot process {what}: the model failed with '{reason}'; {fix}") from error
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(inputs):
        got = (f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
               else f"a {type(logits).__name__}, not a tensor")
        raise PotstillError(
            f"given a batch of {len(inputs)}, the {role} returns {got}; potstill needs forward() to return only the "
            f"logits, one tensor of shape ({len(inputs)}, K) with a row of K class scores per sample"
        )
    return logits
