"""The scheme registry and the base every scheme follows.

A scheme decides who teaches whom and when. It is one file, registered by name, selected in the
recipe (`scheme: online`, or a `scheme` section with `args` and model lists). Its hyperparameters
are typed constructor arguments, validated like every other recipe key. `check` refuses a recipe
the scheme cannot run before anything is read or trained; `run` trains the scheme's stages through
the Runner's building blocks (`Runner.stage`, `transfer`, `baseline`, `refine`), each stage one
Task for the one training loop, and returns the models the report compares.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from potstill.config import validate
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.knowledge import LOSSES
from potstill.registry import Registry

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop
    from potstill.recipe import Recipe

SCHEMES = Registry("scheme")
MODEL_LISTS = ("peers", "teachers", "assistants")  # the scheme section's model lists


# student keys only schemes with `initialises` honour, and what those schemes do that others do not
STUDENT_START = {
    "init": "start its student from the teacher's weights",
    "prune": "start its student from trained weights",
    "quantize": "prepare its student for quantization-aware training",
}


class Scheme:
    """Base class. Class attributes say what a scheme needs, so the checks are written once."""

    teacher: ClassVar[str] = "required"  # the recipe's `teacher` section: required, optional or none
    model_lists: ClassVar[tuple[str, ...]] = ()  # which of scheme.peers / teachers / assistants it reads
    cache: ClassVar[bool] = True  # its teachers are frozen, so a teacher-output cache is exact
    logits_only: ClassVar[bool] = False  # its terms compare logits only (no single frozen teacher to tap)
    staged: ClassVar[bool] = False  # it runs the recipe's preparation and init stages (distill.init_epochs)
    refines: ClassVar[bool] = False  # it runs phase 3 (refine.epochs) on its result
    initialises: ClassVar[bool] = False  # it starts the student from the teacher's weights (student.init)
    single_process: ClassVar[str] = ""  # why it cannot run under torchrun yet ("": it can; engine/distributed.py)
    final_role: str = "student"  # the report row that answers "did distillation pay off?"

    @property
    def name(self) -> str:
        return next(name for name in SCHEMES.names() if SCHEMES.get(name) is type(self))

    def check(self, recipe: Recipe, terms: list[WeightedTerm], given_teacher: bool = False) -> None:
        """Raise a PotstillError naming the first thing this scheme cannot run. `given_teacher`: a
        teacher model was handed in from Python."""
        spec = recipe.scheme
        for key in MODEL_LISTS:
            if getattr(spec, key) and key not in self.model_lists:
                users = [name for name in SCHEMES.names() if key in SCHEMES.get(name).model_lists]
                raise PotstillError(
                    f"scheme.{key} is read only by scheme {' and '.join(users)}, not by '{self.name}'; remove scheme.{key} or change scheme.name"
                )
        if self.teacher == "none" and (recipe.teacher is not None or given_teacher):
            fix = "call distill() with teacher=None" if given_teacher else "remove the teacher section"
            raise PotstillError(f"scheme '{self.name}' has no pre-trained teacher; {fix}")
        if self.teacher == "required" and recipe.teacher is None and not given_teacher and needs_teacher(terms):
            raise PotstillError("the recipe has no teacher section; add teacher.model (and teacher.checkpoint or teacher.train)")
        if not self.cache and recipe.distill.cache.enabled is True:
            raise PotstillError(
                f"distill.cache: scheme '{self.name}' has no single frozen teacher whose outputs could be cached; "
                "set distill.cache.enabled: auto or false"
            )
        if self.logits_only:
            check_logit_terms(terms, self.name)
        if not self.staged and (recipe.distill.init_epochs > 0 or any("init" in term.stages for term in terms)):
            raise PotstillError(
                f"distill.init_epochs: scheme '{self.name}' has no feature-initialisation stage; set init_epochs: 0 and "
                "remove stages: [init] from the terms (the offline, assistant and born_again schemes run it)"
            )
        for key, what in STUDENT_START.items():
            if recipe.student is not None and getattr(recipe.student, key) is not None and not self.initialises:
                users = [name for name in SCHEMES.names() if SCHEMES.get(name).initialises]
                raise PotstillError(f"student.{key}: scheme '{self.name}' does not {what}; remove student.{key} or use "
                                    f"scheme {' or '.join(users)}")
        if not self.refines and recipe.refine.epochs > 0:
            raise PotstillError(
                f"refine.epochs: scheme '{self.name}' has no refinement phase (its student alone would train "
                f"{recipe.refine.epochs} epochs more than it); set refine.epochs: 0 or use scheme: offline"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        """Train every stage; return (role, model) pairs for the report, in table order.
        `teacher` / `student`: models handed in from Python, replacing the recipe's."""
        raise NotImplementedError

    def annotate(self, summary: dict[str, Any]) -> None:
        """Add the scheme's own comparisons to summary.json (e.g. the chain against direct KD)."""


def needs_teacher(terms: list[WeightedTerm]) -> bool:
    """False when every term has a virtual teacher (label smoothing as KD): no teacher section needed."""
    return any(type(term.loss).needs_teacher for term in terms)


def logit_losses() -> list[str]:
    return [name for name in LOSSES.names() if LOSSES.get(name).pairing == "none" and LOSSES.get(name).needs_teacher]


def check_logit_terms(terms: list[WeightedTerm], scheme: str) -> None:
    """Peers and ensembles are compared by their logits; a layer loss has no single teacher to tap."""
    for term in terms:
        loss = type(term.loss)
        if loss.pairing != "none" or loss.prepare_epochs > 0:
            raise PotstillError(
                f"distill: loss '{term.name}' compares intermediate layers, but scheme '{scheme}' passes knowledge "
                f"through logits only; use a logit loss ({', '.join(logit_losses())}) or scheme: offline"
            )
        if not loss.needs_teacher:
            raise PotstillError(
                f"distill: loss '{term.name}' uses no teacher (a virtual one), so scheme '{scheme}' would transfer "
                "nothing; use a logit loss such as kd"
            )


def argument_schema(name: str) -> type:
    """A dataclass with the scheme constructor's arguments, types and defaults, for `validate`."""
    constructor = SCHEMES.get(name)
    hints = typing.get_type_hints(constructor.__init__)
    fields = []
    for parameter in SCHEMES.parameters(name).values():
        default = parameter.default
        if default is inspect.Parameter.empty:
            spec = dataclasses.field()
        elif isinstance(default, (list, tuple)):
            spec = dataclasses.field(default_factory=lambda default=default: list(default))
        else:
            spec = dataclasses.field(default=default)
        fields.append((parameter.name, hints.get(parameter.name, Any), spec))
    return dataclasses.make_dataclass(f"{constructor.__name__}Args", fields)


def create_scheme(name: str, args: dict[str, Any]) -> Scheme:
    """The registered scheme built from the recipe's scheme.args, every key and type checked."""
    SCHEMES.check_kwargs(name, args, where="scheme.args")
    checked = validate(dict(args), argument_schema(name), source="scheme.args")
    values = {field.name: getattr(checked, field.name) for field in dataclasses.fields(checked)}
    return SCHEMES.get(name)(**values)
