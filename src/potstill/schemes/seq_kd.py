"""Sequence-level knowledge distillation (Kim & Rush, "Sequence-Level Knowledge Distillation",
EMNLP 2016, arXiv 1606.07947): the student is trained on the teacher's own outputs.

    potstill generate RECIPE    the teacher continues each training row's prompt once (greedy by
                                default; Kim & Rush use beam search), stored with the teacher's and
                                the prompts' fingerprints (potstill.sequences)
    potstill distill  RECIPE    the student learns those sequences: cross-entropy on the teacher's
                                tokens (distill.alpha, Kim & Rush's seq-KD), plus any distill terms
                                computed on them (their "seq-KD + word-KD" combination)

    L = alpha * sum_t -log p_S(y_t | x, y_<t)  +  sum_terms w * D(p_T || p_S) at the same positions,
        y = the teacher's output for prompt x

The baseline (the student alone) learns the plays themselves with the same budget, so the table
answers whether the teacher's sequences teach more than the data they replace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult
from potstill.errors import PotstillError
from potstill.schemes.base import SCHEMES
from potstill.schemes.gkd import GKD, prompts, special_ids
from potstill.schemes.offline import OfflineDistillation
from potstill.sequences import Settings, expected_manifest, read_sequences

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


class SequenceDistillation(OfflineDistillation):
    """OfflineDistillation on the teacher's stored sequence for each row of the batch."""

    def __init__(self, *args, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rows = rows

    def step(self, batch: Batch, progress: float) -> StepResult:
        index = batch["index"]
        ids, mask, targets = (tensor.to(index.device)[index] for tensor in self.rows)
        length = int(mask.sum(dim=1).max())
        written = {"input_ids": ids[:, :length], "attention_mask": mask[:, :length], "target": targets[:, :length], "index": index}
        result = super().step(written, progress)
        result.scored = written
        return result


def prompt_block(data, prompt_tokens: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training row's prompt (see schemes/gkd.prompts), (N, P) right-padded."""
    return prompts({"input_ids": data.input_ids, "attention_mask": data.attention_mask, "target": data.targets}, prompt_tokens)


@SCHEMES.register("seq_kd")
class SeqKD(GKD):
    """Sequence-level KD: the student learns the teacher's generated sequences (potstill generate first)."""

    def __init__(self, sequences: str, prompt_tokens: int | None = None, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 64) -> None:
        super().__init__(lmbda=1.0, prompt_tokens=prompt_tokens, max_new_tokens=max_new_tokens, temperature=1.0, top_p=top_p)
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
            raise PotstillError(f"scheme seq_kd: temperature must be >= 0 (0 = greedy), got {temperature!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise PotstillError(f"scheme seq_kd: batch_size (prompts the teacher continues at once) must be a whole number >= 1, got {batch_size!r}")
        self.temperature, self.sequences, self.batch_size = float(temperature), Path(sequences), batch_size

    def settings(self, seed: int) -> Settings:
        return Settings(self.prompt_tokens, self.max_new_tokens, self.temperature, self.top_p, seed)

    def manifest(self, teacher: nn.Module, data, seed: int) -> dict:
        ids, mask = prompt_block(data, self.prompt_tokens)
        return expected_manifest(teacher, ids, mask, data.tokenizer, self.settings(seed))

    def task_maker(self, runner: Workshop, teacher: nn.Module, data) -> Callable[..., OfflineDistillation]:
        """SequenceDistillation on the stored sequences, refused unless they match this teacher and data."""
        rows = read_sequences(self.sequences, self.manifest(teacher, data, runner.recipe.seed),
                              "write them with: potstill generate RECIPE")
        return functools.partial(SequenceDistillation, rows=rows)


__all__ = ["SeqKD", "SequenceDistillation", "prompt_block", "special_ids"]
