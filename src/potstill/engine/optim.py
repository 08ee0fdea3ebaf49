"""Optimizers and learning-rate schedules, built from a TrainSpec. Schedules step every batch."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from potstill.recipe import TrainSpec


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict], spec: TrainSpec) -> torch.optim.Optimizer:
    """`params`: parameters, or parameter groups ({"params": [...], "name": ...}) sharing `spec`."""
    params = list(params)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay, nesterov=spec.momentum > 0)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = spec.epochs * steps_per_epoch
    if spec.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=total)
    if spec.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if spec.scheduler == "multistep":
        # milestones are in epochs; the schedule steps per batch
        milestones = [m * steps_per_epoch for m in spec.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=spec.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)  # constant lr
