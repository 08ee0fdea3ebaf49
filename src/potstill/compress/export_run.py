"""`potstill export RUN`: every model of a finished run as ONNX (and int8), checked and timed.

For each model the run's summary lists (teacher, student alone, distilled, ...):
1. export to RUN/export/<role>.onnx (dynamic batch) and, with int8, RUN/export/<role>.int8.onnx
   (ONNX Runtime quantization, activation ranges calibrated on training batches);
2. run the whole test split through ONNX Runtime and PyTorch: the largest absolute difference of
   the logits, top-1 agreement with PyTorch, and test accuracy of each file;
3. time every file, and the PyTorch model, in the same interleaved rounds at batch 1 and 32:
   p50 and p95 in milliseconds on the same threads.
Results go to RUN/export/export.json and into summary.json's rows ("onnx", "int8", "pytorch"),
each written atomically: a failed export leaves the summary as it was.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from potstill import config
from potstill.compress.onnx_file import INT8_MODES, OnnxModel, export_onnx, int8_mode, int8_operators, quantize_int8, require
from potstill.data.loader import BatchLoader
from potstill.engine.checkpoint import atomic_write
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.model_io import call_model, model_inputs
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.report.latency import WARMUP_ROUNDS, time_calls
from potstill.run_models import saved_models

CALIBRATION_BATCHES = 8  # x data.batch_size training samples set the int8 activation ranges
AGREEMENT_FLOOR = 0.9  # an int8 file agreeing with its fp32 model on less top-1 than this is flagged


def export_run(run: str | Path, *, int8: bool = False, mode: str = "auto", roles: list[str] | None = None,
               out: str | Path | None = None, batch_sizes: tuple[int, ...] = (1, 32), repeats: int = 50,
               reporter: Reporter | None = None) -> dict[str, Any]:
    """Export, check and time a finished run's models (see the module docstring); returns what
    export.json holds. `roles`: only these models (default all with a weights file)."""
    if mode not in INT8_MODES:
        raise PotstillError(f"--int8-mode {mode}: use one of {', '.join(INT8_MODES)}")
    if repeats < 5:
        raise PotstillError(f"repeats {repeats}: p95 needs at least 5 timed rounds (default 50)")
    require("onnxruntime")
    reporter = reporter or Reporter(quiet=True)
    runner = open_run(run)
    if runner.bench.splits.task != "classification":
        raise PotstillError(f"export: {run} is a {runner.bench.splits.task} run; ONNX export covers classifiers (image and "
                            "text) so far: a language model's generation loop with its key-value cache is not exported")
    folder = Path(out) if out else runner.run.path / "export"
    models = chosen_models(runner, roles)
    results: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    timed: list[tuple[str, Any]] = []
    for role, model in models:
        reporter.message(f"export {role}: ONNX")
        onnx = OnnxModel(export_onnx(model, runner.bench.splits.example_batch(4, torch.Generator().manual_seed(0)),
                                     folder / f"{role}.onnx", what=role))
        reference = test_references(model, runner)  # PyTorch's logits, computed once for every file of this model
        results[role] = {"onnx": {"file": onnx.path.name, "size_bytes": onnx.path.stat().st_size,
                                  **agreement(onnx, reference)}}
        timed += [(f"{role}/pytorch", lambda batch, model=model: call(model, batch)),
                  (f"{role}/onnx", onnx)]
        if int8:
            chosen = int8_mode(onnx.path, mode)
            reporter.message(f"export {role}: int8 ({chosen})")
            quantized = OnnxModel(quantize_int8(onnx.path, folder / f"{role}.int8.onnx",
                                                calibration(runner) if chosen == "static" else None, chosen))
            operators = int8_operators(quantized)
            if not operators:
                raise PotstillError(f"export: ONNX Runtime quantized none of {role}'s operators ({', '.join(sorted(onnx.operators()))}); "
                                    "int8 needs Conv, MatMul or Gemm layers")
            results[role]["int8"] = {"file": quantized.path.name, "size_bytes": quantized.path.stat().st_size,
                                     "mode": chosen, "int8_operators": operators, **agreement(quantized, reference)}
            warnings += int8_warning(role, results[role], reporter)
            timed.append((f"{role}/int8", quantized))
    reporter.message(f"export: timing {len(timed)} models at batch {', '.join(map(str, batch_sizes))}, interleaved")
    for name, fields in time_runtimes(timed, runner.bench.splits.example_batch, batch_sizes, repeats).items():
        role, runtime = name.split("/")
        results[role].setdefault(runtime, {}).update(fields)
    record = {
        "run": str(runner.run.path),
        "runtime": f"onnxruntime {require('onnxruntime').__version__}, CPUExecutionProvider",
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batch_sizes": list(batch_sizes),
        "repeats": repeats,
        "accuracy_note": "test split, whole; agreement = top-1 equal to the PyTorch model's",
        "models": results,
        "warnings": warnings,
    }
    atomic_write(folder / "export.json", json.dumps(record, indent=2) + "\n")
    merge_into_summary(runner.run.path / "summary.json", record)
    return record


def int8_warning(role: str, fields: dict[str, Any], reporter: Reporter) -> list[str]:
    """A line when the int8 file clearly disagrees with the model it came from."""
    fp32, int8 = fields["onnx"], fields["int8"]
    if int8["agreement"] >= AGREEMENT_FLOOR:
        return []
    line = (f"{role}: the int8 file agrees with PyTorch on only {100 * int8['agreement']:.1f}% of the test split "
            f"(top-1 {100 * int8['test_acc']:.2f}% vs {100 * fp32['test_acc']:.2f}%); "
            + ("static activation ranges clip this model's outliers: try --int8-mode dynamic" if int8["mode"] == "static"
               else "this model does not survive int8: keep fp32, or train it quantization-aware (student.quantize)"))
    reporter.message(f"warning: {line}")
    return [line]


def open_run(run: str | Path) -> Runner:
    path = Path(run)
    if not (path / "recipe.yaml").is_file():
        raise PotstillError(f"export: {path} holds no recipe.yaml; give a run folder made by potstill train/distill")
    if not (path / "summary.json").is_file():
        raise PotstillError(f"export: {path} has no summary.json, so it did not finish; finish it with "
                            f"potstill distill --resume {path}")
    recipe = config.load(path / "recipe.yaml", Recipe)
    return Runner(recipe, RunDir(path), Reporter(quiet=True), resume=True)


def chosen_models(runner: Runner, roles: list[str] | None) -> list[tuple[str, nn.Module]]:
    found = {role: model for role, _, model, _ in saved_models(runner) if model is not None}
    missing = [role for role in roles or [] if role not in found]
    if missing:
        raise PotstillError(f"export: {runner.run.path} has no exportable model {', '.join(missing)}; its models: "
                            f"{', '.join(found) or 'none'}")
    chosen = [(role, found[role].eval()) for role in (roles or list(found))]
    if not chosen:
        raise PotstillError(f"export: {runner.run.path} holds no model with its own weights file")
    return chosen


def call(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return call_model(model, batch)


Reference = list[tuple[dict[str, torch.Tensor], np.ndarray, torch.Tensor | None]]  # (inputs, PyTorch logits, targets)


def test_references(model: nn.Module, runner: Runner) -> Reference:
    """The PyTorch model's logits on the whole test split, batch by batch."""
    return references(model, ((model_inputs(batch), batch["target"]) for batch in runner.bench.eval_loader("test").batches()))


def references(model: nn.Module, batches: Iterable[tuple[dict[str, Any], Any]]) -> Reference:
    found = []
    for inputs, targets in batches:
        inputs = {name: torch.as_tensor(value).cpu() for name, value in inputs.items()}
        found.append((inputs, call(model, inputs).float().numpy(), targets))
    return found


def compare_outputs(model: nn.Module, onnx: OnnxModel,
                    batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor | None]]) -> dict[str, Any]:
    """An ONNX file against its PyTorch model over (inputs, targets or None) batches: the largest
    absolute logit difference, top-1 agreement and (with targets) accuracy of the file."""
    return agreement(onnx, references(model, batches))


def agreement(onnx: OnnxModel, reference: Reference) -> dict[str, Any]:
    """compare_outputs with the PyTorch logits already computed."""
    largest, agree, correct, total, labelled = 0.0, 0, 0, 0, True
    for inputs, expected, targets in reference:
        logits = onnx(inputs)
        if logits.shape != expected.shape:
            raise PotstillError(f"export: {onnx.path.name} returns shape {logits.shape}, PyTorch {expected.shape}")
        largest = max(largest, float(np.abs(logits - expected).max()))
        predicted = logits.argmax(-1)
        agree += int((predicted == expected.argmax(-1)).sum())
        labelled = labelled and targets is not None
        correct += int((predicted == np.asarray(torch.as_tensor(targets).cpu())).sum()) if labelled else 0
        total += len(predicted)
    if total == 0:
        raise PotstillError("export: no batches to compare the ONNX file on")
    result = {"max_abs_diff": largest, "agreement": agree / total, "samples": total}
    return result | ({"test_acc": correct / total} if labelled else {})


def calibration(runner: Runner) -> list[dict[str, torch.Tensor]]:
    """The first training batches, unshuffled and unaugmented: activation ranges for int8."""
    loader = BatchLoader(runner.bench.splits.train, runner.recipe.data.batch_size, device=torch.device("cpu"))
    batches = []
    for batch in loader.batches():
        batches.append(model_inputs(batch))
        if len(batches) == CALIBRATION_BATCHES:
            break
    return batches


def time_runtimes(calls: list[tuple[str, Any]], inputs, batch_sizes: tuple[int, ...] = (1, 32),
                  repeats: int = 50) -> dict[str, dict[str, float]]:
    """p50 and p95 milliseconds of each callable (a PyTorch model, an OnnxModel) on the same
    batches, timed in interleaved rounds. `inputs`: an input shape (C, H, W) or a function
    (batch size, torch.Generator) -> a batch."""
    samples = time_calls(calls, inputs, batch_sizes, repeats, WARMUP_ROUNDS)
    fields: dict[str, dict[str, float]] = {}
    for name, by_size in samples.items():
        for size, values in by_size.items():
            p50, p95 = np.percentile(np.asarray(values), [50, 95])
            fields.setdefault(name, {}).update({f"latency_b{size}_p50_ms": round(float(p50), 4),
                                                f"latency_b{size}_p95_ms": round(float(p95), 4)})
    return fields


def merge_into_summary(file: Path, record: dict[str, Any]) -> None:
    """Each exported model's row gains "onnx" (and "int8", "pytorch"): one atomic rewrite."""
    summary = json.loads(file.read_text())
    for row in summary.get("models", []):
        for runtime, fields in record["models"].get(row.get("role"), {}).items():
            row[runtime] = fields
    summary["export"] = {key: record[key] for key in ("runtime", "threads", "machine", "batch_sizes", "repeats")}
    atomic_write(file, json.dumps(summary, indent=2) + "\n")
