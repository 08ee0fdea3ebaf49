"""`potstill.load_model`: a trained model from a run, ready for raw inputs.

    student = potstill.load_model("runs/fmnist_kd_cnn_to_mlp")             # the run's final model
    teacher = potstill.load_model("runs/fmnist_kd_cnn_to_mlp", role="teacher")
    mine = potstill.load_model("runs/x/student/model.safetensors", model=MyNet())   # your own class

The model comes back in eval mode with the input preprocessing its weights file records
attached (potstill.preprocess), so `model(raw_inputs)` gives the accuracy the run reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill.compress.prune import example_input, pruning_record, replay
from potstill.engine.weights import load_weights
from potstill.errors import PotstillError
from potstill.models import MODELS, create_model
from potstill.preprocess import Preprocessing, attach


def load_model(path: str | Path, *, role: str | None = None, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a model a potstill run trained. `path`: a run folder (then `role` picks the model:
    teacher, baseline, student, refine, peer1, ...; default the run's final model) or a weights
    file. `model`: a module of the right architecture to load into (needed for models that are not
    in potstill's registry, e.g. your own class given to potstill.distill)."""
    path = Path(path)
    if not path.exists():
        raise PotstillError(f"load_model: {path} does not exist; give a run folder or a .safetensors file a run wrote")
    weights, row, summary = locate(path, role)
    if model is None:
        model = build_from_row(row, summary, weights)
    elif row and summary and not pruning_record(model):  # your own class, unpruned: the run's pruning redone on it
        model = replay(model, row.get("architecture", {}).get("prune"), example_input(summary["data"]["input_shape"]))
    recorded = load_weights(model, weights, row.get("role", "model") if row else "model", torch.device(device))
    attach(model, recorded or Preprocessing(source="the file records none"))
    return model.to(device).eval()


def locate(path: Path, role: str | None) -> tuple[Path, dict[str, Any] | None, dict[str, Any] | None]:
    """(weights file, its summary row or None, the run's summary or None)."""
    if path.is_file():
        run = path.parent.parent
        summary = read_summary(run)
        rows = summary.get("models", []) if summary else []
        row = next((r for r in rows if r.get("weights") and (run / r["weights"]).resolve() == path.resolve()), None)
        return path, row, summary
    summary = read_summary(path)
    if summary is None:
        raise PotstillError(f"load_model: {path} holds no summary.json, so it is not a finished potstill run; "
                            "give the run folder of a finished run, or a .safetensors file and model=")
    rows = {r["role"]: r for r in summary.get("models", [])}
    wanted = role or ("refine" if "refine" in rows else summary.get("final_role", "student"))
    if wanted not in rows:
        raise PotstillError(f"load_model: {path} has no model '{wanted}'; its models: {', '.join(rows)}")
    row = rows[wanted]
    if not row.get("weights"):
        raise PotstillError(f"load_model: the {wanted} of {path} has no weights file of its own (e.g. combined "
                            "teachers or early exits); load its stage file with model= instead")
    weights = Path(row["weights"])
    return (weights if weights.is_absolute() else path / weights), row, summary


def read_summary(run: Path) -> dict[str, Any] | None:
    file = run / "summary.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise PotstillError(f"load_model: {file} is damaged ({error})") from None


def build_from_row(row: dict[str, Any] | None, summary: dict[str, Any] | None, weights: Path) -> nn.Module:
    """The architecture a summary row names, for the run's input shape and classes."""
    architecture = (row or {}).get("architecture", {})
    name = architecture.get("name")
    if row is None or summary is None or name not in MODELS:
        what = f"'{name}' is not a registered model" if name else f"no run summary describes {weights}"
        raise PotstillError(f"load_model: {what}; pass the architecture: load_model(path, model=YourModel(...))")
    data = summary["data"]
    model = create_model(name, input_shape=data["input_shape"], num_classes=data["num_classes"], **architecture.get("args", {}))
    return replay(model, architecture.get("prune"), example_input(data["input_shape"]))  # a pruned model's shapes
