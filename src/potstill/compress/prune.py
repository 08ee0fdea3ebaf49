"""Pruning a trained model before distilling into it: structured (channels and neurons removed, so
parameters and latency drop) or unstructured (weights zeroed, shapes kept).

    pruned, report = prune_model(model, 0.5, example_inputs=images[:2])   # the caller's model is not changed
    print(report["line"])        # structured 50%: 824,650 -> 206,... parameters (block1.conv 32->16, ...)

Structured pruning is torch-pruning's (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023, arXiv:2301.12900): a dependency graph traced from one forward pass removes the same
channels from every layer that reads them (a conv's BatchNorm, the Linear reading its flattened
map), ranked by the L2 norm of each group's weights; every prunable layer loses `amount` of its
outputs, the classifier keeps its classes. The removed indices (the pruning history) are recorded
on the model and in the run's summary, so `load_model` replays them on a fresh registry model
before loading the weights. Unstructured pruning zeroes the `amount` smallest-magnitude weights of
each prunable layer (torch.nn.utils.prune's L1 criterion, made permanent) and masks their
gradients, so fine-tuning keeps them zero; dense kernels run as fast as before.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.nn.utils import prune as torch_prune

from potstill.errors import PotstillError
from potstill.models import create_model
from potstill.preprocess import attach, preprocessing_of
from potstill.recipe import PruneSpec, Recipe

METHODS = ("structured", "unstructured")
RECORD = "_potstill_pruned"  # the model attribute holding what was pruned (copied with the model)
MASK = "pruning_mask"  # non-persistent buffer of an unstructured-pruned layer: saved files keep plain names
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prune_model(model: nn.Module, amount: float, method: str = "structured", example_inputs: torch.Tensor | None = None,
                ignored: list[nn.Module | str] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned copy of `model` (which is left unchanged) and a report: method, amount, parameters
    before and after, the layers changed, the pruning history (structured) or the zero fraction
    (unstructured), and a one-line summary. `example_inputs`: one small batch (structured pruning
    traces it; it also finds the classifier, the layer giving the model's outputs, never pruned).
    `ignored`: layers (modules or names) to leave whole, in place of the classifier found."""
    pruned = copy.deepcopy(model)
    return pruned, prune_in_place(pruned, amount, method, example_inputs, ignored)


def prune_in_place(model: nn.Module, amount: float, method: str = "structured", example_inputs: torch.Tensor | None = None,
                   ignored: list[nn.Module | str] | None = None) -> dict[str, Any]:
    """prune_model without the copy."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1:
        raise PotstillError(f"prune amount {amount!r}: give a fraction strictly between 0 and 1, e.g. 0.5")
    if method not in METHODS:
        raise PotstillError(f"prune method {method!r} is unknown; use structured or unstructured")
    if method == "structured" and example_inputs is None:
        raise PotstillError("structured pruning traces the model: pass example_inputs, one small batch of its inputs")
    names = {module: name for name, module in model.named_modules()}
    ignored_layers = resolve_ignored(model, ignored) if ignored is not None else [classifier(model, example_inputs)]
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LAYERS) and module not in ignored_layers]
    if not layers:
        whole = ", ".join(f"'{names[module]}'" for module in ignored_layers)
        raise PotstillError(f"cannot prune {type(model).__name__}: it has no Conv or Linear layer besides {whole} "
                            "(the classifier keeps its outputs); there is nothing to remove")
    before = count(model)
    widths = {name: outputs(module) for name, module in layers}
    training = model.training
    model.eval()  # BatchNorm and dropout fixed while tracing
    try:
        if method == "structured":
            history = prune_structured(model, amount, example_inputs, ignored_layers)
            record: dict[str, Any] = {"method": method, "amount": amount, "history": history}
        else:
            zero_smallest(layers, amount)
            record = {"method": method, "amount": amount}
        if example_inputs is not None:
            check_forward(model, example_inputs)
    finally:
        model.train(training)
    setattr(model, RECORD, record)
    changed = [(name, width, outputs(module)) for name, module in layers if (width := widths[name]) != outputs(module)]
    if method == "structured" and not changed:
        raise PotstillError(f"prune amount {amount} removes no channel or neuron: every prunable layer is too narrow "
                            f"(widest {max(widths.values())}) to lose one at this amount; use a larger amount or a wider model")
    report = {**record, "params_before": before, "params_after": count(model), "layers": changed}
    if method == "unstructured":
        report["sparsity"] = sparsity(model)
    report["line"] = describe(report)
    return report


def prune_structured(model: nn.Module, amount: float, example_inputs: torch.Tensor, ignored: list[nn.Module]) -> list:
    """torch-pruning's MetaPruner, one step at `amount` per layer; returns the history as JSON lists."""
    tp = torch_pruning()
    try:
        pruner = tp.pruner.MetaPruner(model, example_inputs, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=amount, ignored_layers=ignored)
        pruner.step()
    except Exception as error:  # the tracer's own errors: a layer or operation it cannot follow
        raise PotstillError(f"torch-pruning cannot prune {type(model).__name__}: {type(error).__name__}: {error}; "
                            "add the layer it names to ignored, or prune with method unstructured") from error
    return [[name, bool(outgoing), [int(index) for index in indices]] for name, outgoing, indices in pruner.pruning_history()]


def zero_smallest(layers: list[tuple[str, nn.Module]], amount: float) -> None:
    """Per layer: zero the round(amount x n) smallest |weights| (torch's L1 criterion, made
    permanent) and keep them zero through training."""
    for _, module in layers:
        torch_prune.l1_unstructured(module, "weight", amount=amount)
        mask = module.weight_mask.detach().clone()
        torch_prune.remove(module, "weight")
        keep_zeros(module, mask)


def keep_zeros(module: nn.Module, mask: torch.Tensor) -> None:
    module.register_buffer(MASK, mask, persistent=False)
    module.register_forward_pre_hook(KeepZeros())


class KeepZeros:
    """Forward pre-hook of an unstructured-pruned layer: masks its weight's gradient, so no optimizer
    moves a pruned weight off zero (SGD, Adam and AdamW leave a zero weight with zero gradient at
    zero). Registered on the parameter at the first forward with gradients, and again on a copy
    (deepcopy does not copy tensor hooks)."""

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        weight = module.weight
        hooks = (weight._backward_hooks or {}).values()
        if torch.is_grad_enabled() and weight.requires_grad and not any(isinstance(hook, MaskGradient) for hook in hooks):
            weight.register_hook(MaskGradient(module))


class MaskGradient:
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient * getattr(self.module, MASK)


def sparsity(model: nn.Module) -> float:
    """The zero fraction of the unstructured-pruned layers' weights (0.0 when no layer is)."""
    masked = [module.weight for module in model.modules() if hasattr(module, MASK)]
    total = sum(weight.numel() for weight in masked)
    return round(sum(int((weight == 0).sum()) for weight in masked) / total, 6) if total else 0.0


def replay(model: nn.Module, record: dict[str, Any] | None, example_inputs: torch.Tensor) -> nn.Module:
    """A fresh model given the shapes a recorded structured pruning left (before loading its
    weights): the history replayed with torch-pruning's dependency graph. Unstructured pruning kept
    the shapes, so there is nothing to redo."""
    if not record:
        return model
    if record.get("method") == "structured":
        tp = torch_pruning()
        training = model.training
        try:
            graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs)
            graph.load_pruning_history([(name, outgoing, list(indices)) for name, outgoing, indices in record["history"]])
        except Exception as error:
            raise PotstillError(f"the recorded pruning does not fit {type(model).__name__} ({type(error).__name__}: "
                                f"{error}); load it with the architecture it was pruned from") from error
        finally:
            model.train(training)
    setattr(model, RECORD, dict(record))
    return model


def pruning_record(model: nn.Module) -> dict[str, Any]:
    """{"prune": what was pruned} for a summary row's architecture, {} for an unpruned model."""
    record = getattr(model, RECORD, None)
    return {"prune": record} if record else {}


def prune_student(student: nn.Module, source: nn.Module, spec: PruneSpec, example_inputs: torch.Tensor,
                  what: str = "the teacher", keep_preprocessing: bool = False) -> str:
    """student.prune: the student takes `source`'s weights (same architecture) and input
    preprocessing (unless the recipe gave its own: `keep_preprocessing`), then is pruned in place.
    Returns the line to print."""
    mismatch = differences(shapes(student.state_dict()), shapes(source.state_dict()))
    if mismatch:
        raise architecture_error(what, mismatch)
    with torch.no_grad():
        student.load_state_dict(source.state_dict())
    if not keep_preprocessing:
        attach(student, preprocessing_of(source))
    return prune_in_place(student, spec.amount, spec.method, example_inputs)["line"]


def check_prune_source(recipe: Recipe, source_file: Path | None, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Before anything is written: the pruning source has the student's architecture (the recipe's
    teacher, compared on the meta device, or the file's tensor shapes)."""
    spec = recipe.student

    def build(name: str, args: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):
            return shapes(create_model(name, input_shape=input_shape, num_classes=num_classes, **args).state_dict())

    student = build(spec.name, spec.args)
    if source_file is None:
        if recipe.teacher is None:
            raise PotstillError("student.prune.source: teacher, but the recipe has no teacher section; add one, or "
                                "give a .safetensors file or run folder of the student's architecture")
        teacher = recipe.teacher.model
        mismatch = differences(student, build(teacher.name, teacher.args))
        if mismatch:
            raise architecture_error(f"the teacher ({teacher.name} {json.dumps(teacher.args)})", mismatch)
        return
    with safe_open(str(source_file), framework="pt") as reader:
        mismatch = differences(student, {name: tuple(reader.get_slice(name).get_shape()) for name in reader.keys()})
    if mismatch:
        raise architecture_error(str(source_file), mismatch)


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def differences(student: dict[str, tuple[int, ...]], source: dict[str, tuple[int, ...]]) -> list[str]:
    found = [f"{name} {shape} vs {source.get(name, 'missing')}" for name, shape in student.items() if source.get(name) != shape]
    return found + [f"{name} missing in the student" for name in source if name not in student]


def architecture_error(what: str, mismatch: list[str]) -> PotstillError:
    shown = "; ".join(mismatch[:3]) + (f"; and {len(mismatch) - 3} more" if len(mismatch) > 3 else "")
    return PotstillError(f"student.prune.source: {what} is not the student's architecture (student vs source: {shown}); "
                         "pruning starts from trained weights of the same architecture: give the student the source's "
                         "model name and args (pruning makes it smaller)")


def classifier(model: nn.Module, example_inputs: torch.Tensor | None) -> nn.Module:
    """The last Conv/Linear layer giving the model's outputs (the last such layer without inputs)."""
    candidates = [module for module in model.modules() if isinstance(module, LAYERS)]
    if example_inputs is not None:
        training = model.training
        with torch.no_grad():
            classes = model.eval()(example_inputs).shape[-1]
        model.train(training)
        candidates = [module for module in candidates if outputs(module) == classes]
    if not candidates:
        raise PotstillError(f"cannot find the classifier of {type(model).__name__} (no Conv or Linear layer gives its "
                            "outputs); pass ignored=[the output layer]")
    return candidates[-1]


def resolve_ignored(model: nn.Module, ignored: list[nn.Module | str]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    unknown = [name for name in ignored if isinstance(name, str) and name not in modules]
    if unknown:
        raise PotstillError(f"ignored: {', '.join(unknown)} not among the model's modules (`potstill list taps` names them)")
    return [modules[item] if isinstance(item, str) else item for item in ignored]


def check_forward(model: nn.Module, example_inputs: torch.Tensor) -> None:
    """The pruned model still runs; else name the layer where it fails."""
    entered: list[str] = []
    handles = [module.register_forward_pre_hook(lambda module, inputs, name=name: entered.append(name))
               for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(example_inputs)
    except (RuntimeError, ValueError, IndexError) as error:
        where = f" at layer '{entered[-1]}'" if entered else ""
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise PotstillError(f"the pruned {type(model).__name__} fails{where}: {first}; torch-pruning could not follow "
                            "how that layer reads its inputs (e.g. a reshape to a fixed size in forward): pass the layers "
                            "before it in ignored, or prune with method unstructured") from error
    finally:
        for handle in handles:
            handle.remove()


def outputs(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def describe(report: dict[str, Any]) -> str:
    head = f"{report['method']} {100 * report['amount']:g}%: {report['params_before']:,} -> {report['params_after']:,} parameters"
    if report["method"] == "unstructured":
        return f"{head}, {100 * report['sparsity']:.1f}% of the prunable weights zero (same shapes: no dense-kernel speed-up)"
    shown = ", ".join(f"{name} {before}->{after}" for name, before, after in report["layers"][:6])
    return f"{head} ({shown}{', ...' if len(report['layers']) > 6 else ''})"


def example_input(input_shape: tuple[int, ...] | list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """What tracing needs of the inputs: their shape (two zero images)."""
    return torch.zeros(2, *input_shape, device=device)


def torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise PotstillError("structured pruning needs torch-pruning: pip install -e '.[compress]'") from None
    return torch_pruning
