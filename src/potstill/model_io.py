"""How a model is called on a batch: the one place that knows a model's calling convention.

A batch is a dict of named tensors. Some names are bookkeeping (`target`, `index`, `view`); the
others are the model's inputs: `input` (B, C, H, W) for an image classifier, `input_ids` and
`attention_mask` (B, L) for a text encoder. Every task, evaluation, cache build and dry run calls

    logits = call_model(model, batch)          # (B, K)

and never looks at the model's family or the data's modality. A model's calling convention (its
`ModelIO`) is attached to it like its preprocessing, as a plain attribute (never in its
state_dict); a model without one is called the plain way:

    image batch (has `input`)   model(batch["input"])              -> logits tensor
    any other batch              model({name: tensor, ...})         -> logits tensor (or an object with .logits)

Hugging Face models (potstill's `hf` builders, or any transformers model handed in from Python)
get `KeywordIO`: model(input_ids=..., attention_mask=...).logits. A model that reads another field
of the batch as its input (the teacher of cross-modal distillation reads `teacher_input`, the
student `input`) gets `FieldIO`: model(batch[field]); the recipe chooses it with `model.input`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from potstill.errors import PotstillError

BOOKKEEPING = ("target", "index", "view")  # batch fields that are not model inputs
ATTRIBUTE = "_potstill_io"


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch's fields a model reads, e.g. {"input": (B, C, H, W)} or {"input_ids", "attention_mask"}."""
    return {name: value for name, value in batch.items() if name not in BOOKKEEPING}


def find_logits(output: object) -> torch.Tensor | None:
    """The tensor a model returns, or the `.logits` of an output object (transformers); else None."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return None


def logits_of(output: object) -> torch.Tensor:
    logits = find_logits(output)
    if logits is not None:
        return logits
    raise PotstillError(
        f"the model returned a {type(output).__name__}, not logits; potstill needs forward() to return a (B, K) "
        "tensor, or an object/dict whose `logits` is one"
    )


@dataclass(frozen=True)
class ModelIO:
    """The plain convention: a tensor model gets batch["input"], any other gets the dict of inputs."""

    def __call__(self, forward: Callable, batch: dict[str, torch.Tensor]) -> object:
        if "input" in batch:
            return forward(batch["input"])
        return forward(model_inputs(batch))



@dataclass(frozen=True)
class KeywordIO(ModelIO):
    """Hugging Face style: model(**inputs); the model reads the named fields it knows."""

    keys: tuple[str, ...] = ("input_ids", "attention_mask")

    def __call__(self, forward: Callable, batch: dict[str, torch.Tensor]) -> object:
        missing = [key for key in self.keys if key not in batch]
        if missing:
            raise PotstillError(
                f"the model reads {', '.join(self.keys)} from each batch, but the batch has no {', '.join(missing)} "
                f"(it holds {', '.join(batch)}); a text model needs text data (`potstill list datasets`)"
            )
        return forward(**{key: batch[key] for key in self.keys})



@dataclass(frozen=True)
class BatchIO(ModelIO):
    """For potstill's own wrappers (an ensemble of teachers): the model takes the whole batch and
    calls the models inside it with their own conventions."""

    def __call__(self, forward: Callable, batch: dict[str, torch.Tensor]) -> object:
        return forward(batch)



@dataclass(frozen=True)
class FieldIO(ModelIO):
    """The model reads batch[field] (B, C, H, W) as its input: a second modality of paired data
    (cross-modal distillation: the teacher sees `teacher_input`, the student `input`)."""

    field: str = "input"

    def __call__(self, forward: Callable, batch: dict[str, torch.Tensor]) -> object:
        if self.field not in batch:
            held = ", ".join(model_inputs(batch))
            raise PotstillError(
                f"the model reads `{self.field}` from each batch, but the batch holds only {held}; use paired data "
                f"that carries `{self.field}` (e.g. dataset fashion_mnist_pair, or ArrayData(..., teacher_inputs=...)) "
                "or let the model read `input` (model.input: input)"
            )
        return forward(batch[self.field])


PLAIN = ModelIO()
KEYWORDS = KeywordIO()
WHOLE_BATCH = BatchIO()


def attach_io(model: nn.Module, io: ModelIO) -> nn.Module:
    object.__setattr__(model, ATTRIBUTE, io)  # a plain attribute: not a submodule, not saved
    return model


def read_field(model: nn.Module, field: str) -> nn.Module:
    """Make `model` read batch[field] as its input; "input" removes a FieldIO (its own convention again)."""
    if field != "input":
        return attach_io(model, FieldIO(field))
    if isinstance(getattr(model, ATTRIBUTE, None), FieldIO):
        object.__delattr__(model, ATTRIBUTE)
    return model


def field_of(model: nn.Module) -> str:
    """The batch field an image model reads: `input`, or its FieldIO's field."""
    io = io_of(model)
    return io.field if isinstance(io, FieldIO) else "input"


def io_of(model: nn.Module) -> ModelIO:
    """The attached convention; a transformers model without one is called with keywords."""
    attached = getattr(model, ATTRIBUTE, None)
    if attached is not None:
        return attached
    if hasattr(model, "main_input_name") and hasattr(model, "config"):  # a transformers PreTrainedModel
        return KEYWORDS
    return PLAIN


def as_batch(sample: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A dry run's sample as a batch: an image tensor (B, C, H, W) becomes {"input": it}."""
    return sample if isinstance(sample, dict) else {"input": sample}


def batch_size_of(sample: torch.Tensor | dict[str, torch.Tensor]) -> int:
    return len(next(iter(as_batch(sample).values())))


def call_model(model: nn.Module, batch: dict[str, torch.Tensor], forward: Callable | None = None) -> torch.Tensor:
    """The model's logits on `batch`; `forward`: what to call instead of the model itself (its
    compiled form, an ensemble's every-teacher pass), with the same convention."""
    return logits_of(io_of(model)(forward or model, batch))
