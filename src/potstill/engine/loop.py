"""The training loop: one function, read top to bottom.

Every stage of every scheme (teacher pre-training, baseline, distillation, refinement) runs
through `fit`. It sums the Task's named loss terms, steps the optimizer and the per-batch lr
schedule, evaluates after each epoch, logs one JSON line, and saves an atomic checkpoint from
which `resume` continues with bit-identical results on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from potstill.data import BatchLoader
from potstill.engine import distributed
from potstill.engine.checkpoint import guarded, load_training_state, save_tensors, save_training_state
from potstill.engine.guard import balance_judged, dominance_warning, term_names
from potstill.engine.optim import build_optimizer, build_scheduler
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.speed import Stopwatch, autocast
from potstill.engine.task import Task
from potstill.engine.tasks import Classification
from potstill.errors import PotstillError
from potstill.preprocess import preprocessing_of
from potstill.recipe import EngineSpec, TrainSpec

# called after each epoch's checkpoint: (stage name, epochs done, the epoch's record)
Callback = Callable[[str, int, dict], None]


@dataclass
class Stage:
    name: str  # also the stage's folder in the run: teacher, baseline, student, refine
    task: Task
    spec: TrainSpec
    loader: BatchLoader
    evaluate: Callable[[nn.Module], dict[str, float]]  # metrics of the task's model on held-out data
    seed: int = 0
    callbacks: list[Callback] = field(default_factory=list)
    engine: EngineSpec = field(default_factory=EngineSpec)
    stamp: dict = field(default_factory=dict)  # saved in every checkpoint header, e.g. the resolved recipe
    measures: Classification = field(default_factory=Classification)  # the data's task: what training counts


class NonFiniteLoss(PotstillError):
    pass


FRESH_START = (
    "a resumed run repeats the same steps and would fail again: start a new run (--run-dir) with a lower "
    "train.lr or a train.grad_clip, after checking the inputs for NaN/inf"
)


def fit(stage: Stage, run: RunDir, reporter: Reporter, resume: bool = False) -> nn.Module:
    """Train `stage.task` for `stage.spec.epochs` epochs; return the trained model."""
    folder = run.stage(stage.name)
    checkpoint = folder / "checkpoint.safetensors"
    module = stage.task.module
    groups = [{"params": params, "name": name} for name, params in stage.task.parameter_groups().items()]
    optimizer = build_optimizer(groups, stage.spec)
    scheduler = build_scheduler(optimizer, stage.spec, len(stage.loader))

    epochs_done = 0
    if resume and checkpoint.is_file():
        epochs_done = load_training_state(checkpoint, module, optimizer, scheduler, distributed.rank())["epochs_done"]
        reporter.message(f"{stage.name}: resuming after epoch {epochs_done} from {checkpoint}")
    else:
        distributed.seed_rank(stage.seed)
    if distributed.is_main():
        run.forget_after(stage.name, epochs_done)
    distributed.broadcast_module(module)  # under torchrun every rank starts from rank 0's weights
    # the balance of terms is judged once per stage (guard.py); a resumed stage that was judged stays quiet
    judged = any(balance_judged(record) for record in run.records() if record.get("stage") == stage.name)

    reporter.stage_start(stage.name, stage.spec.epochs * len(stage.loader), epochs_done * len(stage.loader))
    try:
        for epoch in range(epochs_done, stage.spec.epochs):
            record = train_epoch(stage, optimizer, scheduler, epoch, checkpoint, reporter)
            distributed.sync_buffers(module)  # every rank now holds the model rank 0 evaluates and saves
            check_finite_weights(stage.name, epoch, module, checkpoint)
            if not distributed.is_main():  # rank 0 alone evaluates, logs and saves
                distributed.random_states()  # this rank's part of gathering every rank's RNG state
                continue
            record.update(stage.evaluate(stage.task.model))
            for name, model in stage.task.reported_models().items():
                record.update({f"{name}_{key}": value for key, value in stage.evaluate(model).items()})
            warning = None
            if not judged and balance_judged(record):
                judged, warning = True, dominance_warning(stage.name, record)
            if warning is not None:
                record["warnings"] = [warning]
            run.log(record)
            header = {"stage": stage.name, "epochs_done": epoch + 1, **stage.stamp}
            rng = distributed.random_states()  # every rank's, for an exact resume
            guarded(lambda header=header, rng=rng: save_training_state(checkpoint, module, optimizer, scheduler, header, rng=rng), checkpoint)
            reporter.epoch_end(describe(record, stage.spec.epochs))
            if warning is not None:
                reporter.message(f"warning: {warning}")
            for callback in stage.callbacks:
                callback(stage.name, epoch + 1, record)
    finally:
        reporter.stage_end()
    if distributed.is_main():
        save_models(stage, folder)
    distributed.barrier()  # later stages (and other ranks) read what rank 0 saved
    return stage.task.model


def save_models(stage: Stage, folder) -> None:
    """The trained model, what the task exports beside it, and the whole module when it holds more."""
    module = stage.task.module
    model_path = folder / "model.safetensors"
    header = {"stage": stage.name, "epochs": stage.spec.epochs, **stage.stamp}
    # each weights file records its model's input preprocessing, applied again by whatever loads it
    model_header = header | {"preprocessing": preprocessing_of(stage.task.model).header()}
    guarded(lambda: save_tensors(model_path, stage.task.model.state_dict(), model_header), model_path)
    for name, exported in stage.task.exports().items():  # e.g. each peer's own weights file
        path = folder / f"{name}.safetensors"
        exported_header = header | {"preprocessing": preprocessing_of(exported).header()}
        guarded(lambda path=path, exported=exported, h=exported_header: save_tensors(path, exported.state_dict(), h), path)
    if module is not stage.task.model:  # adapters and loss state: saved with the run, not exported
        module_path = folder / "module.safetensors"
        guarded(lambda: save_tensors(module_path, module.state_dict(), header), module_path)


def train_epoch(stage: Stage, optimizer, scheduler, epoch: int, checkpoint, reporter: Reporter) -> dict:
    task, loader, spec = stage.task, stage.loader, stage.spec
    task.module.train()
    device = loader.device
    task.clock = clock = Stopwatch(device)
    # on a GPU, reading a loss back stalls the pipeline: check finiteness every few steps instead
    check_every = 1 if device.type == "cpu" else 25
    totals: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen, reported, start, result = 0, 0, time.perf_counter(), None
    for step, batch in enumerate(loader.batches(epoch)):
        with autocast(stage.engine, device):
            result = task.step(batch, progress=epoch + step / len(loader))
            loss = sum(result.terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        share = loader.share(step)  # under torchrun: this rank's part of the batch (1.0 when parts are equal)
        distributed.average_gradients(optimizer, share)
        if spec.grad_clip:
            for group in optimizer.param_groups:  # each model of the stage clipped on its own
                nn.utils.clip_grad_norm_(group["params"], spec.grad_clip)
        optimizer.step()
        scheduler.step()
        weight = share / distributed.world_size()  # summed over ranks, a part's mean counts as its share
        for name, term in result.terms.items():
            totals[name] = totals.get(name, 0.0) + term.detach().float() * weight
        if result.logits is not None:
            scored = result.scored if result.scored is not None else batch  # e.g. the student's own samples (gkd)
            hits, counted = stage.measures.step_counts(result.logits, scored)
            correct += hits
            seen += counted
        if (step + 1) % check_every == 0 or step + 1 == len(loader):
            value = float(loss.detach())
            if not distributed.everywhere(all(math.isfinite(float(total)) for total in totals.values())):
                raise non_finite(stage.name, epoch, step, check_every, result.terms, checkpoint)
            reporter.advance(f"loss {value:.4f}", steps=step + 1 - reported)
            reported = step + 1
    steps = len(loader)
    seconds = time.perf_counter() - start
    *summed, correct, seen = distributed.add_up([*totals.values(), correct, torch.tensor(seen)])
    totals, seen = dict(zip(totals, summed)), int(seen)
    record = {
        "stage": stage.name,
        "epoch": epoch + 1,
        "loss": sum(float(total) for total in totals.values()) / steps,
        "terms": {name: float(total) / steps for name, total in totals.items()},
        "weights": result.weights,
        "lr": optimizer.param_groups[0]["lr"],
        "train_acc": int(correct) / seen if seen else None,
        "time_s": round(seconds, 3),
        "step_ms": round(1000 * seconds / steps, 3),
    }
    for name, section in clock.read().items():  # e.g. teacher_ms: the teacher's share of a step
        record[f"{name}_ms"] = round(1000 * section / steps, 3)
    return record


def non_finite(stage: str, epoch: int, step: int, every: int, terms: dict[str, torch.Tensor], checkpoint) -> NonFiniteLoss:
    values = ", ".join(f"{name}={float(term.detach()):.4g}" for name, term in terms.items())
    where = f"step {step + 1}" if every == 1 else f"steps {step + 2 - every}..{step + 1}"
    return NonFiniteLoss(
        f"{stage}: the loss became non-finite at epoch {epoch + 1}, {where} (last step: {values}); training stopped and "
        f"{kept_words(epoch, checkpoint)}. {FRESH_START}"
    )


def check_finite_weights(stage: str, epoch: int, module: nn.Module, checkpoint) -> None:
    """Refuse to checkpoint NaN/inf weights: the last step of an epoch can overflow after the
    loss was checked, and a checkpoint must always be one a run can continue from."""
    bad = [name for name, tensor in module.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise NonFiniteLoss(
            f"{stage}: weights became non-finite during epoch {epoch + 1} ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
            f"training stopped and {kept_words(epoch, checkpoint)}. {FRESH_START}"
        )


def kept_words(epoch: int, checkpoint) -> str:
    if checkpoint.is_file():
        return f"the last good checkpoint (after epoch {epoch}) at {checkpoint} is intact"
    return "no checkpoint had been written yet"


LINE_WIDTH = 80  # an epoch line fits an 80-column terminal or log viewer; terms that do not go below it


def train_words(record: dict) -> str:
    return "" if record["train_acc"] is None else f"train {100 * record['train_acc']:.1f}% "


def term_words(record: dict) -> list[str]:
    """Each term's epoch mean, weighted, to 3 significant digits; a term whose weight is 0 at the
    epoch's end (before warm-up, after stop_epoch) as `kd off`. Empty for a one-term objective."""
    terms, weights, names = record["terms"], record.get("weights") or {}, term_names(record)
    if len(names) < 2:
        return []
    on = [name for name in names if name in terms and (terms[name] != 0 or weights.get(name, 1.0) != 0)]
    return [f"{name} {terms[name]:.3g}" if name in on else f"{name} off" for name in names]


def describe(record: dict, epochs: int) -> str:
    """The epoch's summary, e.g. `student  3/20 loss 0.412 (ce 0.213, kd 0.2) train 91.2% test 90.8% lr 0.0019 1.2s`:
    numbers to 3 significant digits. Terms that would take it past LINE_WIDTH go on indented lines below."""
    held_out = " ".join(
        f"{k.removesuffix('_acc')} {100 * v:.1f}%" if k.endswith("_acc") else f"{k.removesuffix('_ppl')} ppl {v:.4g}"
        for k, v in record.items() if (k.endswith("_acc") and k != "train_acc") or k.endswith("_ppl")
    )
    head = f"{record['stage']:<7} {record['epoch']:>{len(str(epochs))}}/{epochs} loss {record['loss']:.3g}"
    tail = f"{train_words(record)}{held_out} lr {record['lr']:.2g} {record['time_s']:.1f}s"
    words = term_words(record)
    line = f"{head} ({', '.join(words)}) {tail}" if words else f"{head} {tail}"
    if len(line) <= LINE_WIDTH:
        return line
    lines, current = [f"{head} {tail}"], "   "
    for word in words:
        if current.strip() and len(current) + len(word) + 3 > LINE_WIDTH:  # room for ", word,"
            lines.append(current + ",")
            current = "   "
        current += f", {word}" if current.strip() else f" {word}"
    return "\n".join([*lines, current])
