"""Run folders written by hand with known numbers, for the HTML report's tests (fast: no training).

    write_run(tmp_path / "run")                       teacher, student alone, distilled; 3 epochs each
    write_run(path, measured=False)                   an older summary: no class_acc / reliability
    write_run(path, finished=False)                   metrics.jsonl but no summary.json yet
    write_run(path, language_model=True)              perplexity rows and records
    write_seeds(tmp_path / "seeds", seeds=(0, 1))     seed<N>/ runs and seeds.json (report/seeds.py's aggregate)

`tables(html)` reads the page's tables back as lists of cell texts."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import yaml

from potstill.report.seeds import aggregate

TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled"}
EPOCHS = 3
# per role: test top-1, params, batch-1 latency ms, ECE, per-class top-1 (class 2 has no test sample)
MODELS = {
    "teacher": (0.90, 200_000, 0.50, 0.020, [0.9, 0.9, None, 0.9]),
    "baseline": (0.70, 20_000, 0.05, 0.060, [0.6, 0.8, None, 0.7]),
    "student": (0.75, 20_000, 0.06, 0.040, [0.7, 0.75, None, 0.8]),
}
RELIABILITY = {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "count": [0, 10, 20, 70],
               "confidence": [None, 0.4, 0.6, 0.9], "accuracy": [None, 0.3, 0.65, 0.85]}
PERPLEXITY = {"teacher": 20.0, "baseline": 80.0, "student": 60.0}


def recipe(temperature: float = 4.0, seed: int = 0) -> dict:
    return {"name": "handmade", "seed": seed, "data": {"name": "digits", "batch_size": 64},
            "teacher": {"model": {"name": "cnn", "args": {"channels": [8, 16]}}, "train": {"epochs": EPOCHS}},
            "student": {"name": "mlp", "args": {"hidden": [32]}}, "train": {"epochs": EPOCHS, "lr": 0.003},
            "distill": {"loss": "kd", "temperature": temperature, "alpha": 0.5, "beta": 0.5}}


def records(language_model: bool = False, shift: float = 0.0) -> list[dict]:
    """Epoch records of three stages; the student's objective has ce, kd and fitnet (weight 0, so
    absent from its terms, as the loop logs a term that is off)."""
    found = []
    for stage, start in (("teacher", 0.6), ("baseline", 0.4), ("student", 0.45)):
        for epoch in range(1, EPOCHS + 1):
            if stage == "student":
                terms, weights = {"ce": 0.5 / epoch, "kd": 4.0 / epoch}, {"ce": 0.5, "kd": 0.5, "fitnet": 0.0}
            else:
                terms, weights = {"ce": 2.0 / epoch}, {"ce": 1.0}
            record = {"stage": stage, "epoch": epoch, "loss": sum(terms.values()), "terms": terms, "weights": weights,
                      "lr": 0.001, "train_acc": 0.5, "time_s": 0.1, "test_acc": round(start + 0.1 * epoch + shift, 6)}
            if language_model:
                record["test_ppl"] = 200.0 / epoch
            found.append(record)
    return found


def model_row(role: str, measured: bool, language_model: bool, shift: float) -> dict:
    test_acc, params, latency, ece, class_acc = MODELS[role]
    row = {"role": role, "title": TITLES[role], "model": "Sequential", "test_acc": round(test_acc + shift, 6),
           "macro_f1": test_acc, "teacher_agreement": None if role == "teacher" else 0.8, "ece": ece, "params": params,
           "size_bytes": 4 * params, "latency_ms": 10 * latency, "latency_batch_size": 128,
           "latency_batch1_ms": latency, "train_time_s": 2.0}
    if language_model:
        row["test_ppl"] = PERPLEXITY[role]
    if measured:
        row["reliability"] = RELIABILITY
        if not language_model:
            row["class_acc"] = class_acc
    return row


def summary(measured: bool = True, language_model: bool = False, shift: float = 0.0) -> dict:
    rows = [model_row(role, measured, language_model, shift) for role in MODELS]
    result = {"accuracy_note": "top-1 on the test split after the last epoch (no checkpoint selection)",
              "data": {"dataset": "digits", "num_classes": 4}, "models": rows,
              "distillation_gain_points": round(100 * (rows[2]["test_acc"] - rows[1]["test_acc"]), 3),
              "compression": 10.0, "latency_warning": None, "scheme": "offline", "final_role": "student",
              "terms": {}, "warnings": []}
    if language_model:
        result["perplexity_change_pct"] = round(100 * (PERPLEXITY["student"] / PERPLEXITY["baseline"] - 1), 3)
    return result


def write_run(folder: Path, *, temperature: float = 4.0, seed: int = 0, measured: bool = True, finished: bool = True,
              language_model: bool = False, shift: float = 0.0) -> Path:
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe(temperature, seed)))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(language_model, shift)))
    if finished:
        (folder / "summary.json").write_text(json.dumps(summary(measured, language_model, shift), indent=2))
    return folder


def write_seeds(folder: Path, seeds: tuple[int, ...] = (0, 1)) -> Path:
    summaries = {}
    for seed in seeds:
        run = write_run(folder / f"seed{seed}", seed=seed, shift=0.01 * seed)
        summaries[seed] = json.loads((run / "summary.json").read_text())
    (folder / "seeds.json").write_text(json.dumps(aggregate(summaries), indent=2))
    return folder


class TableReader(HTMLParser):
    """Every <table> of a page as a list of rows, each a list of its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables(html: str) -> list[list[list[str]]]:
    reader = TableReader()
    reader.feed(html)
    return reader.tables
