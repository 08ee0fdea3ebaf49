"""The building blocks of lifelong (continual) learning that `schemes/lwf.py` uses: the task split,
the per-task heads, the Learning-without-Forgetting distillation term, herding exemplars, and the
accuracy matrix with its average accuracy and forgetting.

Two settings (van de Ven & Tolias, "Three scenarios for continual learning", arXiv 1904.07734):

    task    task-incremental: the task of a sample is known at test time, so the prediction is the
            argmax over its task's classes (one head per task; here the task's rows of the shared
            classifier, the multi-head network of Learning without Forgetting)
    class   class-incremental: no task label; the prediction is the argmax over every class seen
            so far (one head that grows with each task)

Accuracy matrix R[i][j]: accuracy on task j's test samples after training stage i (j <= i).
Average accuracy A_i = mean_{j<=i} R[i][j]; forgetting (Chaudhry, Dokania, Ajanthan & Torr,
"Riemannian Walk for Incremental Learning", ECCV 2018, arXiv 1801.10112, eq. 4-5)
F_i = mean_{j<i} ( max_{l in j..i-1} R[l][j] - R[i][j] ), undefined after the first task.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.response.kd import soft_target_kl

Setting = Literal["task", "class"]


def split_tasks(num_classes: int | None, tasks: list[list[int]] | None, num_tasks: int, setting: Setting) -> list[list[int]]:
    """The class ids of each task, in training order, checked: every class in exactly one task.
    Without `tasks`, the classes in order, cut into `num_tasks` contiguous tasks whose sizes differ
    by at most one (10 classes, 5 tasks: [0, 1], [2, 3], ...). `num_classes` None (not known yet):
    every check that needs no class count."""
    if tasks is None and num_classes is None:
        return []
    if tasks is None:
        if not 2 <= num_tasks <= num_classes:
            raise PotstillError(f"scheme.args.num_tasks must be between 2 and the data's {num_classes} classes, got "
                                f"{num_tasks}; lifelong learning needs at least two tasks")
        tasks = [part.tolist() for part in torch.arange(num_classes).tensor_split(num_tasks)]
    if len(tasks) < 2:
        raise PotstillError(f"scheme.args.tasks has {len(tasks)} task; lifelong learning needs at least two, e.g. "
                            "tasks: [[0, 1], [2, 3]]")
    seen: dict[int, int] = {}
    for number, classes in enumerate(tasks, start=1):
        if not classes:
            raise PotstillError(f"scheme.args.tasks: task {number} has no class; give every task at least one class id")
        for label in classes:
            if label < 0 or (num_classes is not None and label >= num_classes):
                have = "class ids start at 0" if num_classes is None else f"the data has classes 0..{num_classes - 1}"
                raise PotstillError(f"scheme.args.tasks: class {label} in task {number} is out of range; {have}")
            if label in seen:
                where = f"twice in task {number}" if seen[label] == number else f"in tasks {seen[label]} and {number}"
                raise PotstillError(f"scheme.args.tasks: class {label} is {where}; each class belongs to exactly one task")
            seen[label] = number
        if setting == "task" and len(classes) < 2:
            raise PotstillError(
                f"scheme.args.tasks: task {number} has one class, which the task-incremental setting (its own head) "
                "always predicts right, so it learns and measures nothing; give it two or more classes or use setting: class"
            )
    missing = [label for label in range(num_classes or 0) if label not in seen]
    if missing:
        raise PotstillError(f"scheme.args.tasks: class(es) {', '.join(map(str, missing))} are in no task; the data has "
                            f"{num_classes} classes and each must belong to exactly one task")
    return [list(classes) for classes in tasks]


def allowed_classes(tasks: list[list[int]], stage: int, setting: Setting, num_classes: int) -> torch.Tensor:
    """(K, K) bool: row c = the outputs a sample of class c is trained and judged on at stage
    `stage` (0-based): its own task's classes (task) or every class of tasks 0..stage (class)."""
    allowed = torch.zeros(num_classes, num_classes, dtype=torch.bool)
    seen = [label for classes in tasks[: stage + 1] for label in classes]
    for number, classes in enumerate(tasks):
        for label in classes:
            allowed[label, classes if setting == "task" else seen] = True
    return allowed


def old_groups(tasks: list[list[int]], stage: int, setting: Setting) -> list[list[int]]:
    """The old outputs the LwF term preserves at stage `stage` (0-based): each old task's head on
    its own (task), or all old classes as one head (class)."""
    old = tasks[:stage]
    if setting == "class" and old:
        return [[label for classes in old for label in classes]]
    return [list(classes) for classes in old]


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over each sample's allowed outputs only. logits (B, K), targets (B,), allowed
    (B, K) bool; label smoothing spreads over the allowed outputs (never over masked ones)."""
    log_probs = logits.masked_fill(~allowed, float("-inf")).log_softmax(dim=1)  # (B, K), -inf where masked
    nll = -log_probs.gather(1, targets[:, None])[:, 0]
    if label_smoothing == 0:
        return nll.mean()
    uniform = -torch.where(allowed, log_probs, torch.zeros_like(log_probs)).sum(dim=1) / allowed.sum(dim=1)
    return ((1 - label_smoothing) * nll + label_smoothing * uniform).mean()


def lwf_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, groups: list[list[int]],
                     temperature: float) -> torch.Tensor:
    """Learning without Forgetting's L_old, summed over the old heads `groups` (lists of class ids):
    sum_g T^2 KL( softmax(z_prev[g] / T) || softmax(z[g] / T) ), mean over the batch: Hinton's KD
    (knowledge/response/kd.py) on each old head. The paper's L_old is the cross-entropy of the
    softened outputs without the T^2 factor (equal to the KL up to the teacher's entropy, a
    constant), so its lambda_o = 1 is a weight of 1 / T^2 here. Logits (B, K)."""
    total = student_logits.new_zeros(())
    for classes in groups:
        total = total + soft_target_kl(student_logits[:, classes], teacher_logits[:, classes], temperature)
    return total


def herding(features: torch.Tensor, count: int) -> torch.Tensor:
    """iCaRL's exemplar selection (Rebuffi et al., CVPR 2017, arXiv 1611.07725, Algorithm 4): with
    phi the L2-normalised features (N, D) of one class and mu their mean, pick in turn
    p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||, each sample at most once (ties:
    the lowest index). Returns the chosen row indices (min(count, N),) in the order picked."""
    phi = F.normalize(features.double(), dim=1)
    mean = phi.mean(dim=0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(phi), dtype=torch.bool)
    for k in range(1, min(count, len(phi)) + 1):
        distance = (mean - (running + phi) / k).norm(dim=1).masked_fill(~available, float("inf"))
        pick = int(distance.argmin())
        chosen.append(pick)
        running += phi[pick]
        available[pick] = False
    return torch.tensor(chosen, dtype=torch.long)


def task_accuracies(logits: torch.Tensor, targets: torch.Tensor, tasks: list[list[int]], stage: int,
                    setting: Setting) -> list[float]:
    """Accuracy on the test samples of each task 0..stage after stage `stage` (0-based): argmax over
    the sample's own task's classes (task) or over every class seen so far (class)."""
    allowed = allowed_classes(tasks, stage, setting, logits.shape[1])[targets]  # (N, K)
    predicted = logits.masked_fill(~allowed, float("-inf")).argmax(dim=1)
    correct = predicted == targets
    result = []
    for classes in tasks[: stage + 1]:
        members = torch.isin(targets, torch.tensor(classes))
        result.append(float(correct[members].float().mean()) if members.any() else float("nan"))
    return result


def average_accuracy(matrix: list[list[float]]) -> list[float]:
    """A_i = mean_{j<=i} R[i][j] for each stage i; `matrix` row i holds R[i][0..i]."""
    return [sum(row[: i + 1]) / (i + 1) for i, row in enumerate(matrix)]


def forgetting(matrix: list[list[float]]) -> list[float | None]:
    """F_i = mean_{j<i} (max_{l in j..i-1} R[l][j] - R[i][j]) (Chaudhry et al. 2018); None at i = 0."""
    result: list[float | None] = [None]
    for i in range(1, len(matrix)):
        drops = [max(matrix[l][j] for l in range(j, i)) - matrix[i][j] for j in range(i)]
        result.append(sum(drops) / len(drops))
    return result
