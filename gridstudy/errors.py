"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A bad input (search space, config value, data file, path): one line, exit code 2.

    The message names the problem and, where it helps, what to do about it.
    """


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, cut between words, never inside one.

    Runs of whitespace (line breaks included) become one space; a cut ends with an ellipsis. Only
    a first word longer than the whole limit (a path, a hash) is cut inside, as nothing else fits.
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 1]
    if flat[limit - 1] != " ":  # the cut falls inside a word: drop that word
        space = cut.rfind(" ")
        cut = cut[:space] if space > 0 else cut
    return cut.rstrip(" ,;:") + "…"
