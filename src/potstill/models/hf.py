"""Hugging Face encoders as teachers and students, from local folders only.

    hf(path="minilm-l6")                       # the shipped MiniLM-L6 (22.7M) + a new classification head
    hf(path="/models/my-bert")                 # any local save_pretrained folder (safetensors weights)
    hf_config(layers=3, hidden=192, heads=12)  # a random-init student from a config, vocabulary of a tokenizer

Each builder returns a `transformers` ...ForSequenceClassification model with `num_classes`
labels, called as model(input_ids=..., attention_mask=...).logits (potstill.model_io.KeywordIO).
The model records which tokenizer its token ids come from (`text_record`), so a teacher, a
student and the data that disagree on the vocabulary are refused when the models are built.
Input shape for text is (L,): the padded sequence length, checked against the position limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.model_io import KeywordIO, attach_io
from potstill.models import MODELS, check_positive_int
from potstill.models.hf_files import load_tokenizer, model_folder, tokenizer_fingerprint, transformers_module

RECORD = "_potstill_text"


@dataclass(frozen=True)
class TextRecord:
    """Which tokenizer a text model's ids come from, and its limits."""

    tokenizer: str  # the folder or shipped name it was read from
    fingerprint: str  # tokenizer_fingerprint: equal <=> same ids for the same text
    vocab_size: int  # tokens the tokenizer knows
    embeddings: int  # rows of the model's input embedding
    max_positions: int  # the longest sequence the model can take

    def words(self) -> str:
        return f"{self.vocab_size} tokens from {self.tokenizer} (fingerprint {self.fingerprint[:12]})"


def text_record(model: nn.Module) -> TextRecord | None:
    return getattr(model, RECORD, None)


def sequence_length(model: str, input_shape: Any) -> int:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 1:
        raise PotstillError(
            f"model '{model}' is a text model and takes token sequences (input shape (L,)), got input shape "
            f"{tuple(input_shape) if isinstance(input_shape, (tuple, list)) else input_shape}; use it with a text "
            "dataset (fortunes, text_files)"
        )
    return check_positive_int(model, "sequence length", input_shape[0])


def check_positions(model: str, length: int, max_positions: int, key: str = "data.args.max_length") -> None:
    """`key`: the recipe key that sets the sequence length, named in the fix."""
    if length > max_positions:
        raise PotstillError(
            f"model '{model}': sequences of {length} tokens are longer than its {max_positions} positions; "
            f"set {key} to at most {max_positions}"
        )


def finish(model: nn.Module, tokenizer_name: str, tokenizer: Any) -> nn.Module:
    """Attach the calling convention and the tokenizer record."""
    config = model.config
    record = TextRecord(tokenizer_name, tokenizer_fingerprint(tokenizer), len(tokenizer),
                        model.get_input_embeddings().num_embeddings, int(config.max_position_embeddings))
    if record.vocab_size > record.embeddings:
        raise PotstillError(
            f"the tokenizer of {tokenizer_name} knows {record.vocab_size} tokens but the model embeds only "
            f"{record.embeddings}; use the tokenizer the model was trained with"
        )
    object.__setattr__(model, RECORD, record)
    return attach_io(model, KeywordIO())


def on_meta_device() -> bool:
    return torch.get_default_device().type == "meta"  # create_model sizes a model there first


@MODELS.register("hf")
def hf(input_shape: tuple[int], num_classes: int, path: str = "minilm-l6", dropout: float | None = None) -> nn.Module:
    """A Hugging Face encoder from a local folder or a shipped name (minilm-l6) + a classification head."""
    length = sequence_length("hf", input_shape)
    check_positive_int("hf", "num_classes", num_classes)
    folder = model_folder(path, need_weights=True)
    transformers = transformers_module()
    overrides: dict[str, Any] = {"num_labels": num_classes}
    if dropout is not None:
        overrides |= {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **overrides)
    check_positions("hf", length, int(config.max_position_embeddings))
    classes = transformers.AutoModelForSequenceClassification
    if on_meta_device():
        model = classes.from_config(config)
    else:
        try:
            model = classes.from_pretrained(str(folder), config=config, local_files_only=True, use_safetensors=True,
                                            ignore_mismatched_sizes=True)
        except (OSError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise PotstillError(f"cannot load the model in {folder}: {first}") from None
    return finish(model, path, load_tokenizer(path))


@MODELS.register("hf_config")
def hf_config(input_shape: tuple[int], num_classes: int, model_type: str = "bert", layers: int = 3, hidden: int = 384,
              heads: int = 12, intermediate: int | None = None, tokenizer: str = "minilm-l6",
              max_positions: int = 512, dropout: float = 0.1) -> nn.Module:
    """A random-init transformers encoder from a config (model_type, layers, hidden, heads); vocabulary of `tokenizer`."""
    length = sequence_length("hf_config", input_shape)
    for name, value in (("num_classes", num_classes), ("layers", layers), ("hidden", hidden), ("heads", heads),
                        ("max_positions", max_positions)):
        check_positive_int("hf_config", name, value)
    if hidden % heads:
        raise PotstillError(f"model 'hf_config': hidden ({hidden}) must be a multiple of heads ({heads}); e.g. hidden: {heads * max(1, hidden // heads)}")
    check_positions("hf_config", length, max_positions)
    transformers = transformers_module()
    words = load_tokenizer(tokenizer)
    try:
        config = transformers.AutoConfig.for_model(
            model_type, vocab_size=len(words), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=intermediate or 4 * hidden, max_position_embeddings=max_positions, num_labels=num_classes,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=words.pad_token_id or 0,
        )
    except ValueError as error:
        raise PotstillError(f"model 'hf_config': {str(error).splitlines()[0][:200]}") from None
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    return finish(model, tokenizer, words)


hf.modality = hf_config.modality = "text"  # see models.model_modality

