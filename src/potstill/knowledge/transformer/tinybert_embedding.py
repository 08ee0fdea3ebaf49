"""TinyBERT embedding-layer distillation: the student's embeddings, projected, regress the teacher's.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351, Sec. 3.1 (embedding-layer distillation):
    L_embd = MSE(E_S W_e, E_T)
with E the embedding layer's output (B, L, D) and W_e a learnable linear map from the student's
width to the teacher's (here an nn.Linear, built only when the widths differ). The MSE is the mean
over real tokens (attention_mask 1) and over the feature dimension. The paper weighs every layer's
term equally (lambda = 1).
"""

from __future__ import annotations

from potstill.knowledge.base import LOSSES
from potstill.knowledge.transformer.tinybert_hidden import TinyBERTHidden


@LOSSES.register("tinybert_embedding")
class TinyBERTEmbedding(TinyBERTHidden):
    """MSE between projected student embeddings and teacher embeddings over real tokens (Jiao et al. 2020)."""

    pairing = "embeddings"  # one pair: tinybert_hidden's computation, with its own projection W_e
    label = "tinybert_embedding"
