"""Text generation for causal language models: greedy or nucleus sampling, with a KV cache.

One function serves every caller that needs a model to write: samples in evaluation reports,
on-policy distillation (GKD: the student writes, the teacher scores) and sequence-level KD (the
teacher writes responses once). Prompts are a left-padded (B, P) batch; the result is the prompt
followed by the new tokens, with masks that say which positions are real and which were generated,
so a loss can score exactly the generated tokens.

All randomness comes from the caller's torch.Generator, never the global RNG: a training loop that
seeds one generator per step gets bit-identical samples when it resumes.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.model_io import call_model

NextLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sequences, mask) (B, L) -> (B, V)


@dataclass
class Generated:
    """Prompts and their continuations, N = the steps run (max_new_tokens, or fewer when every row stopped)."""

    sequences: torch.Tensor  # (B, P + N) int64: the left-padded prompt, then the new tokens (pad_token_id after a stop)
    attention_mask: torch.Tensor  # (B, P + N) int64: 1 at real prompt tokens and generated tokens, else 0
    new_tokens: torch.Tensor  # (B, P + N) bool: True at generated positions that count (the EOS included)
    lengths: torch.Tensor  # (B,) int64: generated tokens per row (the EOS included)


def generate(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
             temperature: float = 0.0, top_p: float = 1.0, eos_token_id: int | None = None,
             pad_token_id: int | None, generator: torch.Generator | None = None) -> Generated:
    """Continue each prompt by up to `max_new_tokens` tokens.

    temperature 0 picks the most likely token (greedy); temperature > 0 samples from
    softmax(logits / temperature), restricted to the nucleus: the smallest set of most likely tokens
    whose probability adds up to at least `top_p`. A row stops after it emits `eos_token_id`.

    Prompts are expected left-padded (padding first, as for any decoder-only model); right-padded
    prompts are re-packed to the left, so the result is always left-padded. The caller's tensors are
    not changed.

    A transformers PreTrainedModel runs the prompt once and then one token per step from its KV
    cache, with position ids counted from the attention mask so left padding does not shift them.
    Any other module is called through potstill.model_io.call_model on the whole sequence so far,
    {"input_ids", "attention_mask"}, every step (no cache: slower, quadratic in length); such a model
    must read the attention mask itself if its prompts are padded.

    The model runs in eval mode under torch.inference_mode (each submodule's mode is restored
    after); the result carries no autograd history.
    """
    check_settings(max_new_tokens, temperature, top_p, pad_token_id, generator, input_ids.device)
    input_ids, attention_mask = left_packed(input_ids, attention_mask)
    check_context(model, int(attention_mask.sum(dim=1).max()), max_new_tokens)
    next_logits = CachedForward(model) if is_transformers_model(model) else recomputed_forward(model)
    with evaluating(model), torch.inference_mode():
        generated = decode(next_logits, input_ids, attention_mask, max_new_tokens, temperature, top_p,
                           eos_token_id, pad_token_id, generator)
    # copies made outside inference mode: a student may train on them (inference tensors refuse autograd)
    return Generated(**{name: tensor.clone() for name, tensor in vars(generated).items()})


def decode(next_logits: NextLogits, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           temperature: float, top_p: float, eos_token_id: int | None, pad_token_id: int,
           generator: torch.Generator | None) -> Generated:
    """The generation loop: one token per row per step until max_new_tokens or every row stopped."""
    batch_size, prompt_length = input_ids.shape
    total = prompt_length + max_new_tokens
    sequences = input_ids.new_full((batch_size, total), pad_token_id)  # (B, P + N)
    sequences[:, :prompt_length] = input_ids
    mask = attention_mask.new_zeros((batch_size, total))
    mask[:, :prompt_length] = attention_mask
    new_tokens = torch.zeros((batch_size, total), dtype=torch.bool, device=input_ids.device)
    stopped = torch.zeros(batch_size, dtype=torch.bool, device=input_ids.device)  # (B,)
    width = prompt_length
    while width < total and not bool(stopped.all()):
        logits = next_logits(sequences[:, :width], mask[:, :width])  # (B, V)
        token = next_token(logits, temperature, top_p, generator)  # (B,)
        sequences[:, width] = torch.where(stopped, pad_token_id, token)
        mask[:, width] = (~stopped).long()
        new_tokens[:, width] = ~stopped
        if eos_token_id is not None:
            stopped |= token == eos_token_id
        width += 1
    return Generated(sequences[:, :width], mask[:, :width], new_tokens[:, :width], new_tokens.sum(dim=1))


def next_token(logits: torch.Tensor, temperature: float, top_p: float,
               generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids: argmax at temperature 0, else a draw from the nucleus."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)  # float32: bf16 sums drift
    if top_p < 1:
        probabilities = nucleus(probabilities, top_p)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)  # renormalises itself


def nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest most-likely set whose probability reaches top_p.
    A token is kept when the tokens ranked above it add up to less than top_p, so the top one always is."""
    ranked, order = probabilities.sort(dim=-1, descending=True)  # (B, V)
    mass_above = ranked.cumsum(dim=-1) - ranked
    kept = torch.where(mass_above < top_p, ranked, torch.zeros_like(ranked))
    return torch.zeros_like(probabilities).scatter(-1, order, kept)


class CachedForward:
    """Next-token logits from a transformers causal LM: the whole prompt on the first call, then only
    the newest token, reusing the keys and values kept in the model's cache."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.cache = None
        # transformers 5.x names the argument `cache` (the old `past_key_values` is deprecated there)
        self.cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def __call__(self, sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, L): left padding does not shift positions
        if self.cache is not None:
            sequences, positions = sequences[:, -1:], positions[:, -1:]
        output = self.model(input_ids=sequences, attention_mask=mask, position_ids=positions, use_cache=True,
                            **{self.cache_argument: self.cache})
        self.cache = output.cache if getattr(output, "cache", None) is not None else output.past_key_values
        return output.logits[:, -1, :]


def recomputed_forward(model: nn.Module) -> NextLogits:
    """Next-token logits from any LM returning (B, L, V) logits: the full sequence every step."""
    def next_logits(sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return call_model(model, {"input_ids": sequences, "attention_mask": mask})[:, -1, :]
    return next_logits


def is_transformers_model(model: nn.Module) -> bool:
    # transformers is optional: when it was never imported, the model cannot be one of its models
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; every submodule gets back its own mode (a frozen part stays frozen)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def left_packed(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """New (B, P) tensors with each row's real tokens moved to the end, in order (left padding).
    Left-padded prompts come back unchanged; right-padded ones are re-packed."""
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise PotstillError(f"generate needs input_ids and attention_mask of one shape (B, P), got "
                            f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask.long()
    empty = (mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise PotstillError(f"prompt rows {empty} have no real token (attention_mask all 0); drop empty prompts "
                            "or give each at least one token (e.g. the BOS token)")
    order = torch.argsort(mask, dim=1, stable=True)  # (B, P): padding first, real tokens after, each in order
    return input_ids.long().gather(1, order), mask.gather(1, order)


def check_settings(max_new_tokens: int, temperature: float, top_p: float, pad_token_id: int | None,
                   generator: torch.Generator | None, device: torch.device) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise PotstillError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature >= 0):
        raise PotstillError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise PotstillError(f"top_p must be in (0, 1] (1 = no nucleus cut), got {top_p!r}")
    if pad_token_id is None:
        raise PotstillError("pad_token_id is None: pass pad_token_id=tokenizer.pad_token_id, or "
                            "tokenizer.eos_token_id for a tokenizer without a pad token (GPT-2)")
    if temperature > 0 and generator is None:
        raise PotstillError("sampling (temperature > 0) draws from a generator you own, never the global RNG: "
                            "pass generator=torch.Generator().manual_seed(seed)")
    if generator is not None and generator.device.type != device.type:
        raise PotstillError(f"the generator is on {generator.device} but the prompts are on {device}; "
                            f"create it with torch.Generator(device='{device.type}')")


def check_context(model: nn.Module, longest_prompt: int, max_new_tokens: int) -> None:
    """The last position written must be inside the model's position table."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        context = getattr(config, name, None)
        if isinstance(context, int):
            break
    else:
        return
    if longest_prompt + max_new_tokens > context:
        raise PotstillError(
            f"the longest prompt has {longest_prompt} tokens and max_new_tokens is {max_new_tokens}: "
            f"{longest_prompt + max_new_tokens} positions, more than the model's context of {context} "
            f"(config.{name}); use shorter prompts or max_new_tokens <= {max(context - longest_prompt, 0)}")
