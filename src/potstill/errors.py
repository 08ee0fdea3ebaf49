"""The one exception type for mistakes a user can make (bad recipe, missing file, wrong shapes).

The CLI prints such an error as one line and exits non-zero; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class PotstillError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""


def nearest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.5) -> str | None:
    """Return the choice closest to `word` (for "did you mean ...?" hints), or None."""
    import difflib

    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    guess = nearest(word, choices)
    return f" (did you mean '{guess}'?)" if guess else ""
