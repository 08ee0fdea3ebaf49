"""Gemma-3-270M as a teacher: load it once, measure it, and write the checkpoint a recipe's teacher loads.

    python benchmarks/gemma_teacher.py recipes/lm/gemma_teacher_topk.yaml            # docs/gemma.md's numbers
    python benchmarks/gemma_teacher.py RECIPE --set data.args.test_fraction=0.2 --no-save

The recipe's data must be text_lm and its teacher hf_gguf. The script reads the data (which writes
the vocabulary map), loads the GGUF model untrimmed and prints, as JSON:
- load_seconds, peak_rss_gib: the model's load time and the process's peak resident memory;
- on the test split, what the teacher sees: the probability mass the trimmed vocabulary drops
  (dropped_mass: mean, median, 90th percentile, max), the teacher's perplexity over the trimmed
  vocabulary (what the run's teacher check reports) and over the full one;
- tokens_per_second of the full and the trimmed model (the trimmed output layer has V' rows).
Then it trims the model and saves it where the recipe's teacher.checkpoint points (unless --no-save):
a recipe's teacher is trained in the run or loaded from a checkpoint, and this is the checkpoint of
the GGUF's own weights. Run with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
from common import add_import_option, import_modules

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a recipe with data text_lm and teacher hf_gguf")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch", type=int, default=2, help="test rows per forward pass (full logits are B x L x 262,144 floats)")
    parser.add_argument("--no-save", action="store_true", help="measure only; write no teacher checkpoint")
    add_import_option(parser)
    args = parser.parse_args(argv)
    import_modules(args)

    import potstill.data.gguf_text  # noqa: F401  registers text_lm and hf_gguf
    from potstill import config
    from potstill.data import DATASETS
    from potstill.engine.checkpoint import save_tensors
    from potstill.errors import PotstillError
    from potstill.models import create_model
    from potstill.models.gguf import tokenizer_record
    from potstill.models.trimmed_vocab import VocabMap, dropped_mass, trim_vocabulary
    from potstill.positions import IGNORE_INDEX
    from potstill.recipe import Recipe

    recipe = config.load(args.recipe, Recipe, args.overrides)
    if recipe.data.name != "text_lm" or recipe.teacher is None or recipe.teacher.model.name != "hf_gguf":
        raise PotstillError(f"{args.recipe}: needs data text_lm and teacher model hf_gguf")
    start = time.perf_counter()
    raw = DATASETS.create("text_lm", **recipe.data.args)
    data_seconds = time.perf_counter() - start
    model_args = dict(recipe.teacher.model.args)
    map_path = model_args.pop("vocab_map", None)
    path = model_args.get("path", "gemma3-270m")
    full_size = int(tokenizer_record(path)["tokens"])
    vocab = VocabMap.load(map_path) if map_path else None
    if vocab is not None and vocab.fingerprint != raw.test.tokenizer:
        raise PotstillError(f"{map_path} is not the map of this data; give the teacher the data's vocab_map")
    kept = vocab.kept_tensor() if vocab is not None else torch.arange(full_size)

    start = time.perf_counter()
    model = create_model("hf_gguf", input_shape=raw.train.input_shape, num_classes=full_size, **model_args).eval()
    load_seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB

    test = raw.test
    masses, trimmed_nll, full_nll, seconds, tokens = [], [], [], 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(test), args.batch):
            ids = test.input_ids[first : first + args.batch]
            full_ids = vocab.decode(ids) if vocab is not None else ids
            target = test.targets[first : first + args.batch]
            counted = target != IGNORE_INDEX
            began = time.perf_counter()
            logits = model(input_ids=full_ids, attention_mask=test.attention_mask[first : first + args.batch]).logits
            seconds, tokens = seconds + time.perf_counter() - began, tokens + ids.numel()
            rows = logits[counted].float()  # (N, V) at the predicted positions
            masses.append(dropped_mass(rows, kept))
            wanted = target[counted]
            trimmed_nll.append(-rows[:, kept].log_softmax(-1).gather(1, wanted[:, None]).squeeze(1))
            full_target = kept[wanted]
            full_nll.append(-rows.log_softmax(-1).gather(1, full_target[:, None]).squeeze(1))
    mass = torch.cat(masses)
    full_rate = tokens / seconds

    trim_vocabulary(model, kept)
    with torch.inference_mode():
        sample = test.input_ids[: args.batch]
        began = time.perf_counter()
        for _ in range(3):
            model(input_ids=sample, attention_mask=torch.ones_like(sample))
        trimmed_rate = 3 * sample.numel() / (time.perf_counter() - began)

    result = {
        "recipe": args.recipe, "model": path, "vocabulary": {"full": full_size, "kept": len(kept)},
        "data_seconds": round(data_seconds, 1), "load_seconds": round(load_seconds, 1), "peak_rss_gib": round(peak, 2),
        "test_tokens_predicted": int(mass.numel()),
        "dropped_mass": {"mean": round(float(mass.mean()), 4), "median": round(float(mass.median()), 4),
                         "p90": round(float(mass.quantile(0.9)), 4), "max": round(float(mass.max()), 4)},
        "teacher_test_ppl_trimmed": round(math.exp(float(torch.cat(trimmed_nll).mean())), 2),
        "teacher_test_ppl_full": round(math.exp(float(torch.cat(full_nll).mean())), 2),
        "tokens_per_second": {"full": round(full_rate, 1), "trimmed": round(trimmed_rate, 1)},
        "threads": torch.get_num_threads(),
    }
    if not args.no_save:
        if recipe.teacher.checkpoint is None:
            raise PotstillError(f"{args.recipe}: set teacher.checkpoint to the .safetensors file to write (or pass --no-save)")
        out = Path(recipe.teacher.checkpoint)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(out, model.state_dict(), {"preprocessing": {"kind": "none"}, "source": f"hf_gguf {path}, vocab_map {map_path}"})
        result["checkpoint"] = {"path": str(out), "bytes": out.stat().st_size}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
