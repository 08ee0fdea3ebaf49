"""Guard rail on the objective: say so when one loss term drowns the others.

A paper's weight is tuned to the paper's models: FitNets' hint weight 100 on a user's model gave a
hint term 150x the cross-entropy and a student 10.8 points worse than alone, with no other sign.

The rule, checked on each epoch's record (the mean weighted value of every term over its steps):
  1. active terms: those whose weight at the epoch's end is not 0 (a term before its warm-up or
     after its stop_epoch does not count) and whose mean is not 0; fewer than two: no check.
  2. the term with the largest |mean| is the candidate. When it is a hard-label cross-entropy
     (`ce`, or `<model>_ce` where a stage trains several models) nothing dominates: a distillation
     term far below it is satisfied (KD against a teacher that agrees with the student) as often
     as under-weighted, and the verdict line shows whether distillation paid off.
  3. the candidate is compared with the largest active cross-entropy, the objective the student
     is scored on, or, when no cross-entropy is active (alpha 0), with the next largest term.
  4. it dominates when the ratio of the two |means| exceeds DOMINANCE_RATIO.
The loop judges the balance once per stage: on the first epoch in which at least two terms are
active, i.e. the objective as configured, before the student has fitted its training labels. Later
epochs are not judged: a cross-entropy that falls towards 0 as the student fits its labels makes
any distillation term look dominant (the digits demo's KD term passed 50x CE at epoch 15 of 30,
in a run where distillation helped).
"""

from __future__ import annotations

from dataclasses import dataclass

DOMINANCE_RATIO = 50.0


@dataclass(frozen=True)
class Dominance:
    term: str  # the dominating term
    other: str  # the term it is compared with
    term_value: float  # epoch mean of each, weighted
    other_value: float

    @property
    def ratio(self) -> float:
        return abs(self.term_value) / abs(self.other_value)


def is_hard_label(name: str) -> bool:
    """The cross-entropy on dataset labels: `ce`, or `<model>_ce` in a stage that trains several."""
    return name == "ce" or name.endswith("_ce")


def term_names(record: dict) -> list[str]:
    """Every term of an epoch record's objective: those with a value, then those whose weight was 0
    all epoch (absent from `terms`). One name: the objective is a single term (plain training)."""
    weights = record.get("weights") or {}
    return list(record["terms"]) + [name for name in weights if name not in record["terms"]]


def active_terms(record: dict) -> dict[str, float]:
    """The record's terms that were on at the epoch's end (weight not 0) and not 0."""
    weights = record.get("weights") or {}
    return {name: value for name, value in record["terms"].items() if weights.get(name, 1.0) != 0 and value != 0}


def balance_judged(record: dict) -> bool:
    """Whether this epoch is the kind the balance is judged on: two or more terms active."""
    return "terms" in record and len(active_terms(record)) >= 2


def dominance(record: dict, ratio: float = DOMINANCE_RATIO) -> Dominance | None:
    """The dominating term of one epoch record, by the rule above, or None."""
    values = active_terms(record)
    ranked = sorted(values, key=lambda name: abs(values[name]), reverse=True)
    if len(ranked) < 2:
        return None
    top, rest = ranked[0], ranked[1:]
    if is_hard_label(top):
        return None
    cross_entropies = [name for name in rest if is_hard_label(name)]
    other = cross_entropies[0] if cross_entropies else rest[0]
    found = Dominance(top, other, values[top], values[other])
    return found if found.ratio > ratio else None


def dominance_warning(stage: str, record: dict) -> str | None:
    """One line naming the two terms, the ratio and the fix, or None when no term dominates."""
    found = dominance(record)
    if found is None:
        return None
    return (
        f"{stage} epoch {record['epoch']}: term '{found.term}' is {found.ratio:.0f}x '{found.other}' "
        f"({found.term_value:.3g} vs {found.other_value:.3g}, weighted epoch means): the student learns almost only "
        f"'{found.term}'. Lower its weight: distill.beta if it is distill.loss, else its distill.terms[i].weight. "
        "A paper's default (weight: null) suits the paper's models and their feature scales, not necessarily "
        "yours; terms within about 10x of each other are a safer start."
    )
