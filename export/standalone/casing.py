"""Python's `str.lower`, frozen into tables that LabelEncoder nodes apply in the graph.

`StringNormalizer` is no substitute: it lower-cases with the C library's `towlower` in a named
locale (missing on some machines), maps one character to one and knows no final sigma.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from bilstm.export.standalone.regex import MAX_CP

# Final-sigma context classes of characters (Python's `handle_capital_sigma`).
OTHER, IGNORABLE, CASED = 0, 1, 2
CAPITAL_SIGMA, FINAL_SIGMA = "Σ", "ς"


@functools.lru_cache(maxsize=1)
def lowercase_table() -> tuple[list[str], list[str]]:
    """Every character whose `str.lower()` differs from it, and that lower-case form."""
    keys, values = [], []
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        low = c.lower()
        if low != c:
            keys.append(c)
            values.append(low)
    return keys, values


@functools.lru_cache(maxsize=1)
def sigma_context_table() -> tuple[list[str], list[int]]:
    """Characters by their role in Python's final-sigma rule: case-ignorable or cased.

    Python lower-cases "Σ" to "ς" when a cased character precedes it and none follows it,
    skipping case-ignorable characters both ways. The classes are read off `str.lower` itself.
    """
    keys, values = [], []
    for cp in range(MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if (c + CAPITAL_SIGMA).lower().endswith(FINAL_SIGMA):
            keys.append(c)
            values.append(CASED)
        elif ("A" + c + CAPITAL_SIGMA).lower().endswith(FINAL_SIGMA):
            keys.append(c)
            values.append(IGNORABLE)
    return keys, values


def needs_final_sigma(vocabulary: Sequence[str]) -> bool:
    """True when σ/ς decide a lookup: without them in the vocabulary every token with Σ is
    unknown whichever sigma it lower-cases to, and the rule can be left out of the graph."""
    return any("σ" in t or "ς" in t for t in vocabulary)
