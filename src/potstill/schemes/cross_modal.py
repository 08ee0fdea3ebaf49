"""Cross-modal distillation: a teacher that sees one modality teaches a student that sees another,
paired modality of the same samples, whose labels may be absent (Gupta, Hoffman & Malik, "Cross
Modal Distillation for Supervision Transfer", CVPR 2016, arXiv 1507.00448).

The paper transfers supervision from a teacher trained on labelled RGB images to a depth (or
optical flow) network on paired, unlabelled RGB-D frames, by regressing the student's mid-level
features onto the teacher's:

    min_{W_s}  sum_i  || f_t(I_i) - g( f_s(J_i; W_s) ) ||_2^2        I_i: teacher's modality, J_i: student's

with g a learned projection where the two feature shapes differ. In potstill that is a `fitnet`
term (L2 hint with an adapter) on the layers the recipe pairs, optionally alone first
(distill.init_epochs, the paper's "supervision transfer" before fine-tuning); the other terms
(kd on logits: Hinton's soft targets through the paired sample) apply as usual, and
alpha * CE(student, labels) only where the student's labels exist: distill.alpha: 0 is the
paper's setting, the student never sees a label of its own modality.

Which modality a model sees is its `model.input`: the teacher reads `teacher_input`, the student
`input` (potstill.model_io.FieldIO), so the frozen forward pass, the teacher-output cache (keyed on
the teacher's field and both modalities' content), evaluation and dry runs need no special case.
The student trained alone on its modality with labels is the baseline row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from potstill.data.registry import DATASETS
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.model_io import field_of
from potstill.schemes.base import SCHEMES, needs_teacher
from potstill.schemes.offline import Offline

if TYPE_CHECKING:
    from potstill.recipe import Recipe
    from potstill.schemes.workshop import Workshop

PAIRED_HINT = ("use a paired dataset (fashion_mnist_pair, digits_pair) or your own pair (dataset arrays with "
               "t_train/t_test, or potstill.ArrayData(..., teacher_inputs=...))")


def check_fields(teacher_field: str, student_field: str, held: tuple[str, ...], where: str) -> None:
    """The teacher's field must be in the data, and differ from the student's (else: offline KD)."""
    if teacher_field not in held:
        raise PotstillError(
            f"cross_modal: the teacher reads `{teacher_field}` but {where} has only {', '.join(held)}; {PAIRED_HINT}"
        )
    if teacher_field == student_field:
        raise PotstillError(
            f"cross_modal: teacher and student both read `{student_field}`, so no modality is crossed: that is plain "
            "offline distillation (scheme: offline); for cross-modal set teacher.model.input: teacher_input on a "
            "paired dataset"
        )


@SCHEMES.register("cross_modal")
class CrossModal(Offline):
    """The teacher reads its modality (teacher.model.input), the student the paired other one."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}

    def check(self, recipe: Recipe, terms: list[WeightedTerm], given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if not needs_teacher(terms):
            raise PotstillError("cross_modal: no loss term uses the teacher, so nothing crosses from its modality; "
                                "use kd (soft targets) and/or fitnet (the paper's L2 feature hints)")
        if recipe.teacher is None:
            if not given_teacher:
                raise PotstillError("cross_modal needs a teacher of the other modality: add teacher.model with "
                                    "input: teacher_input (and teacher.checkpoint or teacher.train)")
            return  # a teacher from Python: its field is checked in run(), once the data is known
        student = recipe.student.input if recipe.student is not None else "input"
        if recipe.data.name in DATASETS:  # a registered dataset says which fields it carries before it is read
            held = getattr(DATASETS.get(recipe.data.name), "fields", ("input",))
            check_fields(recipe.teacher.model.input, student, held, f"dataset '{recipe.data.name}'")

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        teacher_field = field_of(teacher) if teacher is not None else recipe.teacher.model.input
        student_field = field_of(student) if student is not None else recipe.student.input
        held = tuple(getattr(runner.bench.splits.train, "image_fields", ("input",)))
        check_fields(teacher_field, student_field, held, "the data")
        self.fields = {"teacher_reads": teacher_field, "student_reads": student_field,
                       "student_labels": recipe.distill.alpha > 0}
        return super().run(runner, teacher, student)

    def annotate(self, summary: dict[str, Any]) -> None:
        """Which field each model read, and whether the student's labels were used (alpha > 0)."""
        summary["cross_modal"] = dict(self.fields)
