"""Learning without Forgetting: tasks arrive one after another, and the model as it was before each
task is the teacher on the new task's data (Li & Hoiem, "Learning without Forgetting", ECCV 2016,
arXiv 1606.09282; TPAMI 2017). Old outputs are preserved without old data:

    L = alpha * CE(new task's head, y) + beta * sum_{old heads g} T^2 KL( softmax(z_prev[g]/T) || softmax(z[g]/T) )

The recipe's distill section sets it: loss kd (the only one: LwF's term is KD on the old heads),
temperature T (the paper: 2), alpha (the paper: 1) and beta with its schedule. The paper's L_old is
the softened cross-entropy without kd's T^2 factor, so its lambda_o = 1 is beta = 1 / T^2 = 0.25.
Settings (schemes/lifelong_tasks.py): `task`, one head per task (the paper's multi-head network;
here each task's rows of the one classifier), evaluated within the sample's task; `class`, one
growing head over every class seen so far, evaluated by its argmax, the LwF term over all old
classes at once (the class-incremental LwF of iCaRL's comparison, known to forget much more).

Optional replay (`replay_per_class` > 0): after each task, m exemplars per class of that task,
chosen by iCaRL's herding on the penultimate features (Rebuffi, Kolesnikov, Sperl & Lampert,
"iCaRL: Incremental Classifier and Representation Learning", CVPR 2017, arXiv 1611.07725), join
the next tasks' batches; they get both the cross-entropy and the LwF term. Classification is
still the network's output (not iCaRL's nearest-mean-of-exemplars).

Stages: task1 .. taskN (the student, LwF); finetune_task2 .. (plain fine-tuning from task1, the
lower bound; `finetune`); joint_task2 .. (at each stage, the previous joint model trained on every
task seen so far, the data LwF is denied: the upper bound, the report's `baseline`; distill.baseline).
task1 is the same for all three. Every stage trains train.epochs epochs. After each stage every
arm's accuracy on each seen task fills the matrix R, with average accuracy and forgetting
(Chaudhry et al. 2018), printed and written to summary.json under `lifelong`. The paper's warm-up
(training the new head alone first) is not done.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from potstill.data.loader import Augment, Batch, BatchLoader
from potstill.engine.metrics import predict
from potstill.engine.task import StepResult, Task, WeightedTerm
from potstill.errors import PotstillError
from potstill.knowledge.response.kd import KD
from potstill.model_io import model_inputs
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.lifelong_tasks import (
    Setting,
    allowed_classes,
    average_accuracy,
    forgetting,
    herding,
    lwf_distillation,
    masked_cross_entropy,
    old_groups,
    split_tasks,
    task_accuracies,
)
from potstill.schemes.offline import freeze, frozen_forward
from potstill.taps import Taps, dry_run, embedding_tap

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


class LifelongStage(Task):
    """One task of the sequence: cross-entropy on each sample's allowed outputs, plus the LwF term
    against `previous` (the frozen model before this task; None: plain fine-tuning or task 1)."""

    def __init__(self, model: nn.Module, previous: nn.Module | None, allowed: torch.Tensor, groups: list[list[int]],
                 term: WeightedTerm, alpha: float = 1.0, label_smoothing: float = 0.0) -> None:
        self.module = model
        self.previous = freeze(previous) if previous is not None else None
        self.allowed = allowed  # (K, K) bool, row c: the outputs a sample of class c is trained on
        self.groups, self.term = groups, term  # the old heads; the recipe's kd term (T, beta, schedule)
        self.alpha, self.label_smoothing = alpha, label_smoothing

    @property
    def model(self) -> nn.Module:
        return self.module

    def step(self, batch: Batch, progress: float) -> StepResult:
        logits = self.run(self.module, batch)  # (B, K)
        allowed = self.allowed.to(logits.device)[batch["target"]]  # (B, K)
        terms = {"ce": self.alpha * masked_cross_entropy(logits, batch["target"], allowed, self.label_smoothing)}
        weights = {"ce": self.alpha}
        if self.previous is not None and self.groups:
            weight = weights[self.term.name] = self.term.weight_at(progress)
            if weight > 0:
                previous_logits, _ = frozen_forward(self.previous, None, batch)
                distilled = lwf_distillation(logits, previous_logits, self.groups, self.term.loss.temperature)
                terms[self.term.name] = weight * distilled
        # accuracy over the allowed outputs, as evaluation counts it
        return StepResult(terms, logits.detach().masked_fill(~allowed, float("-inf")), weights)


@SCHEMES.register("lwf")
class LearningWithoutForgetting(Scheme):
    """Lifelong learning: each task distils the model as it was before it (LwF), vs fine-tuning and joint training."""

    teacher = "none"  # the previous task's model is the teacher
    cache = False  # the teacher changes with every task
    single_process = "its stages train on per-task subsets of the training split that it does not shard yet"
    final_role = "student"

    def __init__(self, tasks: list[list[int]] | None = None, num_tasks: int = 5, setting: Setting = "task",
                 replay_per_class: int = 0, finetune: bool = True) -> None:
        """tasks: class ids per task, in training order (default: the classes in order, cut into num_tasks);
        setting: task (a head per task) or class (one growing head); replay_per_class: exemplars kept per
        old class by herding (0: pure LwF); finetune: also train plain fine-tuning (the lower bound)."""
        if replay_per_class < 0:
            raise PotstillError(f"scheme.args.replay_per_class must be >= 0 (exemplars kept per old class), got "
                                f"{replay_per_class}; 0 is pure LwF")
        if tasks is not None:
            split_tasks(None, tasks, num_tasks, setting)  # what needs no class count; run() checks the rest
        elif num_tasks < 2:
            raise PotstillError(f"scheme.args.num_tasks must be at least 2, got {num_tasks}; lifelong learning needs two tasks")
        self.task_spec, self.num_tasks, self.setting = tasks, num_tasks, setting
        self.replay_per_class, self.finetune = replay_per_class, finetune
        self.distill: dict[str, Any] = {}
        self.matrices: dict[str, list[list[float]]] = {}
        self.tasks: list[list[int]] = []

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if len(terms) != 1 or not isinstance(terms[0].loss, KD) or "init" in terms[0].stages:
            raise PotstillError(
                f"distill: scheme 'lwf' keeps the old heads' outputs with one kd term (LwF's loss: T = distill.temperature, "
                f"lambda_o = distill.beta), got {', '.join(term.name for term in terms) or 'none'}; set distill.loss: kd "
                "and remove distill.terms"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe, splits = runner.recipe, runner.bench.splits
        if splits.task != "classification" or splits.modality != "image":
            raise PotstillError(f"scheme 'lwf' splits image classes into tasks; {splits.name} is {splits.task} "
                                f"{splits.modality} data")
        self.tasks = split_tasks(splits.num_classes, self.task_spec, self.num_tasks, self.setting)
        student_init = student if student is not None else runner.student()
        term = runner.terms()[0]  # the recipe's kd: T, beta and its schedule (check() made sure)
        self.distill = {"temperature": term.loss.temperature, "beta": term.weight, "alpha": recipe.distill.alpha}
        first = runner.stage("task1", self.stage_task(runner, student_init, None, 0, term), recipe.train,
                             evaluate=self.evaluator(runner, 0), loader=self.loader(runner, self.indices(runner, self.tasks[0])))
        first_row = self.row(runner, first, 0)
        replay = f" + replay {self.replay_per_class}/class" if self.replay_per_class else ""
        arms = [("joint_", recipe.distill.baseline, "baseline", "joint training (every task's data)"),
                ("finetune_", self.finetune, "finetune", "fine-tuning (no old outputs kept)"),
                ("", True, "student", f"LwF{replay}")]  # LwF last: the run's last stage is its last task
        models = []
        for prefix, wanted, role, title in arms:
            if wanted:
                self.matrices[prefix or "lwf"] = [first_row]  # task 1 is the same for every arm
                model = self.train_arm(runner, prefix, copy.deepcopy(first), term)
                weights = runner.run.stage(f"{prefix}task{len(self.tasks)}") / "model.safetensors"
                runner.describe_role(role, title, recipe.student, weights=weights)
                models.append((role, model))
        for line in self.lines():
            runner.reporter.message(line)
        return models

    def train_arm(self, runner: Workshop, prefix: str, model: nn.Module, term: WeightedTerm) -> nn.Module:
        """Tasks 2..N of one arm ("": LwF, "finetune_", "joint_") from the task-1 model, each stage
        measured on every task seen so far."""
        distil, joint = prefix == "", prefix == "joint_"
        replay = distil and self.replay_per_class > 0
        exemplars = self.exemplars(runner, model, self.tasks[0]) if replay else []
        for stage in range(1, len(self.tasks)):
            classes = [label for part in self.tasks[: stage + 1] for label in part] if joint else self.tasks[stage]
            task = self.stage_task(runner, model, copy.deepcopy(model) if distil else None, stage, term)
            model = runner.stage(f"{prefix}task{stage + 1}", task, runner.recipe.train, evaluate=self.evaluator(runner, stage),
                                 loader=self.loader(runner, self.indices(runner, classes) + exemplars))
            self.matrices[prefix or "lwf"].append(self.row(runner, model, stage))
            if replay and stage + 1 < len(self.tasks):
                exemplars += self.exemplars(runner, model, self.tasks[stage])
        return model

    def stage_task(self, runner: Workshop, model: nn.Module, previous: nn.Module | None, stage: int,
                   term: WeightedTerm) -> LifelongStage:
        recipe = runner.recipe
        allowed = allowed_classes(self.tasks, stage, self.setting, runner.bench.splits.num_classes)
        return LifelongStage(model, previous, allowed, old_groups(self.tasks, stage, self.setting), term,
                             recipe.distill.alpha, recipe.train.label_smoothing)

    def indices(self, runner: Workshop, classes: list[int]) -> list[int]:
        """Training samples whose label is one of `classes`, in the data's order."""
        return torch.isin(runner.bench.splits.train.targets.cpu(), torch.tensor(classes)).nonzero()[:, 0].tolist()

    def loader(self, runner: Workshop, indices: list[int]) -> BatchLoader:
        """The stage's shuffled, augmented batches over these training samples (the recipe's batch size and seed)."""
        recipe, bench = runner.recipe, runner.bench
        subset = bench.splits.train.subset(torch.tensor(sorted(indices), dtype=torch.long))
        augment = Augment(hflip=recipe.data.hflip, crop_padding=recipe.data.crop_padding)
        return BatchLoader(subset, recipe.data.batch_size, augment=augment, shuffle=True, seed=recipe.seed,
                           device=bench.device, channels_last=recipe.engine.channels_last)

    def evaluator(self, runner: Workshop, stage: int):
        """Each epoch's held-out measure: the mean accuracy over the tasks seen so far (the setting's rule)."""
        def evaluate(model: nn.Module) -> dict[str, float]:
            logits, targets = predict(model, runner.bench.eval_loader("test"))
            accuracies = task_accuracies(logits, targets, self.tasks, stage, self.setting)
            return {"test_acc": sum(accuracies) / len(accuracies)}
        return evaluate

    def row(self, runner: Workshop, model: nn.Module, stage: int) -> list[float]:
        """R[stage][0..stage]: the model's accuracy on each task seen so far."""
        logits, targets = predict(model, runner.bench.eval_loader("test"))
        return task_accuracies(logits, targets, self.tasks, stage, self.setting)

    @torch.inference_mode()
    def exemplars(self, runner: Workshop, model: nn.Module, classes: list[int]) -> list[int]:
        """Training-split indices of replay_per_class exemplars per class of `classes`, by herding on
        the model's penultimate features (unaugmented images, eval mode): the same model gives the
        same exemplars, so a resumed run replays exactly what the uninterrupted one did."""
        train = runner.bench.splits.train
        sample = model_inputs(next(runner.bench.eval_loader("test").batches()))
        tap = embedding_tap(model, dry_run(model, {name: value[:2] for name, value in sample.items()})[0])
        taps, was_training = Taps(model, [tap], "student"), model.training
        model.eval()
        chosen = []
        for label in classes:
            members = self.indices(runner, [label])
            loader = BatchLoader(train.subset(torch.tensor(members)), runner.recipe.data.eval_batch_size, device=runner.bench.device)
            features = []
            for batch in loader.batches():
                with taps.capture() as captured:
                    frozen_forward(model, None, batch)
                features.append(captured[tap].flatten(1).float().cpu())
            picked = herding(torch.cat(features), self.replay_per_class)
            chosen += [members[i] for i in picked.tolist()]
        model.train(was_training)
        return chosen

    def results(self) -> dict[str, Any]:
        arms = {arm: {"accuracy": matrix, "average_accuracy": average_accuracy(matrix), "forgetting": forgetting(matrix)}
                for arm, matrix in self.matrices.items()}
        return {
            "setting": self.setting, "tasks": self.tasks, "replay_per_class": self.replay_per_class,
            **self.distill, "arms": arms,
            "note": "accuracy[i][j]: test accuracy on task j after stage i (task: argmax within the task's classes; class: "
                    "over every class seen); average_accuracy A_i = mean_j<=i; forgetting F_i = mean_j<i (max_l<i R[l][j] "
                    "- R[i][j]) (Chaudhry et al., ECCV 2018, arXiv 1801.10112). The models table's top-1 is over all classes.",
        }

    def lines(self) -> list[str]:
        """The matrices as text, one block per arm (the run's last lines before the table)."""
        names = {"lwf": "LwF" + (f" + replay {self.replay_per_class}/class" if self.replay_per_class else ""),
                 "finetune_": "fine-tuning", "joint_": "joint training"}
        results = self.results()["arms"]
        lines = [f"lifelong ({self.setting}-incremental, tasks {self.tasks}): test accuracy % on each task after each stage"]
        for arm in ("lwf", "finetune_", "joint_"):
            if arm not in results:
                continue
            lines.append(f"  {names[arm]}:")
            result = results[arm]
            for i, row in enumerate(result["accuracy"]):
                cells = " ".join(f"{100 * value:5.1f}" for value in row)
                drop = result["forgetting"][i]
                lines.append(f"    after task {i + 1}: {cells:<{6 * len(self.tasks)}} | average {100 * result['average_accuracy'][i]:5.1f}"
                             + (f"  forgetting {100 * drop:5.1f}" if drop is not None else ""))
        return lines

    def annotate(self, summary: dict[str, Any]) -> None:
        """The lifelong results; each row's test_acc becomes its arm's final average accuracy A_N under
        the setting's rule (the all-class argmax, meaningless for per-task heads, is kept beside it)."""
        results = summary["lifelong"] = self.results()
        arms = {"student": "lwf", "finetune": "finetune_", "baseline": "joint_"}
        for row in summary["models"]:
            arm = results["arms"].get(arms.get(row["role"], ""))
            if arm is not None:
                row["all_classes_test_acc"], row["test_acc"] = row["test_acc"], arm["average_accuracy"][-1]
        rows = {row["role"]: row for row in summary["models"]}
        if "baseline" in rows and "student" in rows:
            summary["distillation_gain_points"] = round(100 * (rows["student"]["test_acc"] - rows["baseline"]["test_acc"]), 3)
        summary["accuracy_note"] = (f"top-1 after the last task, averaged over the tasks ({self.setting}-incremental: "
                                    f"{'within each task' if self.setting == 'task' else 'over every class'}); "
                                    "all_classes_test_acc: argmax over all classes; the baseline is joint training")
