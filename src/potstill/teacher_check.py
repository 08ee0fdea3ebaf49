"""Before a teacher teaches: is it any good on this data?

A teacher that scores near chance, or clearly below the same student trained alone, almost
always means the teacher is being fed inputs it was not trained on (its preprocessing), the
wrong checkpoint, or another class order, and distilling from it silently produces a student
worse than no distillation. The check measures the teacher on the test split once (one
evaluation pass) and refuses, or warns with `distill.teacher_check: warn`, naming those causes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.positions import IGNORE_INDEX
from potstill.preprocess import preprocessing_of

SIGMAS = 3.0  # a difference must exceed 3 binomial standard deviations of the test split
CHANCE_MARGIN = 0.05  # and lie at least 5 points above the majority-class rate


def chance_rate(targets: torch.Tensor, num_classes: int) -> float:
    """Accuracy of always predicting the most frequent test class."""
    return float(torch.bincount(targets, minlength=num_classes).max()) / len(targets)


def teacher_problems(accuracy: float, chance: float, tests: int, baseline: float | None) -> list[str]:
    """Why a teacher at `accuracy` should not teach, given chance and the student alone's accuracy."""
    problems = []
    near_chance = chance + max(CHANCE_MARGIN, SIGMAS * math.sqrt(chance * (1 - chance) / tests))
    if accuracy <= near_chance:
        problems.append(f"scores {100 * accuracy:.2f}% on the test split, near chance ({100 * chance:.2f}% by always "
                        f"predicting the most frequent class)")
    elif baseline is not None:
        rate = (baseline * tests + 1) / (tests + 2)  # smoothed: a baseline of 100% still has test noise
        spread = SIGMAS * math.sqrt(2 * rate * (1 - rate) / tests)
        if accuracy < baseline - spread:
            problems.append(f"scores {100 * accuracy:.2f}% on the test split, below the student trained alone "
                            f"({100 * baseline:.2f}%, more than {100 * spread:.1f} points of test noise)")
    return problems


def check_teacher(teacher: nn.Module, role: str, evaluate: Callable[[nn.Module], dict[str, float]],
                  targets: torch.Tensor, num_classes: int, baseline: float | None, mode: str,
                  say: Callable[[str], None]) -> float | None:
    """Measure `teacher`; refuse (mode refuse) or warn (mode warn) when it cannot be a teacher here.
    Returns its test accuracy (None when mode is off)."""
    if mode == "off":
        return None
    accuracy = evaluate(teacher)["test_acc"]
    problems = teacher_problems(accuracy, chance_rate(targets, num_classes), len(targets), baseline)
    if not problems:
        say(f"{role}: {100 * accuracy:.2f}% on the test split; distilling from it")
        return accuracy
    preprocessing = preprocessing_of(teacher)
    if preprocessing.source == "tokenizer":  # text: ids from the data's tokenizer, checked against the model's
        inputs = "an under-trained or wrong checkpoint (fine-tune it first: potstill train)"
    else:
        inputs = (f"its input preprocessing (it sees {preprocessing.describe()}; set teacher.model.preprocess to what "
                  "it was trained with: none, dataset, or {mean: [...], std: [...]}), a wrong checkpoint")
    message = (
        f"the {role} {'; '.join(problems)}. Likely causes: {inputs}, or a class order different from the data's. "
        "Fix that, or set distill.teacher_check: warn to distil from it anyway"
    )
    if mode == "refuse":
        raise PotstillError(message)
    say(f"WARNING: {message}")
    return accuracy


# A language model is judged by held-out perplexity. "Near chance" is the perplexity of a model
# that learned only how often each token occurs (the training unigram, add-one smoothed); "clearly
# worse" is a perplexity more than PPL_MARGIN above the student trained alone (tens of thousands
# of test tokens make the noise of a mean log-likelihood far smaller than that).
PPL_MARGIN = 0.02


def unigram_perplexity(train_targets: torch.Tensor, test_targets: torch.Tensor, vocabulary: int) -> float:
    """Perplexity on the test tokens of the training tokens' add-one-smoothed frequencies."""
    train, test = (t[t != IGNORE_INDEX] for t in (train_targets.flatten(), test_targets.flatten()))
    counts = torch.bincount(train, minlength=vocabulary).double() + 1
    log_q = (counts / counts.sum()).log()
    return float(torch.exp(-log_q[test].mean()))


def lm_teacher_problems(perplexity: float, unigram: float, baseline: float | None) -> list[str]:
    if perplexity >= unigram:
        return [f"has a test perplexity of {perplexity:.2f}, no better than token frequencies alone ({unigram:.2f})"]
    if baseline is not None and perplexity > baseline * (1 + PPL_MARGIN):
        return [f"has a test perplexity of {perplexity:.2f}, above the student trained alone ({baseline:.2f})"]
    return []


def check_lm_teacher(teacher: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]], unigram: float,
                     baseline: float | None, mode: str, say: Callable[[str], None]) -> float | None:
    """check_teacher for language models: perplexity against token frequencies and the student alone."""
    if mode == "off":
        return None
    perplexity = evaluate(teacher)["test_ppl"]
    problems = lm_teacher_problems(perplexity, unigram, baseline)
    if not problems:
        say(f"teacher: test perplexity {perplexity:.2f} (token frequencies alone: {unigram:.2f}); distilling from it")
        return perplexity
    message = (f"the teacher {problems[0]}. Likely causes: an under-trained or wrong checkpoint (train it longer: "
               "potstill train), or data tokenised with another tokenizer than the teacher's. Fix that, or set "
               "distill.teacher_check: warn to distil from it anyway")
    if mode == "refuse":
        raise PotstillError(message)
    say(f"WARNING: {message}")
    return perplexity
