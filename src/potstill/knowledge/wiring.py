"""From recipe terms to loss modules wired to tapped layers.

    terms = build_terms(recipe.distill, epochs)          # names, arguments, weights: no models needed
    lines = connect_terms(terms, student, teacher, batch_input, num_classes=10, num_samples=60000)

`connect_terms` resolves each term's layer pairs (explicit names, or an automatic pairing by
relative depth), runs one dry forward pass of each model in eval mode to see the tapped shapes,
and lets every loss build its adapters from them. It returns one readable line per pair so the
user sees at start-up what was matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from potstill.config import to_dict
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.encoders import eager_attention, map_layers, require_layout
from potstill.knowledge.base import LOSSES, Probe
from potstill.model_io import as_batch, call_model
from potstill.recipe import DistillSpec, TermSpec
from potstill.schedules import WeightSchedule
from potstill.taps import Taps, check_tap_names, dry_run, embedding_tap, output_element, pair_by_depth, stage_taps


def term_specs(spec: DistillSpec) -> list[tuple[str, TermSpec]]:
    """The recipe's terms with their key paths (for messages): the `distill.loss` shorthand first
    (if set), then `distill.terms`."""
    shorthand = []
    if spec.loss is not None:
        shorthand.append(("distill", TermSpec(
            loss=spec.loss, weight=spec.beta, temperature=spec.temperature, args=spec.loss_args,
            schedule=spec.schedule, pairs=spec.pairs,
        )))
    return shorthand + [(f"distill.terms[{index}]", term) for index, term in enumerate(spec.terms)]


def build_term(term: TermSpec, epochs: int, where: str, name: str, layer_map: str | list[int] = "uniform") -> WeightedTerm:
    kwargs = dict(term.args)
    if term.temperature is not None and "temperature" not in kwargs:
        if "temperature" not in LOSSES.parameters(term.loss):
            raise PotstillError(f"{where}.temperature is set but loss '{term.loss}' takes no temperature; remove it")
        kwargs["temperature"] = term.temperature
    LOSSES.check_kwargs(term.loss, kwargs, where=f"{where}.args" if where != "distill" else "distill.loss_args")
    loss = LOSSES.create(term.loss, **kwargs)
    if isinstance(term.pairs, list) and type(loss).pairing == "none":
        raise PotstillError(f"{where}.pairs: loss '{term.loss}' compares logits only and taps no layers; remove pairs")
    weight = term.weight if term.weight is not None else type(loss).default_weight
    schedule = WeightSchedule(**to_dict(term.schedule), end_epoch=epochs)
    return WeightedTerm(name, loss, weight, schedule, pairs=term.pairs, stages=tuple(term.stages), layer_map=layer_map)


def build_terms(spec: DistillSpec, epochs: int) -> list[WeightedTerm]:
    """Every distillation term of the recipe with its loss module, weight and schedule. Names are
    the loss names (`at`, `kd`), numbered when a loss appears twice (`at`, `at_2`)."""
    terms, seen = [], {}
    for where, term in term_specs(spec):
        seen[term.loss] = seen.get(term.loss, 0) + 1
        name = term.loss if seen[term.loss] == 1 else f"{term.loss}_{seen[term.loss]}"
        terms.append(build_term(term, epochs, where, name, spec.layer_map))
    return terms


def check_explicit_pairs(terms: list[WeightedTerm], student: nn.Module, teacher: nn.Module) -> None:
    """Before any training: every explicitly named layer must exist (nearest names suggested), and
    transformer losses must find encoder layers and a valid layer map (from the structure alone)."""
    for term in terms:
        pairing = type(term.loss).pairing if term.pairs == "auto" else term.pairs
        if pairing in TRANSFORMER_PAIRINGS:
            transformer_pairs(pairing, student, teacher, term)
        if isinstance(term.pairs, list):
            check_tap_names(student, [pair.student for pair in term.pairs], f"student (loss {term.name})")
            check_tap_names(teacher, [pair.teacher for pair in term.pairs], f"teacher (loss {term.name})")


@dataclass
class Layers:
    """What a dry run showed about one model: its stage ends and its embedding."""

    model: nn.Module
    role: str
    stages: list[str]
    embedding: str | None

    @classmethod
    def of(cls, model: nn.Module, sample: torch.Tensor, role: str) -> Layers:
        infos, _ = dry_run(model, sample)
        try:
            embedding = embedding_tap(model, infos)
        except PotstillError:
            embedding = None
        return cls(model, role, stage_taps(model, infos), embedding)

    def pick(self, pairing: str, loss: str) -> list[str]:
        if pairing == "embedding":
            if self.embedding is None:
                raise PotstillError(f"loss '{loss}': the {self.role} has no nn.Linear classifier to tap the embedding from; set pairs explicitly")
            return [self.embedding]
        if not self.stages:
            raise PotstillError(
                f"loss '{loss}': found no stage ends in the {self.role} ({type(self.model).__name__}) to pair; "
                "set pairs explicitly: [{student: NAME, teacher: NAME}] (`potstill list taps MODEL`)"
            )
        if pairing == "last_stage":
            return self.stages[-1:]
        if pairing == "middle_stage":
            return [self.stages[(len(self.stages) - 1) // 2]]
        return self.stages


TRANSFORMER_PAIRINGS = ("embeddings", "layers", "attentions", "last_layer", "last_attention_value")


def transformer_pairs(pairing: str, student: nn.Module, teacher: nn.Module, term: WeightedTerm) -> list[tuple[str, str]]:
    """Pairs of encoder taps (potstill.encoders) for a transformer loss, mapped by `term.layer_map`."""
    s, t = require_layout(student, "student", term.name), require_layout(teacher, "teacher", term.name)
    if pairing == "embeddings":
        if not (s.embeddings and t.embeddings):
            raise PotstillError(f"loss '{term.name}': found no embeddings module (one holding word_embeddings); set pairs explicitly")
        return [(s.embeddings, t.embeddings)]
    if pairing == "last_layer":
        return [(s.layers[-1], t.layers[-1])]
    if pairing == "last_attention_value":
        return [(s.attentions[-1], t.attentions[-1]), (s.values[-1], t.values[-1])]
    mapped = map_layers(len(s.layers), len(t.layers), term.layer_map, term.name)
    return [(getattr(s, pairing)[i], getattr(t, pairing)[j]) for i, j in mapped]


def resolve_pairs(term: WeightedTerm, student: Layers, teacher: Layers) -> list[tuple[str, str]]:
    if isinstance(term.pairs, list):
        return [(pair.student, pair.teacher) for pair in term.pairs]
    pairing = type(term.loss).pairing if term.pairs == "auto" else term.pairs
    if pairing == "none":
        return []
    if pairing in TRANSFORMER_PAIRINGS:
        return transformer_pairs(pairing, student.model, teacher.model, term)
    if pairing == "stages":
        return pair_by_depth(student.pick(pairing, term.name), teacher.pick(pairing, term.name))
    return list(zip(student.pick(pairing, term.name), teacher.pick(pairing, term.name)))


def example_features(model: nn.Module, names: list[str], sample: torch.Tensor, role: str) -> dict[str, torch.Tensor]:
    """Tapped outputs of one forward pass in eval mode, without gradients."""
    taps = Taps(model, names, role)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), taps.capture() as features:
            call_model(model, as_batch(sample))
    finally:
        model.train(was_training)
    return features


def connect_terms(
    terms: list[WeightedTerm], student: nn.Module, teacher: nn.Module, sample: torch.Tensor, *,
    num_classes: int, num_samples: int, adapters: bool = True,
) -> list[str]:
    """Resolve each term's pairs, set its taps and let its loss build adapters from a dry run."""
    student_layers, teacher_layers = Layers.of(student, sample, "student"), Layers.of(teacher, sample, "teacher")
    resolved = {term.name: resolve_pairs(term, student_layers, teacher_layers) for term in terms}
    student_names = sorted({s for pairs in resolved.values() for s, _ in pairs})
    teacher_names = sorted({t for pairs in resolved.values() for _, t in pairs})
    lines = []
    for model, names, role in ((student, student_names, "student"), (teacher, teacher_names, "teacher")):
        if any(output_element(name)[1] is not None for name in names):  # e.g. attention maps
            switched = eager_attention(model, role)
            lines += [switched] if switched else []
    student_features = example_features(student, student_names, sample, "student")
    teacher_features = example_features(teacher, teacher_names, sample, "teacher")
    for term in terms:
        pairs = resolved[term.name]
        minimum = type(term.loss).min_pairs if type(term.loss).pairing != "none" else 0
        if len(pairs) < minimum:
            raise PotstillError(f"loss '{term.name}' needs at least {minimum} layer pairs, got {len(pairs)}; list more pairs")
        term.student_taps, term.teacher_taps = [s for s, _ in pairs], [t for _, t in pairs]
        probe = Probe(
            term.name, [student_features[s] for s, _ in pairs], [teacher_features[t] for _, t in pairs],
            term.student_taps, term.teacher_taps, num_classes, num_samples, adapters,
        )
        term.loss.setup(probe)
        term.loss.to(next(iter(as_batch(sample).values())).device)  # adapters and buffers live where the models do
        lines += [f"{term.name}: {probe.label(i)}" for i in range(len(pairs))]
    return lines
