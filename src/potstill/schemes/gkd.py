"""On-policy / generalized knowledge distillation for language models (GKD: Agarwal et al.,
"On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes", ICLR 2024,
arXiv 2306.13649).

With probability lambda a batch's continuations are written by the current student (sampled at
`temperature`, nucleus `top_p`) and scored token by token by the frozen teacher; otherwise the
batch is the dataset's. The divergence (the recipe's distill terms: jsd with beta, forward_kl,
reverse_kl, ...) is applied at every counted position:

    on-policy batch:   y ~ p_S(. | x)          L = sum_terms w * D(p_T || p_S)(y_t | x, y_<t), t over y
    dataset batch:     (x, y) from the data    L = alpha * CE + sum_terms w * D(...) over the data's targets

Sampling is a side branch without gradient (the student is differentiated only through the
divergence on the sampled tokens, as in the paper). No hard-label term on student samples: their
"labels" are the student's own choices. Every step draws its coin and its samples from a
generator seeded by (seed, step), so a resumed run repeats them exactly.

Prompts: `prompt_tokens: N` takes the first N tokens of each row (corpus windows); without it a
row's prompt ends where its first learned target begins (prompt/response data).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.data.registry import dataset_task
from potstill.engine.task import StepResult
from potstill.errors import PotstillError
from potstill.generation import generate
from potstill.positions import IGNORE_INDEX, counted_mask
from potstill.schemes.base import SCHEMES
from potstill.schemes.offline import Offline, OfflineDistillation, named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


class OnPolicyDistillation(OfflineDistillation):
    """OfflineDistillation whose batches are, with probability lmbda, the student's own continuations."""

    def __init__(self, *args, sampling: GKD, pad_token_id: int, eos_token_id: int | None, seed: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sampling, self.pad_token_id, self.eos_token_id, self.seed = sampling, pad_token_id, eos_token_id, seed

    def step(self, batch: Batch, progress: float) -> StepResult:
        generator = torch.Generator(device=batch["input_ids"].device)
        generator.manual_seed(self.seed * 1_000_003 + round(progress * 1_000_000))  # one stream per step
        coin = torch.rand((), generator=generator, device=generator.device)
        if float(coin) >= self.sampling.lmbda:
            return super().step(batch, progress)
        with self.timed("sampling"):
            sampled = self.student_batch(batch, generator)
        alpha, self.alpha = self.alpha, 0.0  # no hard labels on the student's own samples
        try:
            result = super().step(sampled, progress)
        finally:
            self.alpha = alpha
        result.scored = sampled
        return result

    def student_batch(self, batch: Batch, generator: torch.Generator) -> Batch:
        """The rows' prompts continued by the student: ids and mask right-aligned from position 0,
        targets only at the generated tokens."""
        ids, mask = prompts(batch, self.sampling.prompt_tokens)
        out = generate(self.model, ids, mask, max_new_tokens=self.sampling.max_new_tokens,
                       temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                       eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id, generator=generator)
        order = torch.argsort(out.attention_mask, dim=1, descending=True, stable=True)  # padding to the right
        sequences, attention = out.sequences.gather(1, order), out.attention_mask.gather(1, order)
        new = out.new_tokens.gather(1, order)
        target = torch.full_like(sequences, IGNORE_INDEX)
        target[:, :-1] = torch.where(new[:, 1:], sequences[:, 1:], IGNORE_INDEX)
        return {"input_ids": sequences, "attention_mask": attention, "target": target, "index": batch["index"]}


def prompts(batch: Batch, prompt_tokens: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (B, P) right-padded: each row's first `prompt_tokens` tokens, or its tokens up to
    and including the one from which its first target is predicted."""
    ids, mask, counted = batch["input_ids"], batch["attention_mask"], counted_mask(batch["target"])
    if prompt_tokens is not None:
        length = torch.clamp(mask.sum(dim=1), max=prompt_tokens)
    else:
        length = counted.int().argmax(dim=1) + 1  # the first counted position reads the whole prompt
    width = int(length.max())
    keep = torch.arange(width, device=ids.device)[None, :] < length[:, None]
    return torch.where(keep, ids[:, :width], 0), keep.long()


@SCHEMES.register("gkd")
class GKD(Offline):
    """On-policy distillation of a language model: with probability lmbda the student writes, the teacher scores."""

    cache = False  # the teacher scores sequences that exist only during training
    staged = False
    refines = False
    single_process = "its losses average over tokens, which the processes' parts of a batch hold unequally"

    def __init__(self, lmbda: float = 0.5, prompt_tokens: int | None = None, max_new_tokens: int = 64,
                 temperature: float = 1.0, top_p: float = 1.0) -> None:
        if not isinstance(lmbda, (int, float)) or isinstance(lmbda, bool) or not 0 <= lmbda <= 1:
            raise PotstillError(f"scheme gkd: lmbda (the share of batches the student writes) must lie in [0, 1], got {lmbda!r}")
        for name, value in (("max_new_tokens", max_new_tokens), ("prompt_tokens", prompt_tokens)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise PotstillError(f"scheme gkd: {name} must be a whole number >= 1, got {value!r}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise PotstillError(f"scheme gkd: temperature must be > 0 (the student samples), got {temperature!r}")
        if not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1:
            raise PotstillError(f"scheme gkd: top_p must lie in (0, 1], got {top_p!r}")
        self.lmbda, self.prompt_tokens, self.max_new_tokens = float(lmbda), prompt_tokens, max_new_tokens
        self.temperature, self.top_p = float(temperature), float(top_p)

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if not given_teacher and dataset_task(recipe.data.name) != "causal_lm":  # from Python: checked in run()
            raise PotstillError(f"scheme {self.name} distils language models; dataset '{recipe.data.name}' is not one "
                                "(try shakespeare or prompt_response)")

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        student_init = student if student is not None else runner.student()
        teacher = teacher if teacher is not None else runner.teacher()
        runner.initialise(student_init, teacher)  # student.init, before the baseline copies the student
        data = runner.bench.splits.train
        self.check_lengths(data)
        make = self.task_maker(runner, teacher, data)
        models = [("teacher", teacher)] + named("baseline", runner.baseline(student_init))
        return models + [("student", runner.transfer("student", student_init, teacher, make_task=make))]

    def task_maker(self, runner: Workshop, teacher: nn.Module, data) -> Callable[..., OfflineDistillation]:
        """The main stage's Task, given OfflineDistillation's arguments by Runner.transfer."""
        pad, eos = special_ids(data)
        return functools.partial(OnPolicyDistillation, sampling=self, pad_token_id=pad, eos_token_id=eos,
                                 seed=runner.recipe.seed)


    def check_lengths(self, data) -> None:
        """Language-model data, and prompt + continuation fit the context the models were built for."""
        if getattr(data, "task", "classification") != "causal_lm":
            raise PotstillError(f"scheme {self.name} distils language models; give language-model data (potstill.LMData)")
        context = data.input_shape[0]
        if self.prompt_tokens is None:
            counted = data.targets != IGNORE_INDEX
            longest = int((counted.int().argmax(dim=1) + 1).max())
        else:
            longest = min(self.prompt_tokens, context)
        if longest + self.max_new_tokens > context:
            raise PotstillError(
                f"scheme {self.name}: prompts of up to {longest} tokens + max_new_tokens {self.max_new_tokens} exceed the "
                f"data's context of {context} tokens (the models' positions); lower scheme.args.max_new_tokens or "
                "prompt_tokens"
            )


def special_ids(data) -> tuple[int, int | None]:
    """(pad, eos) token ids of the data's tokenizer; (0, None) when the data names none."""
    path = getattr(data, "tokenizer_path", "")
    if not path:
        return 0, None
    from potstill.models.hf_files import load_tokenizer

    words = load_tokenizer(path)
    eos = words.eos_token_id
    pad = words.pad_token_id if words.pad_token_id is not None else eos
    return (pad if pad is not None else 0), eos
