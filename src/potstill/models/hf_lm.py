"""Causal language models (next-token prediction) from transformers, from local folders only.

    hf_lm(path="/models/my-gpt")                          # any local causal-LM folder (safetensors weights)
    hf_lm_config(model_type="gpt2", layers=4, hidden=256, heads=4)   # random init, the data's vocabulary

Each returns a transformers ...ForCausalLM model called as model(input_ids=..., attention_mask=...)
whose logits are (B, L, V): one next-token distribution per position (potstill.positions). The
vocabulary size V is the data's (`num_classes` of a language-model dataset); a folder model whose
output size differs is refused with both sizes. `input_shape` is (L,), the context of a row.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from potstill.errors import PotstillError
from potstill.model_io import KeywordIO, attach_io
from potstill.models import MODELS, check_positive_int
from potstill.models.hf import check_positions, finish, on_meta_device, sequence_length
from potstill.models.hf_files import load_tokenizer, model_folder, transformers_module


CONTEXT_KEY = "data.args.context (shakespeare) or data.args.max_length (prompt_response)"


def output_size(config: Any) -> int:
    return int(config.vocab_size)


def context_of(config: Any) -> int:
    for name in ("n_positions", "max_position_embeddings"):
        if isinstance(getattr(config, name, None), int):
            return int(getattr(config, name))
    return 1 << 30  # no learned positions (e.g. ALiBi): no limit the config states


@MODELS.register("hf_lm")
def hf_lm(input_shape: tuple[int], num_classes: int, path: str) -> nn.Module:
    """A causal language model from a local save_pretrained folder (weights in safetensors) and its tokenizer."""
    length = sequence_length("hf_lm", input_shape)
    folder = model_folder(path, need_weights=True)
    transformers = transformers_module()
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    check_positions("hf_lm", length, context_of(config), CONTEXT_KEY)
    if output_size(config) != num_classes:
        raise PotstillError(
            f"model 'hf_lm' in {folder} predicts {output_size(config)} tokens but the data's vocabulary has "
            f"{num_classes}: tokenise the data with this model's tokenizer (data.args.tokenizer: {path})"
        )
    classes = transformers.AutoModelForCausalLM
    if on_meta_device():
        return attach_io(classes.from_config(config), KeywordIO())
    try:
        model = classes.from_pretrained(str(folder), config=config, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise PotstillError(f"cannot load the language model in {folder}: {first}") from None
    return finish_lm(model, path)


def finish_lm(model: nn.Module, tokenizer: str | None) -> nn.Module:
    """Attach the calling convention, and the tokenizer record when the tokenizer is known."""
    if tokenizer is None:
        return attach_io(model, KeywordIO())
    if not hasattr(model.config, "max_position_embeddings"):
        model.config.max_position_embeddings = context_of(model.config)
    return finish(model, tokenizer, load_tokenizer(tokenizer))


@MODELS.register("hf_lm_config")
def hf_lm_config(input_shape: tuple[int], num_classes: int, model_type: str = "gpt2", layers: int = 2, hidden: int = 128,
                 heads: int = 2, intermediate: int | None = None, max_positions: int | None = None,
                 dropout: float = 0.0, tokenizer: str | None = None) -> nn.Module:
    """A random-init causal LM (GPT-2 style by default) over the data's vocabulary; context max_positions (default: the data's)."""
    length = sequence_length("hf_lm_config", input_shape)
    max_positions = length if max_positions is None else max_positions
    for name, value in (("vocabulary size", num_classes), ("layers", layers), ("hidden", hidden), ("heads", heads),
                        ("max_positions", max_positions)):
        check_positive_int("hf_lm_config", name, value)
    if hidden % heads:
        raise PotstillError(f"model 'hf_lm_config': hidden ({hidden}) must be a multiple of heads ({heads})")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise PotstillError(f"model 'hf_lm_config': dropout must be a number in [0, 1), got {dropout!r}")
    check_positions("hf_lm_config", length, max_positions, f"{CONTEXT_KEY} (or the model's max_positions)")
    eos = load_tokenizer(tokenizer).eos_token_id if tokenizer is not None else None
    settings: dict[str, Any] = dict(vocab_size=num_classes, hidden_size=hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, max_position_embeddings=max_positions,
                                    bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    if model_type == "gpt2":
        settings |= dict(n_inner=intermediate or 4 * hidden, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    else:
        settings |= dict(intermediate_size=intermediate or 4 * hidden, attention_dropout=dropout)
    transformers = transformers_module()
    try:
        config = transformers.AutoConfig.for_model(model_type, **settings)
        model = transformers.AutoModelForCausalLM.from_config(config)
    except ValueError as error:
        raise PotstillError(f"model 'hf_lm_config': {str(error).splitlines()[0][:200]}") from None
    return finish_lm(model, tokenizer)


hf_lm.modality = hf_lm_config.modality = "text"
hf_lm.task = hf_lm_config.task = "causal_lm"  # next-token logits (B, L, V): startup.check_modality
