"""What the language-model benchmark measures beyond summary.json, per finished run folder.

    teacher_nll_of_samples   each model writes 64 continuations of 64 tokens (temperature 1, seed 0)
                             after 64-token prompts from the held-out plays; the teacher's mean
                             negative log-likelihood per written token (lower: text the teacher finds likely)
    distinct_1, distinct_2   distinct n-grams / all n-grams over those samples (diversity)
    train_tokens_per_s       training tokens per second of the run's stage (metrics.jsonl: windows x 128 / time)
    generate_tokens_per_s    new tokens per second writing 64 tokens for 8 prompts with the KV cache,
                             models timed alternately in 5 rounds (median), in one process

Results go to measures.json in the run folder; a folder that has one is skipped.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
import yaml

import potstill
from potstill.generation import generate
from potstill.models.hf_files import load_tokenizer

PROMPTS, PROMPT_TOKENS, NEW_TOKENS = 64, 64, 64


def prompts_of() -> tuple[torch.Tensor, str]:
    """The first 64 tokens of 64 evenly spread held-out windows, and the tokenizer's folder."""
    splits = potstill.load_dataset("shakespeare", args={"context": 128, "tokenizer": "bpe", "vocab_size": 2048})
    test = splits.test.input_ids
    rows = torch.linspace(0, len(test) - 1, PROMPTS).long()
    return test[rows, :PROMPT_TOKENS], splits.train.tokenizer_path


@torch.inference_mode()
def sample_measures(model, teacher, prompts: torch.Tensor, eos: int) -> dict[str, float]:
    mask = torch.ones_like(prompts)
    out = generate(model, prompts, mask, max_new_tokens=NEW_TOKENS, temperature=1.0, pad_token_id=eos, eos_token_id=None,
                   generator=torch.Generator().manual_seed(0))
    logits = teacher(input_ids=out.sequences, attention_mask=out.attention_mask).logits.float()
    log_probs = logits[:, :-1].log_softmax(dim=-1).gather(2, out.sequences[:, 1:, None])[..., 0]
    written = out.new_tokens[:, 1:]
    nll = float(-log_probs[written].mean())
    tokens = [row[new].tolist() for row, new in zip(out.sequences, out.new_tokens)]
    distinct = {}
    for n in (1, 2):
        grams = [tuple(row[i : i + n]) for row in tokens for i in range(len(row) - n + 1)]
        distinct[f"distinct_{n}"] = len(set(grams)) / max(len(grams), 1)
    return {"teacher_nll_of_samples": nll, **distinct}


def generation_speed(models: dict[str, torch.nn.Module], prompts: torch.Tensor, eos: int) -> dict[str, float]:
    batch, mask, times = prompts[:8], torch.ones_like(prompts[:8]), {name: [] for name in models}
    for _ in range(5):
        for name, model in models.items():  # alternately: a busy moment slows every model alike
            start = time.perf_counter()
            generate(model, batch, mask, max_new_tokens=NEW_TOKENS, pad_token_id=eos)
            times[name].append(time.perf_counter() - start)
    return {name: 8 * NEW_TOKENS / statistics.median(values) for name, values in times.items()}


def train_speed(run: Path, stage: str) -> float | None:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    windows, context = recipe["data"]["train_size"], recipe["data"]["args"]["context"]
    times = [r["time_s"] for r in records if r.get("stage") == stage and "time_s" in r]
    return windows * context * len(times) / sum(times) if times else None


def measure_run(run: Path, teacher: torch.nn.Module, prompts: torch.Tensor, eos: int) -> dict:
    roles = ["student"] + (["baseline"] if (run / "baseline" / "model.safetensors").is_file() else [])
    models = {role: potstill.load_model(run, role=role) for role in roles}
    speeds = generation_speed({"teacher": teacher, **models}, prompts, eos)
    result = {"teacher": {"generate_tokens_per_s": speeds["teacher"]}}
    for role, model in models.items():
        result[role] = sample_measures(model, teacher, prompts, eos) | {
            "train_tokens_per_s": train_speed(run, role), "generate_tokens_per_s": speeds[role]}
    result["teacher"] |= sample_measures(teacher, teacher, prompts, eos)
    return result


def measure_all(out: Path, seeds: list[int], arms: list[str], teacher_run: Path) -> None:
    torch.set_num_threads(1)  # beside the training runs; generation speeds are ratios of models timed alternately
    folders = [out / f"seed{seed}" / arm for seed in seeds for arm in arms]
    todo = [f for f in folders if (f / "summary.json").is_file() and not (f / "measures.json").is_file()]
    if not todo:
        return
    teacher = potstill.load_model(teacher_run, role="teacher")
    prompts, tokenizer = prompts_of()
    eos = load_tokenizer(tokenizer).eos_token_id
    for run in todo:
        print(f"measuring {run}", flush=True)
        (run / "measures.json").write_text(json.dumps(measure_run(run, teacher, prompts, eos), indent=1))
