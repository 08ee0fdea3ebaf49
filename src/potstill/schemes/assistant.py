"""Teacher assistants: across a large capacity gap, the teacher teaches a mid-sized assistant and
the assistant teaches the student (Mirzadeh et al., "Improved Knowledge Distillation via Teacher
Assistant", AAAI 2020, arXiv 1902.03393).

    teacher -> assistant_1 -> ... -> assistant_n -> student

Every link is offline distillation with the recipe's loss terms and training budget; each
assistant is frozen once trained and teaches the next. The same student distilled straight from
the teacher ("direct") is trained too, so the report compares the chain with direct KD.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.wiring import check_explicit_pairs
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


@SCHEMES.register("assistant")
class Assistant(Scheme):
    """The teacher teaches scheme.assistants in turn, the last assistant teaches the student."""

    model_lists = ("assistants",)
    staged = True

    def __init__(self, compare_direct: bool = True) -> None:
        """compare_direct: also distil the student straight from the teacher, for the report."""
        self.compare_direct = compare_direct

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if not recipe.scheme.assistants:
            raise PotstillError("scheme 'assistant' needs scheme.assistants, e.g. assistants: [{name: small_cnn}]")
        if any(isinstance(term.pairs, list) for term in terms):
            raise PotstillError(
                "distill: explicit layer pairs name one teacher's layers, but in scheme 'assistant' each assistant "
                "is a teacher too; use pairs: auto (paired by relative depth for every link)"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        student_init = student if student is not None else runner.student()
        if teacher is None:
            check_explicit_pairs(runner.terms(), student_init, runner.teacher_skeleton())
            teacher = runner.teacher()
        models = [("teacher", teacher)] + named("baseline", runner.baseline(student_init))
        if self.compare_direct:
            runner.describe_role("direct", "distilled directly", recipe.student)
            models.append(("direct", runner.transfer("direct", copy.deepcopy(student_init), teacher)))
        previous, previous_role, previous_spec = teacher, None, None  # None: the recipe's teacher
        for index, spec in enumerate(recipe.scheme.assistants, start=1):
            role = f"assistant{index}"
            runner.describe_role(role, f"assistant {index}", spec)
            assistant = runner.build(spec, f"scheme.assistants[{index - 1}]", seed=recipe.seed + index)
            previous = runner.transfer(role, assistant, previous, previous_role, previous_spec)
            previous_role, previous_spec = role, spec
            models.append((role, previous))
        runner.describe_role("student", "distilled via assistants")
        return models + [("student", runner.transfer("student", student_init, previous, previous_role, previous_spec))]

    def annotate(self, summary: dict) -> None:
        rows = {row["role"]: row for row in summary["models"]}
        if "direct" in rows:
            summary["assistant_gain_points"] = round(100 * (rows["student"]["test_acc"] - rows["direct"]["test_acc"]), 3)
