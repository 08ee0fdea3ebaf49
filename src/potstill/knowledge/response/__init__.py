"""Response-based knowledge: losses on the models' output logits."""
