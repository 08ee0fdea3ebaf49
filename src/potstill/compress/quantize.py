"""Quantization-aware distillation: an int8 student taught by a full-precision teacher.

Polino, Pascanu & Alistarh, "Model compression via distillation and quantization", ICLR 2018
(arXiv 1802.05668); Mishra & Marr, "Apprentice", ICLR 2018 (arXiv 1711.05852). The student trains
with fake quantization in the forward pass and straight-through gradients, so it learns weights
that survive rounding to int8, while the loss is the usual L = alpha * CE + beta * T^2 KL(teacher || student)
against the fp32 teacher:

    w_q = s_w * clamp(round(w / s_w), -128, 127)          s_w = max|w_row| / 127.5  (per output channel)
    x_q = s_x * (clamp(round(x / s_x) + z, -128, 127) - z)  s_x, z from each row's min/max (dynamic)

Fake quantization is torchao's (`QATConfig` with `IntxFakeQuantizeConfig`: int8 per-channel
symmetric weights, int8 per-token asymmetric dynamic activations) on every nn.Linear. The trained
weights stay fp32 tensors of the same names, so the saved file loads into the plain model; the
real int8 model is ONNX Runtime's (`potstill export --int8`, run automatically after a
quantization-aware distill), whose int8 kernels run on CPUs with AVX2/AVX-512 VNNI. ONNX
Runtime's activation ranges are per tensor, not per token: the int8 file's accuracy is measured,
never assumed from the simulation.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from potstill.errors import PotstillError

# layers that hold weights but no matrix product: they stay fp32 in ONNX Runtime's int8 models too
FLOAT_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def unsupported_layers(model: nn.Module) -> list[str]:
    """'name (Type)' of every layer with weights of its own that quantization-aware training
    would leave unquantized: convolutions, embeddings, recurrent and attention layers, ..."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, *FLOAT_LAYERS)) or is_fake_quantizer(module):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            found.append(f"{name or '(the model itself)'} ({type(module).__name__})")
    return found


def is_fake_quantizer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torchao.")


def quantization_aware(model: nn.Module) -> bool:
    """True once prepare_qat has swapped the model's linear layers."""
    return any(type(module).__name__ == "FakeQuantizedLinear" for module in model.modules())


def prepare_qat(model: nn.Module, what: str = "student") -> str:
    """Swap every nn.Linear of `model` (in place) for torchao's fake-quantized one; returns a line
    for the log. Layers QAT cannot cover are refused by name before anything changes."""
    unsupported = unsupported_layers(model)
    if unsupported:
        shown = ", ".join(unsupported[:6]) + (f" and {len(unsupported) - 6} more" if len(unsupported) > 6 else "")
        raise PotstillError(
            f"student.quantize: quantization-aware training covers linear layers (torchao), but the {what} also has "
            f"layers with weights it would leave in float: {shown}; use a fully connected student, or train in fp32 and "
            "quantize after training with `potstill export RUN --int8` (static int8 covers convolutions)"
        )
    linear = sum(isinstance(module, nn.Linear) for module in model.modules())
    if linear == 0:
        raise PotstillError(f"student.quantize: the {what} has no nn.Linear layer to quantize")
    if quantization_aware(model):
        return f"quantize {what}: already quantization-aware"
    with quiet_torchao():
        from torchao.quantization import quantize_
        from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

        activations = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
        weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        quantize_(model, QATConfig(activation_config=activations, weight_config=weights, step="prepare"))
    return (f"quantize {what}: {linear} linear layers train with int8 fake quantization (torchao: per-channel weights, "
            "per-token dynamic activations); the int8 model is ONNX Runtime's")


def to_float(model: nn.Module) -> nn.Module:
    """A copy of a quantization-aware model with plain nn.Linear layers holding the trained
    weights (torchao's convert step): what export_onnx and quantize_int8 take. The model given
    is not changed."""
    plain = copy.deepcopy(model)
    if quantization_aware(plain):
        with quiet_torchao():
            from torchao.quantization import quantize_
            from torchao.quantization.qat import QATConfig

            quantize_(plain, QATConfig(step="convert"))
    return plain


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """torchao prints failures to load CUDA-only kernels and deprecation notes on import; on a
    CPU they are noise. A missing torchao becomes one PotstillError."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                import torchao  # noqa: F401
            except ImportError as error:
                raise PotstillError(f"student.quantize needs torchao, which is not installed ({error}); "
                                    "pip install -e '.[compress]'") from None
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
