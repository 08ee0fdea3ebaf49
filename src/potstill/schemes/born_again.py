"""Born-again networks: generation k+1, the same architecture, learns from generation k
(Furlanello, Lipton, Tschannen, Itti & Anandkumar, "Born Again Neural Networks", ICML 2018,
arXiv 1805.04770).

Generation 0 is the recipe's teacher, or, without one, the student architecture trained alone
(the baseline stage). Generation k is distilled with the recipe's loss terms from generation
k-1, which is rebuilt from gen<k-1>/model.safetensors, so a resumed run teaches exactly what the
saved generation predicts. The report shows every generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from potstill.errors import PotstillError
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


@SCHEMES.register("born_again")
class BornAgain(Scheme):
    """Generations of the student architecture, each taught by the one before."""

    teacher = "optional"
    staged = True

    def __init__(self, generations: int = 3) -> None:
        """generations: how many times the student is born again (the report's last one is the result)."""
        if generations < 1:
            raise PotstillError(f"scheme.args.generations must be at least 1, got {generations}")
        self.generations = generations
        self.final_role = f"gen{generations}"

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if recipe.teacher is None and not given_teacher and not recipe.distill.baseline:
            raise PotstillError(
                "scheme 'born_again' without a teacher section uses the student trained alone as generation 0; "
                "set distill.baseline: true or add a teacher"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        if student is not None:
            raise PotstillError("scheme 'born_again' builds every generation from the recipe's student section; set student in the recipe")
        student_init = runner.student()
        if teacher is None and recipe.teacher is not None:
            teacher = runner.teacher()
        models = [] if teacher is None else [("teacher", teacher)]
        models += named("baseline", runner.baseline(student_init))
        # generation 0, the stage that saved it and its architecture (None: the recipe's teacher)
        previous, previous_stage, previous_spec = teacher, None, None
        if teacher is None:
            runner.describe_role("baseline", "student alone (generation 0)")
            previous_stage, previous_spec = "baseline", recipe.student
        for generation in range(1, self.generations + 1):
            role = f"gen{generation}"
            if previous_stage is not None:  # the teacher as saved, not as held in memory
                previous = self.saved_generation(runner, previous_stage)
            runner.describe_role(role, f"generation {generation}", recipe.student)
            fresh = runner.build(recipe.student, role, seed=recipe.seed + generation)
            models.append((role, runner.transfer(role, fresh, previous, previous_stage, previous_spec)))
            previous_stage, previous_spec = role, recipe.student
        return models

    @staticmethod
    def saved_generation(runner: Workshop, stage: str) -> nn.Module:
        """A finished generation rebuilt from the student spec and its model.safetensors."""
        model = runner.build(runner.recipe.student, stage)
        return runner.load_weights(model, runner.run.stage(stage) / "model.safetensors", f"{stage} (teacher)")
