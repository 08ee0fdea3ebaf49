"""A PyTorch model as an ONNX file that ONNX Runtime runs, optionally quantized to int8.

    path = export_onnx(model, {"input": images[:4]}, "student.onnx")      # dynamic batch axis
    int8 = quantize_int8(path, "student.int8.onnx", calibration_batches)  # static QDQ, per-channel weights
    logits = OnnxModel(int8)({"input": images})                           # numpy in, numpy out

Export uses torch.onnx's dynamo exporter (the maintained path of torch >= 2.5) and writes one
self-contained file (weights inside, no .data sidecar). The input preprocessing potstill attaches
to a model (a forward pre-hook) is traced with it, so the file takes the same raw inputs as
`potstill.load_model(...)`. int8 is ONNX Runtime's quantization: `static` (QDQ, activation ranges
calibrated on training batches, per-channel int8 weights) runs int8 convolutions and matrix
products; `dynamic` (per-channel int8 weights, activation ranges measured per batch) suits
fully connected models only: ONNX Runtime's dynamic ConvInteger is slower than fp32 on CPUs
(docs/BENCHMARKS.md, "Compression").
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.model_io import call_model

INT8_MODES = ("auto", "static", "dynamic")  # auto: static with convolutions, else dynamic (ONNX Runtime's advice)
INSTALL = "pip install -e '.[compress]' (onnx, onnxruntime, onnxscript)"
# ops whose presence shows ONNX Runtime runs int8 arithmetic, not fp32 with int8 storage
INT8_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear")


def require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise PotstillError(f"ONNX export needs the {module} package, which is not installed ({error}); {INSTALL}") from None


class Logits(nn.Module):
    """The model as a function of its input tensors, in a fixed order, returning its logits."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return call_model(self.model, dict(zip(self.names, tensors)))


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: str | Path, *, what: str = "model") -> Path:
    """Write `model` (eval mode, CPU) as ONNX to `path` with a dynamic batch axis (and a dynamic
    sequence axis for token inputs). `example`: one batch of its inputs, e.g. {"input": (B, C, H, W)}.
    A model that cannot be exported gets one PotstillError naming the operator."""
    require("onnx"), require("onnxscript")
    path = Path(path)
    names = list(example)
    tensors = tuple(example[name].detach().cpu() for name in names)
    if tensors and tensors[0].shape[0] < 2:
        raise PotstillError(f"export_onnx: the example batch of {what} must hold at least 2 samples (the batch axis is dynamic)")
    batch = torch.export.Dim("batch", min=1, max=65536)
    length = torch.export.Dim("length", min=1, max=65536)
    shapes = tuple({0: batch, 1: length} if tensor.dtype in (torch.int64, torch.int32) and tensor.dim() == 2 else {0: batch}
                   for tensor in tensors)
    wrapped = Logits(model, names).eval()
    try:  # the exporter traces symbolically and may accept inputs the model cannot run on
        with torch.no_grad():
            wrapped(*tensors)
    except Exception as error:  # noqa: BLE001 - any failure of the user's forward pass is reported the same way
        raise PotstillError(f"export_onnx: {what} does not run on the example inputs "
                            f"({', '.join(f'{n} {tuple(t.shape)} {t.dtype}' for n, t in zip(names, tensors))}): "
                            f"{str(error).splitlines()[0][:300]}; give inputs as the model takes them") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        draft = Path(scratch) / path.name
        try:
            with quiet_exporter(), torch.no_grad():
                program = torch.onnx.export(wrapped, tensors, dynamo=True, input_names=names, output_names=["logits"],
                                            dynamic_shapes=(shapes,), optimize=True, verbose=False)
                program.save(str(draft), external_data=False)
        except PotstillError:
            raise
        except Exception as error:  # noqa: BLE001 - the exporter raises many types; the user needs the operator
            raise PotstillError(f"{what} cannot be exported to ONNX: {export_problem(error)}; replace that operation in "
                                "the model, or export the model yourself and time it with potstill.compress.OnnxModel") from None
        os.replace(draft, path)  # the file appears whole or not at all
    return path


def export_problem(error: BaseException) -> str:
    """The operator an export failed on, from the exporter's long message."""
    text = str(error)
    found = re.search(r"op='([\w.]+)'", text) or re.search(r"target=torch\.ops\.([\w.]+)", text)
    summary = text[text.find("## Exception summary"):] if "## Exception summary" in text else text
    reason = next((line for line in summary.splitlines() if line.startswith("<class")), summary.splitlines()[0] if summary else "")
    reason = re.sub(r"^<class '[\w.]+'>: ", "", reason)[:300]
    if found:
        return f"operator {found.group(1).removesuffix('.default')} has no ONNX conversion ({reason})"
    return reason or type(error).__name__


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter prints progress, deprecation warnings and 'torchvision is not installed' lines."""
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class OnnxModel:
    """An ONNX file in ONNX Runtime on the CPU: call it with a batch of tensors or arrays, get
    logits as numpy. `threads`: intra-op threads (default torch's, so timings compare)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise PotstillError(f"{self.path} does not exist; write it with potstill export or export_onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a damaged or foreign file
            raise PotstillError(f"ONNX Runtime cannot load {self.path}: {str(error).splitlines()[0][:300]}") from None
        self.names = [node.name for node in self.session.get_inputs()]

    def __call__(self, batch: dict[str, Any]) -> np.ndarray:
        feed = {name: _numpy(batch[name]) for name in self.names}
        return self.session.run(None, feed)[0]

    def operators(self) -> dict[str, int]:
        """How many nodes of each operator type the file holds."""
        return operators(self.path)


def operators(path: str | Path) -> dict[str, int]:
    """How many nodes of each operator type an ONNX file holds (read with onnx, no session)."""
    model = require("onnx").load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


def int8_mode(source: str | Path, mode: str = "auto") -> str:
    """`mode`, with auto resolved: static for a file with convolutions (ONNX Runtime's dynamic
    ConvInteger is slow), dynamic otherwise (transformers and MLPs: per-batch activation ranges
    keep outliers; static ranges cost a BERT encoder 50 points of top-1 in our trials)."""
    if mode not in INT8_MODES:
        raise PotstillError(f"int8 mode '{mode}' is unknown; use one of {', '.join(INT8_MODES)}")
    if mode != "auto":
        return mode
    return "static" if "Conv" in operators(source) else "dynamic"


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable[dict[str, Any]] | None = None,
                  mode: str = "auto") -> Path:
    """Quantize the ONNX file `source` to int8 at `target` with ONNX Runtime. `static` needs
    `calibration`: batches of training inputs (never test data) whose activation ranges set the
    scales; `dynamic` quantizes weights only and measures activations per batch; `auto` picks
    (int8_mode)."""
    mode = int8_mode(source, mode)
    quantization = require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as scratch:
        prepared, draft = Path(scratch) / "prepared.onnx", Path(scratch) / target.name
        with quiet_exporter():
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            if mode == "dynamic":
                quantization.quantize_dynamic(str(prepared), str(draft), per_channel=True,
                                              weight_type=quantization.QuantType.QInt8)
            else:
                batches = [dict(batch) for batch in (calibration or [])]
                if not batches:
                    raise PotstillError("static int8 quantization needs calibration batches (training inputs); give some, "
                                        "or use mode='dynamic'")
                quantization.quantize_static(
                    str(prepared), str(draft), Calibration(batches), quant_format=quantization.QuantFormat.QDQ,
                    per_channel=True, activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8,
                )
        os.replace(draft, target)
    return target


class Calibration:
    """ONNX Runtime's CalibrationDataReader interface over a list of input batches."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = iter([{name: _numpy(value) for name, value in batch.items()} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:  # part of the interface; one pass is all calibration needs here
        pass


def int8_operators(model: OnnxModel) -> dict[str, int]:
    """The int8 operators in the file (empty: nothing was quantized)."""
    return {name: count for name, count in model.operators().items() if name in INT8_OPS}
