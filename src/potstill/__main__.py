"""`python -m potstill`: the potstill command, also as torchrun starts it on every rank
(`torchrun --nproc_per_node 2 -m potstill distill RECIPE`, docs/distributed.md)."""

import sys

from potstill.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
