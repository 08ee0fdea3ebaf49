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
            self.splits.train, self.data.batch_size, mean=self.splits.mean, std=self.splits.std,
            augment=augment, shuffle=True, seed=seed, device=self.device, views=views, channels_last=channels_last,
        )

    def eval_loader(self, split: str = "test") -> BatchLoader:
        data = self.splits.test if split == "test" else self.splits.val
        return BatchLoader(data, self.data.eval_batch_size, mean=self.splits.mean, std=self.splits.std, device=self.device)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Top-1 accuracy on the validation split (if any) and the test split."""
        results = {}
        if self.splits.val is not None:
            results["val_acc"] = accuracy(*predict(model, self.eval_loader("val")))
        results["test_acc"] = accuracy(*predict(model, self.eval_loader("test")))
        return results

    def check_model(self, model: nn.Module, role: str) -> None:
        """One dry-run forward pass: the model must accept the data and predict its classes."""
        sample = self.eval_loader("test")
        inputs = next(sample.batches())["input"][:2]
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                logits = model(inputs)
        except RuntimeError as error:
            raise PotstillError(
                f"the {role} cannot process {self.splits.name} inputs of shape {tuple(inputs.shape[1:])}: "
                f"{str(error).splitlines()[0]}; pick a model built for this input shape"
            ) from error
        finally:
            model.train(was_training)
        if logits.ndim != 2 or logits.shape[1] != self.splits.num_classes:
            raise PotstillError(
                f"the {role} predicts {logits.shape[-1]} classes but {self.splits.name} has "
                f"{self.splits.num_classes}; build the {role} with num_classes={self.splits.num_classes}"
            )
