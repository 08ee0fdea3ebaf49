"""Compression with distillation: ONNX export and int8 (onnx_file.py, export_run.py), quantization-aware
training (quantize.py), structured pruning (prune.py), student architecture search (student_search.py).

Each optional library (onnxruntime, torchao, torch-pruning, optuna) is imported only by the module
that uses it, when it is used: `pip install -e '.[compress]'` installs them all.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> module; imported on first use so `import potstill` never pulls in onnx, torchao, optuna
_PUBLIC = {
    "export_onnx": "onnx_file", "quantize_int8": "onnx_file", "OnnxModel": "onnx_file",
    "export_run": "export_run", "compare_outputs": "export_run", "time_runtimes": "export_run",
    "prepare_qat": "quantize", "to_float": "quantize", "unsupported_layers": "quantize",
    "prune_model": "prune",
    "search": "student_search", "SearchResult": "student_search",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'potstill.compress' has no attribute '{name}'")
    return getattr(import_module(f"potstill.compress.{_PUBLIC[name]}"), name)


__all__ = list(_PUBLIC)
