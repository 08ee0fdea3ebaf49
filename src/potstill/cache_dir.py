"""Where potstill keeps what it can rebuild: token ids, trained tokenizers, converted models.

    $POTSTILL_CACHE_DIR, or ~/.cache/potstill when it is not set
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("POTSTILL_CACHE_DIR") or "~/.cache/potstill").expanduser()
