"""Peer comparison: knowledge distillation with torchdistill on potstill's own setup.

Run with the sibling venv (see README.md beside this file), not potstill's:

    /work/peers/torchdistill-venv/bin/python benchmarks/peers/torchdistill_kd.py \
        --teacher-weights runs/fmnist_teacher_cnn/teacher/model.safetensors \
        --teacher-model cnn --teacher-args '{"channels": [32, 64], "hidden": 256, "dropout": 0.3}' \
        --student-model mlp --student-args '{"hidden": [1024, 1024]}' \
        --dataset fashion_mnist --epochs 5 --batch-size 128 --lr 2e-3 --weight-decay 5e-4 \
        --temperature 4 --alpha 0.5 --beta 0.5 --seed 0 --hflip --out result.json

What it measures, for two runs through torchdistill's own training machinery:
  kd     DistillationBox (torchdistill.core.distillation.get_distillation_box) with its KDLoss;
         the frozen teacher (eval mode, no_grad) runs on every batch, torchdistill's default.
  alone  TrainingBox (torchdistill.core.training.get_training_box), plain cross-entropy, same pipeline.
For each: wall time of every epoch's training (pre_epoch_process .. post_epoch_process, data loading
included, evaluation excluded) and top-1 test accuracy (%) after the last epoch. Both students start
from the same weights: torch.manual_seed(seed) right before create_model, as potstill does.

Same setup as potstill:
  data     potstill.data.load_dataset (same files, same train_size subset, same mean/std measured on
           the training split); fed the usual torch way: a Dataset whose samples are
           (x/255 - mean)/std, torchvision RandomHorizontalFlip per sample when --hflip, and a
           DataLoader built by torchdistill from the config (RandomSampler = shuffle, num_workers=0).
  models   potstill.models.create_model; teacher weights from a .safetensors file.
  loss     torchdistill KDLoss = alpha * CE(student, labels) + beta * T^2 * KL(teacher_T || student_T)
           (KLDivLoss 'batchmean'). Its alpha is the hard-label weight and beta the KL weight (beta
           defaults to 1 - alpha there), i.e. the same meaning as potstill's distill.alpha / distill.beta,
           so both are passed through unchanged: 0.5 * CE + 0.5 * 16 * KL at T = 4.
  optim    AdamW(lr, weight_decay) via torchdistill's optimizer registry; OneCycleLR(max_lr=lr,
           total_steps=epochs * batches_per_epoch) via its scheduler registry with scheduling_step=1,
           so torchdistill steps it after every batch (potstill steps its schedule per batch too).
  threads  torch's default (not changed); seeds: random, numpy and torch set to --seed.

Writes JSON {"torchdistill", "torch", "kd": {"epoch_s", "test_acc"}, "alone": {...}, "teacher": {...},
"setup": {...}} and prints one summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box
from torchvision import transforms

from potstill.data import load_dataset
from potstill.models import create_model

DEVICE = torch.device("cpu")


class ImageDataset(Dataset):
    """uint8 images (N, C, H, W) -> normalised float samples, one at a time, with an optional flip."""

    def __init__(self, data, mean, std, hflip: bool, crop_padding: int = 0) -> None:
        self.inputs, self.targets = data.inputs, data.targets
        steps = [transforms.RandomHorizontalFlip()] if hflip else []
        if crop_padding:
            steps.append(transforms.RandomCrop(tuple(data.inputs.shape[2:]), padding=crop_padding))
        self.transform = transforms.Compose([*steps, transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.inputs[index].float() / 255.0  # (C, H, W) in [0, 1]
        return self.transform(image), int(self.targets[index])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-weights", type=Path, required=True)
    parser.add_argument("--teacher-model", required=True)
    parser.add_argument("--teacher-args", type=json.loads, default={})
    parser.add_argument("--student-model", required=True)
    parser.add_argument("--student-args", type=json.loads, default={})
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="hard-label cross-entropy weight")
    parser.add_argument("--beta", type=float, default=0.5, help="T^2-scaled KL weight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hflip", action="store_true")
    parser.add_argument("--crop-padding", type=int, default=0, help="random crop after zero padding (0 = off)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(name: str, model_args: dict, splits, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the KD and the alone student start from the same weights
    return create_model(name, input_shape=splits.input_shape, num_classes=splits.num_classes, **model_args)


def load_teacher(args: argparse.Namespace, splits) -> torch.nn.Module:
    teacher = build_model(args.teacher_model, args.teacher_args, splits, args.seed)
    teacher.load_state_dict(load_file(str(args.teacher_weights)))
    return teacher.eval()  # the box never calls teacher.train(): it stays in eval mode


def loader_config(args: argparse.Namespace) -> dict:
    """torchdistill's train_data_loader config: shuffled batches, single process."""
    return {
        "dataset_id": "train",
        "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
        "kwargs": {"batch_size": args.batch_size, "num_workers": 0},
    }


def optim_config(args: argparse.Namespace, steps_per_epoch: int) -> tuple[dict, dict]:
    optimizer = {"key": "AdamW", "kwargs": {"lr": args.lr, "weight_decay": args.weight_decay}}
    scheduler = {
        "key": "OneCycleLR",
        "kwargs": {"max_lr": args.lr, "total_steps": args.epochs * steps_per_epoch},
        "scheduling_step": 1,  # step after every batch
    }
    return optimizer, scheduler


def kd_criterion(args: argparse.Namespace) -> dict:
    kd = {
        "student_module_path": ".", "student_module_io": "output",
        "teacher_module_path": ".", "teacher_module_io": "output",
        "temperature": args.temperature, "alpha": args.alpha, "beta": args.beta, "reduction": "batchmean",
    }
    term = {"criterion": {"key": "KDLoss", "kwargs": kd}, "weight": 1.0}
    return {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": term}}}


def ce_criterion() -> dict:
    wrapper = {
        "key": "SimpleLossWrapper",
        "kwargs": {
            "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
            "target": {"uses_label": True},
        },
    }
    criterion = {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}}
    ce = {"criterion": criterion, "criterion_wrapper": wrapper, "weight": 1.0}
    return {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": ce}}}


def train_config(args: argparse.Namespace, steps_per_epoch: int, criterion: dict, with_teacher: bool) -> dict:
    optimizer, scheduler = optim_config(args, steps_per_epoch)
    config = {
        "num_epochs": args.epochs,
        "train_data_loader": loader_config(args),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "criterion": criterion,
    }
    forward = "forward_batch_only"  # model(sample_batch): torchdistill has no default forward_proc
    if with_teacher:
        config["teacher"] = {"forward_proc": forward, "requires_grad": False}  # frozen: no_grad, not optimised
        config["student"] = {"forward_proc": forward, "requires_grad": True}
    else:
        config["model"] = {"forward_proc": forward, "requires_grad": True}
    return config


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, dataset: Dataset) -> float:
    model.eval()
    correct = 0
    for images, targets in DataLoader(dataset, batch_size=512, shuffle=False, num_workers=0):
        correct += int((model(images).argmax(dim=1) == targets).sum())
    return 100.0 * correct / len(dataset)


def train(box, epochs: int) -> list[float]:
    """torchdistill's training loop as its example scripts drive it; returns seconds per epoch."""
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            box.pre_forward_process()
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
        box.post_epoch_process()
        times.append(round(time.perf_counter() - start, 3))
    return times


def run_kd(args, splits, datasets, steps_per_epoch: int, teacher) -> dict:
    seed_everything(args.seed)
    student = build_model(args.student_model, args.student_args, splits, args.seed)
    config = train_config(args, steps_per_epoch, kd_criterion(args), with_teacher=True)
    box = get_distillation_box(teacher, student, datasets, config, DEVICE, None, False, 1)
    times = train(box, args.epochs)
    return {"epoch_s": times, "test_acc": test_accuracy(box.student_model, datasets["test"])}


def run_alone(args, splits, datasets, steps_per_epoch: int) -> dict:
    seed_everything(args.seed)
    student = build_model(args.student_model, args.student_args, splits, args.seed)
    config = train_config(args, steps_per_epoch, ce_criterion(), with_teacher=False)
    box = get_training_box(student, datasets, config, DEVICE, None, False, 1)
    times = train(box, args.epochs)
    return {"epoch_s": times, "test_acc": test_accuracy(box.model, datasets["test"])}


def main() -> None:
    args = parse_args()
    seed_everything(args.seed)
    splits = load_dataset(args.dataset, train_size=args.train_size, seed=args.seed)
    datasets = {
        "train": ImageDataset(splits.train, splits.mean, splits.std, hflip=args.hflip, crop_padding=args.crop_padding),
        "test": ImageDataset(splits.test, splits.mean, splits.std, hflip=False),
    }
    steps_per_epoch = math.ceil(len(datasets["train"]) / args.batch_size)  # drop_last is off
    teacher = load_teacher(args, splits)
    teacher_acc = test_accuracy(teacher, datasets["test"])

    kd = run_kd(args, splits, datasets, steps_per_epoch, teacher)
    alone = run_alone(args, splits, datasets, steps_per_epoch)

    setup = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    setup.update({
        "train_images": len(datasets["train"]), "test_images": len(datasets["test"]),
        "steps_per_epoch": steps_per_epoch, "mean": list(splits.mean), "std": list(splits.std),
        "threads": torch.get_num_threads(), "device": str(DEVICE),
        "optimizer": "AdamW (torchdistill registry)",
        "scheduler": "OneCycleLR(max_lr=lr, total_steps=epochs*steps_per_epoch), "
                     "stepped per batch (scheduling_step=1)",
        "kd_loss": f"KDLoss: {args.alpha}*CE + {args.beta}*T^2*KL(teacher_T||student_T), "
                   f"T={args.temperature}, batchmean",
    })
    result = {
        "torchdistill": version("torchdistill"), "torch": torch.__version__,
        "kd": kd, "alone": alone, "teacher": {"test_acc": teacher_acc}, "setup": setup,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    kd_mean, alone_mean = np.mean(kd["epoch_s"]), np.mean(alone["epoch_s"])
    print(f"torchdistill {result['torchdistill']} (torch {result['torch']}): KD {kd_mean:.2f} s/epoch, "
          f"test {kd['test_acc']:.2f}% | alone {alone_mean:.2f} s/epoch, test {alone['test_acc']:.2f}% | "
          f"KD/alone {kd_mean / alone_mean:.2f}x | teacher {teacher_acc:.2f}% -> {args.out}")


if __name__ == "__main__":
    main()
