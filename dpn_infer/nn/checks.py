"""Argument checks shared by the dpn_infer.nn modules (one wording for every error)."""
from __future__ import annotations


def positive_int(who: str, name: str, v) -> None:
    """Refuse anything but an int >= 1 (bool is not an int here)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{who}: {name} must be an integer >= 1, got {v!r}")
