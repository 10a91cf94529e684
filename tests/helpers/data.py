"""Synthetic data for the tests, and for the benchmarks, which import it from here (tests never
import `benchmarks`, whose scripts may change for their own reasons)."""

from __future__ import annotations

import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REVIEWS = REPO / "examples" / "reviews.txt"

POSITIVE = ["good", "great", "fun", "lovely", "superb", "warm"]
NEGATIVE = ["bad", "dull", "awful", "boring", "weak", "cold"]
FILLER = ["the", "movie", "film", "plot", "was", "very", "a", "and", "story", "cast"]


def make_sentiment_tsv(path: Path, n: int, seed: int, max_words: int = 8) -> Path:
    """Synthetic ragged label<TAB>text data (with a header line) where one sentiment word
    decides the label; 1 to `max_words` filler words around it."""
    rng = random.Random(seed)
    lines = ["label\ttext"]
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(1, max_words))
        words.insert(
            rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        )
        lines.append(f"{label}\t{' '.join(words).capitalize()}.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def review_lines(n: int, seed: int, mangle: bool = False) -> list[str]:
    """Lines made of the example reviews, 0-3 sentences each (some empty).

    With `mangle`, some lines are cut to a random span of words and some lower-cased.
    """
    base = [s for s in REVIEWS.read_text("utf-8").splitlines() if s]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        picked = rng.sample(base, rng.randint(0, 3))
        if not mangle:
            out.append(" ".join(picked))
            continue
        words = " ".join(picked).split()
        if words and rng.random() < 0.3:  # a cut review: a random span of words
            start = rng.randrange(len(words))
            words = words[start : start + rng.randint(1, 12)]
        text = " ".join(words)
        out.append(text.lower() if rng.random() < 0.2 else text)
    return out
