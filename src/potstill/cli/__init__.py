"""The `potstill` command line."""
