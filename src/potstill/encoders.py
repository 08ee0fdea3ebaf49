"""Where a transformer encoder keeps what transformer losses compare, found by its structure.

    layout = encoder_layout(model)          # None when the model is not a transformer encoder
    layout.embeddings                       # 'bert.embeddings'               (B, L, D)
    layout.layers[i]                        # 'bert.encoder.layer.3'         (B, L, D) hidden state after layer i
    layout.attentions[i]                    # 'bert.encoder.layer.3.attention.self:1'   (B, H, L, L) probabilities
    layout.values[i]                        # 'bert.encoder.layer.3.attention.self.value' (B, L, H * d_head)

The names are ordinary tap names (potstill.taps): `NAME:1` is element 1 of the module's tuple
output, which is where BERT-family self-attention modules return their attention probabilities
(only with eager attention: SDPA computes none, see `eager_attention`). Found by structure, not by
model family: the embeddings module is the one holding `word_embeddings`; the layers are the
ModuleList whose blocks each hold a self-attention module with query/key/value projections.

Layer maps pair M student layers with N teacher layers (printed at start-up with the pairs):
    uniform   student layer m <- teacher layer m*N/M (TinyBERT's g(m), 1-based), e.g. 3 <- 6: 1<-2, 2<-4, 3<-6
    last      the teacher's top M layers: m <- N - M + m
    [t1, ...] explicit teacher layer per student layer, 0-based
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from potstill.errors import PotstillError

PROJECTIONS = ("query", "key", "value")


@dataclass
class EncoderLayout:
    embeddings: str
    layers: list[str]
    attentions: list[str]
    values: list[str]


def encoder_layout(model: nn.Module) -> EncoderLayout | None:
    modules = dict(model.named_modules())
    embeddings = next((name for name, module in modules.items() if hasattr(module, "word_embeddings")), None)
    for name, module in modules.items():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        attention = [self_attention(block) for block in module]
        if len({type(block) for block in module}) == 1 and all(found is not None for found in attention):
            layers = [f"{name}.{index}" for index in range(len(module))]
            attentions = [f"{layer}.{inner}:1" for layer, inner in zip(layers, attention)]
            values = [f"{layer}.{inner}.value" for layer, inner in zip(layers, attention)]
            return EncoderLayout(embeddings or "", layers, attentions, values)
    return None


def self_attention(block: nn.Module) -> str | None:
    """The name (inside `block`) of its self-attention module: the one with query/key/value projections."""
    for name, module in block.named_modules():
        if name and all(isinstance(getattr(module, part, None), nn.Linear) for part in PROJECTIONS):
            return name
    return None


def require_layout(model: nn.Module, role: str, loss: str) -> EncoderLayout:
    layout = encoder_layout(model)
    if layout is None:
        raise PotstillError(
            f"loss '{loss}' compares transformer layers, but the {role} ({type(model).__name__}) has no encoder layers "
            "with query/key/value self-attention that potstill can find; use a BERT-family model, or set pairs "
            "explicitly: [{student: NAME, teacher: NAME}] (`potstill list taps MODEL`)"
        )
    return layout


def map_layers(student_count: int, teacher_count: int, rule: str | list[int], loss: str) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, 0-based, for a layer map rule."""
    if isinstance(rule, list):
        if len(rule) != student_count:
            raise PotstillError(
                f"distill.layer_map lists {len(rule)} teacher layers but the student has {student_count} (loss '{loss}'); "
                f"give one teacher layer (0..{teacher_count - 1}) per student layer"
            )
        bad = [layer for layer in rule if not 0 <= layer < teacher_count]
        if bad:
            raise PotstillError(
                f"distill.layer_map names teacher layer(s) {bad}, but the teacher has layers 0..{teacher_count - 1} (loss '{loss}')"
            )
        return list(enumerate(rule))
    if student_count > teacher_count:
        raise PotstillError(
            f"loss '{loss}': the student has {student_count} layers and the teacher {teacher_count}; a layer map needs a "
            "teacher at least as deep, or an explicit distill.layer_map"
        )
    if rule == "last":
        return [(m, teacher_count - student_count + m) for m in range(student_count)]
    return [(m - 1, m * teacher_count // student_count - 1) for m in range(1, student_count + 1)]  # uniform


def eager_attention(model: nn.Module, role: str) -> str | None:
    """Attention maps exist only with eager attention (transformers computes none with SDPA or
    flash kernels): switch a transformers model to it; a line for the log, or None if it was."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if config is None or current in (None, "eager"):
        return None
    if not hasattr(model, "set_attn_implementation"):
        raise PotstillError(f"the {role} uses {current} attention, which returns no attention maps, and cannot switch to eager attention")
    model.set_attn_implementation("eager")
    return f"{role}: attention maps are tapped, so attention runs eagerly (attn_implementation='eager', was {current}): slower than {current}"
