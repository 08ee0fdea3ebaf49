"""Text samples of language models: what `potstill eval` shows beside the perplexity.

Each model continues the same few held-out prompts greedily (temperature 0, with the KV cache),
so the samples differ only by the models: a quick look at what distillation changed.
"""

from __future__ import annotations

import torch
from torch import nn

from potstill.generation import generate
from potstill.models.hf_files import load_tokenizer

PROMPTS, PROMPT_TOKENS, NEW_TOKENS = 3, 32, 48


def text_samples(models: dict[str, nn.Module], data, device: torch.device) -> list[dict[str, str]]:
    """[{"prompt": ..., role: continuation, ...}] for PROMPTS evenly spread held-out rows; [] when the
    data names no tokenizer to decode with."""
    if not getattr(data, "tokenizer_path", ""):
        return []
    tokenizer = load_tokenizer(data.tokenizer_path)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows = torch.linspace(0, len(data) - 1, PROMPTS).long()
    length = min(PROMPT_TOKENS, data.input_shape[0] // 2)
    ids, mask = data.input_ids[rows, :length].to(device), data.attention_mask[rows, :length].to(device)
    new = min(NEW_TOKENS, data.input_shape[0] - length)
    samples = [{"prompt": tokenizer.decode(row[m.bool()].tolist())} for row, m in zip(ids, mask)]
    for role, model in models.items():
        out = generate(model, ids, mask, max_new_tokens=new, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
        for sample, row, written in zip(samples, out.sequences, out.new_tokens):
            sample[role] = tokenizer.decode(row[written].tolist(), skip_special_tokens=True)
    return samples
