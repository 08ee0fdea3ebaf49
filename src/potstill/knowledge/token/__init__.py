"""Token-level losses for language models: a divergence between the teacher's and the student's
next-token distributions at every counted position (classifiers are the case L = 1), averaged
over the counted tokens. What they share (selecting the counted positions, temperature, float32
log-space arithmetic, the token mean) lives in common.py; each file holds one divergence.
"""
