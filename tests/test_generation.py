"""generate(): KV-cache decoding agrees with full recomputation and with transformers' own generate,
padding does not change what a row writes, sampling draws only from the caller's generator and
follows the softmax, EOS stops a row, and bad settings are one-line PotstillErrors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.generation import generate, nucleus

pytest.importorskip("transformers")
# resolved at collection: transformers imports model code lazily (seconds, once), not inside a timed test
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

VOCAB = 50
PAD = 0


def seeded(build, seed: int) -> nn.Module:
    with torch.random.fork_rng():  # the weights are seeded without touching the test process's RNG
        torch.manual_seed(seed)
        return build().eval()


def tiny_gpt2(seed: int = 0) -> nn.Module:
    # initializer_range 0.2 (not 0.02): clear argmax margins, so float noise cannot flip a greedy pick
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64,
                        bos_token_id=None, eos_token_id=None, pad_token_id=PAD, initializer_range=0.2)
    return seeded(lambda: GPT2LMHeadModel(config), seed)


def tiny_llama(seed: int = 0) -> nn.Module:
    """Rotary positions and grouped keys: a second family for the KV-cache path."""
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         bos_token_id=None, eos_token_id=None, pad_token_id=PAD, initializer_range=0.2)
    return seeded(lambda: LlamaForCausalLM(config), seed)


class Unwrapped(nn.Module):
    """The same GPT-2 seen as a user's own LM (not a PreTrainedModel): takes the dict batch, returns
    (B, L, V) logits, and reads positions off the attention mask as any padding-aware LM must."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          position_ids=positions, use_cache=False).logits


class FixedLM(nn.Module):
    """A next-token distribution we choose: the same logits at every position of every row."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch_size, length = batch["input_ids"].shape
        return self.logits.expand(batch_size, length, -1)


class ScriptedLM(nn.Module):
    """Writes script[row][step] (the last entry repeats), so we decide which row emits EOS and when."""

    def __init__(self, script: list[list[int]], prompt_length: int, vocab: int = 8):
        super().__init__()
        self.script, self.prompt_length, self.vocab = script, prompt_length, vocab

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch_size, length = batch["input_ids"].shape
        step = length - self.prompt_length
        logits = torch.zeros(batch_size, length, self.vocab)
        for row, tokens in enumerate(self.script):
            logits[row, -1, tokens[min(step, len(tokens) - 1)]] = 10.0
        return logits


def left_padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    prompts = [[5, 9, 14, 3, 7, 22], [11, 4], [30, 2, 8, 17]]
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.tensor([[PAD] * (width - len(prompt)) + prompt for prompt in prompts])
    mask = torch.tensor([[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts])
    return input_ids, mask


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
def test_greedy_with_cache_equals_full_recomputation_and_transformers_generate(build):
    model = build()
    input_ids, mask = left_padded_prompts()
    cached = generate(model, input_ids, mask, max_new_tokens=8, pad_token_id=PAD)
    recomputed = generate(Unwrapped(model), input_ids, mask, max_new_tokens=8, pad_token_id=PAD)
    assert torch.equal(cached.sequences, recomputed.sequences)
    reference = model.generate(input_ids, attention_mask=mask, do_sample=False, max_new_tokens=8, min_new_tokens=8,
                               pad_token_id=PAD)
    assert torch.equal(cached.sequences, reference)
    assert cached.sequences.shape == (3, 6 + 8)
    assert cached.new_tokens[:, 6:].all() and not cached.new_tokens[:, :6].any()
    assert torch.equal(cached.attention_mask, torch.cat([mask, torch.ones(3, 8, dtype=torch.long)], dim=1))
    assert cached.lengths.tolist() == [8, 8, 8]


def test_a_padded_row_writes_what_it_writes_alone():
    model = tiny_gpt2()
    input_ids, mask = left_padded_prompts()
    batched = generate(model, input_ids, mask, max_new_tokens=6, pad_token_id=PAD)
    alone = generate(model, torch.tensor([[11, 4]]), torch.ones(1, 2, dtype=torch.long), max_new_tokens=6,
                     pad_token_id=PAD)
    assert torch.equal(batched.sequences[1, -6:], alone.sequences[0, -6:])


def test_right_padded_prompts_are_repacked_and_the_callers_tensors_kept():
    model = tiny_gpt2()
    left_ids, left_mask = left_padded_prompts()
    right_ids = torch.tensor([[5, 9, 14, 3, 7, 22], [11, 4, PAD, PAD, PAD, PAD], [30, 2, 8, 17, PAD, PAD]])
    right_mask = (torch.arange(6) < torch.tensor([[6], [2], [4]])).long()
    before = right_ids.clone(), right_mask.clone()
    from_right = generate(model, right_ids, right_mask, max_new_tokens=4, pad_token_id=PAD)
    from_left = generate(model, left_ids, left_mask, max_new_tokens=4, pad_token_id=PAD)
    assert torch.equal(from_right.sequences, from_left.sequences)
    assert torch.equal(from_right.attention_mask, from_left.attention_mask)
    assert torch.equal(right_ids, before[0]) and torch.equal(right_mask, before[1])


def test_mode_is_restored_and_the_output_can_train_a_student():
    model = tiny_gpt2().train()  # dropout on: generation must switch it off anyway
    model.transformer.h[0].eval()  # a frozen part keeps its own mode
    input_ids, mask = left_padded_prompts()
    generated = generate(model, input_ids, mask, max_new_tokens=3, pad_token_id=PAD)
    assert model.training and not model.transformer.h[0].training and model.transformer.h[1].training
    assert torch.equal(generated.sequences,
                       generate(model.eval(), input_ids, mask, max_new_tokens=3, pad_token_id=PAD).sequences)
    assert not generated.sequences.requires_grad and not generated.sequences.is_inference()
    student = tiny_gpt2(seed=1)
    student(input_ids=generated.sequences, attention_mask=generated.attention_mask).logits.sum().backward()


def test_sampling_is_reproducible_from_the_generator_alone():
    model = tiny_gpt2()
    input_ids, mask = left_padded_prompts()
    global_state = torch.get_rng_state()

    def sample(seed: int, top_p: float = 1.0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return generate(model, input_ids, mask, max_new_tokens=10, temperature=1.0, top_p=top_p,
                        pad_token_id=PAD, generator=generator).sequences

    assert torch.equal(sample(7), sample(7))
    assert not torch.equal(sample(7), sample(8))
    assert torch.equal(sample(7, top_p=0.9), sample(7, top_p=0.9))
    greedy = generate(model, input_ids, mask, max_new_tokens=10, pad_token_id=PAD).sequences
    assert torch.equal(sample(3, top_p=1e-6), greedy)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_temperature_sampling_follows_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    rows = 4000
    generated = generate(FixedLM(logits.tolist()), torch.ones(rows, 1, dtype=torch.long),
                         torch.ones(rows, 1, dtype=torch.long), max_new_tokens=1, temperature=2.0,
                         pad_token_id=PAD, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(generated.sequences[:, -1], minlength=5).float() / rows
    expected = torch.softmax(logits / 2.0, dim=0)
    assert torch.allclose(frequencies, expected, atol=0.025), (frequencies, expected)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])  # top_p 0.7: tokens 0 and 1 (0.8), renormalised
    rows = 4000
    generated = generate(FixedLM(probabilities.log().tolist()), torch.ones(rows, 1, dtype=torch.long),
                         torch.ones(rows, 1, dtype=torch.long), max_new_tokens=1, temperature=1.0, top_p=0.7,
                         pad_token_id=PAD, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(generated.sequences[:, -1], minlength=4).float() / rows
    assert frequencies[2:].sum() == 0
    assert abs(frequencies[0].item() - 0.625) < 0.025


def test_nucleus_by_hand():
    probabilities = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.1, 0.6, 0.2, 0.1]])
    # row 0: 0.5 + 0.25 reaches 0.75 exactly, so the 0.125s go; row 1: 0.6 < 0.75, so 0.2 joins
    assert torch.equal(nucleus(probabilities, 0.75), torch.tensor([[0.5, 0.25, 0.0, 0.0], [0.0, 0.6, 0.2, 0.0]]))
    assert torch.equal(nucleus(probabilities, 1e-6), torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.6, 0.0, 0.0]]))
    assert torch.equal(nucleus(probabilities, 1.0), probabilities)


def test_a_row_stops_after_its_eos():
    eos, word = 3, 5
    prompt = torch.tensor([[1, 2], [PAD, 4]])
    mask = torch.tensor([[1, 1], [0, 1]])
    model = ScriptedLM([[word, word, eos, word], [word]], prompt_length=2)  # row 0: EOS at step 2
    generated = generate(model, prompt, mask, max_new_tokens=5, eos_token_id=eos, pad_token_id=PAD)
    assert generated.sequences.tolist() == [[1, 2, word, word, eos, PAD, PAD], [PAD, 4, word, word, word, word, word]]
    assert generated.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1]]
    assert generated.new_tokens.tolist() == [[False, False, True, True, True, False, False],
                                             [False, False, True, True, True, True, True]]
    assert generated.lengths.tolist() == [3, 5]


def test_generation_ends_when_every_row_stopped():
    eos, word = 3, 5
    model = ScriptedLM([[word, word, eos], [eos]], prompt_length=1)  # row 1 stops at once, row 0 at step 2
    generated = generate(model, torch.tensor([[1], [2]]), torch.ones(2, 1, dtype=torch.long), max_new_tokens=20,
                         eos_token_id=eos, pad_token_id=PAD)
    assert generated.sequences.tolist() == [[1, word, word, eos], [2, eos, PAD, PAD]]
    assert generated.lengths.tolist() == [3, 1]
    assert generated.new_tokens.tolist() == [[False, True, True, True], [False, True, False, False]]


@pytest.mark.parametrize("settings, problem", [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"pad_token_id": None}, "pad_token_id"),
    ({"temperature": 1.0, "generator": None}, "generator"),
    ({"max_new_tokens": 60}, "shorter prompts"),
])
def test_bad_settings_are_named(settings, problem):
    model = tiny_gpt2()
    input_ids, mask = left_padded_prompts()
    arguments = {"max_new_tokens": 2, "pad_token_id": PAD, **settings}
    with pytest.raises(PotstillError, match=problem) as error:
        generate(model, input_ids, mask, **arguments)
    assert "\n" not in str(error.value)


def test_context_error_gives_the_numbers():
    input_ids, mask = left_padded_prompts()  # longest prompt: 6 tokens, context 64
    with pytest.raises(PotstillError, match=r"6 tokens.*60.*66.*64.*max_new_tokens <= 58"):
        generate(tiny_gpt2(), input_ids, mask, max_new_tokens=60, pad_token_id=PAD)


def test_an_empty_prompt_row_is_named():
    input_ids, mask = left_padded_prompts()
    mask[1] = 0
    with pytest.raises(PotstillError, match=r"prompt rows \[1\] have no real token"):
        generate(tiny_gpt2(), input_ids, mask, max_new_tokens=2, pad_token_id=PAD)
