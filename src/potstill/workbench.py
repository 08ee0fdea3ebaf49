"""The data side of a run: splits, loaders on the device, and held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from potstill.data import Augment, BatchLoader, DataSplits
from potstill.engine import distributed
from potstill.engine.tasks import TASKS, Classification
from potstill.errors import PotstillError
from potstill.models.hf import text_record
from potstill.models.hf_files import load_tokenizer
from potstill.model_io import as_batch, batch_size_of, find_logits, io_of, model_inputs
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

    def train_loader(self, seed: int, views: torch.Tensor | None = None, channels_last: bool = False,
                     sharded: bool = True) -> BatchLoader:
        """Shuffled, augmented training batches; with a view bank (N, V, 3) each sample shows one
        of its stored views (those a teacher cache was built from). Under torchrun each rank gets its
        part of every batch, unless `sharded` is False (dry runs see whole batches)."""
        augment = Augment(hflip=self.data.hflip, crop_padding=self.data.crop_padding)
        shard = (distributed.rank(), distributed.world_size()) if sharded else (0, 1)
        return BatchLoader(
            self.splits.train, self.data.batch_size, augment=augment, shuffle=True, seed=seed, device=self.device,
            views=views, channels_last=channels_last, shard=shard,
        )

    def eval_loader(self, split: str = "test") -> BatchLoader:
        data = self.splits.test if split == "test" else self.splits.val
        return BatchLoader(data, self.data.eval_batch_size, device=self.device)

    @property
    def measures(self) -> Classification:
        """The data's task: what training counts and what held-out splits and the report measure."""
        return TASKS[self.splits.task]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The task's held-out measure (top-1 for classification) on the validation split (if any) and the test split."""
        results = {}
        if self.splits.val is not None:
            results |= self.measures.held_out(model, self.eval_loader("val"), "val")
        results |= self.measures.held_out(model, self.eval_loader("test"), "test")
        return results

    def check_model(self, model: nn.Module, role: str) -> None:
        """One dry-run forward pass: the model must accept the data and predict its classes."""
        if self.splits.modality == "text":  # before a forward pass, which would fail on a foreign id with an index error
            tokenizer = getattr(self.splits.train, "tokenizer_path", "") or self.data.args.get("tokenizer")
            check_vocabulary(model, role, self.splits.train, tokenizer)
        batch = {name: value[:2] for name, value in next(self.eval_loader("test").batches()).items()}
        inputs = model_inputs(batch)
        shapes = ", ".join(f"{name} {tuple(value.shape[1:])}" for name, value in inputs.items())
        per_position = batch["target"].ndim == 2  # a language model: logits (B, L, V)
        logits = dry_run(model, role, inputs, f"{self.splits.name} inputs ({shapes})", "pick a model built for this input shape",
                         positions=batch["target"].shape[1] if per_position else None)
        if logits.shape[-1] != self.splits.num_classes:
            if per_position:
                raise PotstillError(
                    f"the {role} predicts {logits.shape[-1]} tokens but the data's tokenizer has {self.splits.num_classes}: "
                    f"a language model must use the vocabulary the data was tokenised with (data.args.tokenizer)"
                )
            raise PotstillError(
                f"the {role} predicts {logits.shape[-1]} classes but {self.splits.name} has "
                f"{self.splits.num_classes}; build the {role} with num_classes={self.splits.num_classes}"
            )


def check_vocabulary(model: nn.Module, role: str, data, tokenizer_name: str | None) -> None:
    """A text model must read the data's token ids as the tokenizer that made them meant them."""
    record = text_record(model)
    data_words = f"tokenizer {tokenizer_name}" if tokenizer_name else "the data's tokenizer"
    if record is not None and data.tokenizer and record.fingerprint != data.tokenizer:
        size = f"{len(load_tokenizer(tokenizer_name))} tokens from " if tokenizer_name else ""
        raise PotstillError(
            f"the {role}'s vocabulary ({record.words()}) differs from the one the data was tokenised with "
            f"({size}{data_words}, fingerprint {data.tokenizer[:12]}): the same ids would mean other tokens; "
            "tokenise the data with the model's tokenizer (data.args.tokenizer) or pick a model trained with it"
        )
    embedding = getattr(model, "get_input_embeddings", lambda: None)()
    largest = int(data.input_ids.max()) if len(data) else 0
    if isinstance(embedding, nn.Embedding) and largest >= embedding.num_embeddings:
        raise PotstillError(
            f"the data holds token id {largest} but the {role} embeds only {embedding.num_embeddings} tokens: it was "
            f"built for another vocabulary than {data_words}'s; use a model with the data's tokenizer"
        )


def check_same_vocabulary(teacher: nn.Module, student: nn.Module) -> None:
    """Teacher and student must share a vocabulary: token-level knowledge means nothing across two."""
    first, second = text_record(teacher), text_record(student)
    if first is not None and second is not None and first.fingerprint != second.fingerprint:
        raise PotstillError(
            f"the teacher's vocabulary ({first.words()}) and the student's ({second.words()}) differ; teacher and "
            "student must use one tokenizer (build the student with tokenizer: the teacher's model folder)"
        )


def dry_run(model: nn.Module, role: str, inputs: torch.Tensor | dict[str, torch.Tensor], what: str, fix: str,
            positions: int | None = None) -> torch.Tensor:
    """One forward pass in eval mode without gradients on `inputs` (images (B, C, H, W), or a dict
    of model inputs), described as `what`; the model must take them (else the error ends with
    `fix`) and return logits (B, K), or (B, L, V) with `positions` = L (a language model)."""
    count = batch_size_of(inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = io_of(model)(model, as_batch(inputs))
    except PotstillError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PotstillError(f"the {role} cannot process {what}: the model failed with '{reason}'; {fix}") from error
    finally:
        model.train(was_training)
    found = find_logits(output)
    logits = found if found is not None else output  # not logits: named below
    if positions is not None:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or tuple(logits.shape[:2]) != (count, positions):
            got = (f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
                   else f"a {type(logits).__name__}, not a tensor")
            raise PotstillError(
                f"given a batch of {count} rows of {positions} tokens, the {role} returns {got}; a language model must "
                f"return next-token logits of shape ({count}, {positions}, V) (a causal LM such as hf_lm or hf_lm_config, "
                "not a sequence classifier)"
            )
        return logits
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != count:
        got = (f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
               else f"a {type(logits).__name__}, not a tensor")
        raise PotstillError(
            f"given a batch of {count}, the {role} returns {got}; potstill needs forward() to return only the "
            f"logits, one tensor of shape ({count}, K) with a row of K class scores per sample"
        )
    return logits
