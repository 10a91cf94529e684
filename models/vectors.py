"""Pretrained word vectors from a local word2vec/GloVe text file."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from bilstm.core.errors import DataError
from bilstm.core.vocab import Vocabulary


def load_vectors(
    embedding: torch.nn.Embedding, vocab: Vocabulary, path: Path, console: Console
) -> int:
    """Copy the vectors of vocabulary words found in `path` into `embedding`; returns hits.

    The file has one `word v1 v2 ... vd` per line (GloVe), optionally after a `count dim`
    header (word2vec text). Words are looked up as written and, failing that, lower-cased.
    The dimension must equal the embedding size. Unmatched words keep their random init.
    """
    dim = embedding.embedding_dim
    hits = 0
    seen: set[int] = set()
    try:
        handle = Path(path).open(encoding="utf-8", errors="strict")
    except OSError as exc:
        raise DataError(f"{path}: cannot read word vectors ({exc})") from exc
    with handle, torch.no_grad():
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) != dim + 1:
                raise DataError(
                    f"{path}:{number}: expected a word and {dim} numbers (the "
                    f"embedding size), found {len(parts) - 1}; set --embedding-dim "
                    "to the vectors' dimension"
                )
            word = parts[0]
            index = vocab.id_of(word) if word in vocab else vocab.id_of(word.lower())
            if index < 2 or index in seen:
                continue
            try:
                values = [float(v) for v in parts[1:]]
            except ValueError:
                raise DataError(f"{path}:{number}: non-numeric vector value") from None
            embedding.weight[index] = torch.tensor(values)
            seen.add(index)
            hits += 1
    console.print(f"word vectors: {hits} of {len(vocab) - 2} vocabulary words found in {path}")
    return hits
