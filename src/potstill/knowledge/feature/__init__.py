"""Feature-based knowledge: intermediate feature maps, hints and attention maps."""
