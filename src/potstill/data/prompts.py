"""Instruction data for language models: JSONL lines of {"prompt": ..., "response": ...}.

    data: {name: prompt_response, args: {train: train.jsonl, test: test.jsonl, tokenizer: runs/my_tokenizer}}

Each pair is one row: the prompt's tokens, the response's tokens and the end-of-text token.
Only the response (and the end token after it) is learned: the prompt's positions are IGNORE
targets, so every loss, the perplexity and the agreement count response tokens only. A prompt that
leaves no room for a response in `max_length` tokens is refused (naming the line); a response
that does not fit is cut, and the notes say how many were.
"""

from __future__ import annotations

from pathlib import Path

from potstill.data.lm import LMData, prompt_rows, target_bytes
from potstill.data.registry import DATASETS, RawData
from potstill.data.text import json_lines
from potstill.data.tokens import check_max_length
from potstill.errors import PotstillError, did_you_mean
from potstill.models.hf_files import load_tokenizer, tokenizer_fingerprint


def read_pairs(path: Path, prompt_key: str, response_key: str) -> list[tuple[str, str, int]]:
    """(prompt, response, line number) of every non-blank line."""
    pairs = []
    for number, record in json_lines(path):
        for key, argument in ((prompt_key, "prompt_key"), (response_key, "response_key")):
            if key not in record:
                raise PotstillError(f"{path}:{number}: no key '{key}'{did_you_mean(key, list(record))}; name the right "
                                    f"key with data.args.{argument}")
            if not isinstance(record[key], str):
                raise PotstillError(f"{path}:{number}: '{key}' is {type(record[key]).__name__}, not a string")
        if not record[response_key].strip():
            raise PotstillError(f"{path}:{number}: the response is empty, so there is nothing to learn; drop the line")
        pairs.append((record[prompt_key], record[response_key], number))
    if not pairs:
        raise PotstillError(f"{path} holds no prompt/response pairs")
    return pairs


def encode_pairs(path: Path, pairs: list, tokenizer, folder: str, max_length: int, split: str,
                 notes: list[str]) -> LMData:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if pad is None:
        raise PotstillError(f"the tokenizer in {folder} has no padding or end-of-text token; save one with an eos_token")
    prompts = tokenizer([p for p, _, _ in pairs], add_special_tokens=False)["input_ids"]
    responses = tokenizer([r for _, r, _ in pairs], add_special_tokens=False)["input_ids"]
    cut = 0
    for index, (prompt, response, (_, _, number)) in enumerate(zip(prompts, responses, pairs)):
        if len(prompt) < 1 or len(prompt) > max_length - 2:
            raise PotstillError(
                f"{path}:{number}: the prompt has {len(prompt)} tokens; it needs 1 to {max_length - 2} so that a response "
                f"fits in max_length {max_length}; shorten it or raise data.args.max_length"
            )
        room = max_length - len(prompt) - (eos is not None)
        if len(response) > room:
            responses[index], cut = response[:room], cut + 1
    if cut:
        notes.append(f"{cut} of {len(pairs)} {split} responses cut to fit max_length {max_length}")
    ids, mask, targets = prompt_rows(prompts, responses, max_length, pad, eos)
    return LMData(ids, mask, targets, len(tokenizer), split=split, tokenizer=tokenizer_fingerprint(tokenizer),
                  tokenizer_path=folder, target_bytes=target_bytes(tokenizer, targets))


@DATASETS.register("prompt_response")
def prompt_response(
    root: str = ".",
    train: str = "train.jsonl",  # relative to root
    test: str = "test.jsonl",
    tokenizer: str = "",  # a model or tokenizer folder: the teacher's tokenizer
    max_length: int = 256,  # tokens per row: prompt + response + end token
    prompt_key: str = "prompt",
    response_key: str = "response",
) -> RawData:
    """Prompt/response pairs (JSONL) for language models; only response tokens are learned."""
    if not tokenizer:
        raise PotstillError("prompt_response: set data.args.tokenizer to the teacher's model or tokenizer folder")
    check_max_length(max_length)
    words = load_tokenizer(tokenizer)
    notes = [f"prompt/response pairs tokenised with {tokenizer} ({len(words)} tokens); only responses are learned"]
    splits = []
    for split, name in (("train", train), ("test", test)):
        path = Path(root).expanduser() / name
        if not path.is_file():
            raise PotstillError(f"prompt_response: no {split} file {path}; set data.args.{split} (relative to data.root)")
        splits.append(encode_pairs(path, read_pairs(path, prompt_key, response_key), words, tokenizer, max_length, split, notes))
        notes.append(f"{len(splits[-1])} {split} pairs from {path} ({splits[-1].counted_tokens()} response tokens)")
    return RawData(splits[0], splits[1], notes)


prompt_response.modality, prompt_response.task = "text", "causal_lm"
