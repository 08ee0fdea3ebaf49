"""Transformer-layer knowledge: losses between the token sequences inside two transformers (the
embedding output, each mapped layer's hidden states (B, L, D), its attention probabilities
(B, H, L, L) and values), as in DistilBERT, TinyBERT and MiniLM. Every sequence term counts only
real tokens: positions where `batch["attention_mask"]` is 0 (padding) never change a value, and all
positions count when the batch has no mask. Where the method allows it, a learned projection maps
the student's width onto the teacher's; it is built in `setup` and trains with the student.
"""
