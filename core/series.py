"""Sliding windows over a numeric series, shared by training and inference."""

from __future__ import annotations


def window_starts(rows: int, window: int, rolling: bool) -> list[int]:
    """Start rows of the windows to forecast from: all of them, or only the last one."""
    if rows < window:
        return []
    last = rows - window
    return list(range(last + 1)) if rolling else [last]
