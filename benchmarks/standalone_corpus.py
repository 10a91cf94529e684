"""Token ids of a standalone model's graph vs the Python runtime's, over whole corpora.

Every `bilstm export --with-tokenizer` proves identity on the checkpoint's examples and a set
of probe texts (`bilstm.export.standalone.verify`); this script runs the same row-by-row
comparison over real corpora, by hand:

    python -m benchmarks.standalone_corpus MODEL.onnx [CORPUS ...]

CORPUS: `.tsv` (column 2), `.conllu` (`# text = ` lines, and the FORMs joined by spaces) or
plain text (one text per line). Without CORPUS it reads the dev files of `../shared/data`
(rt_sentiment, ud_en_ewt; see that folder's README for where they come from) and exits with
status 2 and a message when they are absent. Exit status 1 when any text differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import onnx

from benchmarks._common import REPO
from bilstm.core.preprocess import TextEncoder
from bilstm.export.standalone import StandaloneRunner, compare_preprocessing
from bilstm.runtime.metadata import METADATA_KEY, ModelMetadata

SHARED_CORPORA = [
    REPO.parent / "shared" / "data" / "rt_sentiment" / "dev.tsv",
    REPO.parent / "shared" / "data" / "ud_en_ewt" / "dev.conllu",
]


def read_corpus(path: str) -> dict[str, list[str]]:
    """Texts of a corpus file by name: `.tsv` column 2; `.conllu` `# text = ` lines and, as a
    second corpus, the FORMs of each sentence joined by spaces; anything else one per line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if path.endswith(".tsv"):
        rows = [ln.split("\t", 1)[1] for ln in lines if "\t" in ln]
        return {path: rows[1:] if lines and lines[0].startswith("label\t") else rows}
    if not path.endswith(".conllu"):
        return {path: lines}
    texts = [ln[len("# text = ") :] for ln in lines if ln.startswith("# text = ")]
    forms: list[str] = []
    sentence: list[str] = []
    for ln in [*lines, ""]:
        cols = ln.split("\t")
        if len(cols) == 10 and cols[0].isdigit():
            sentence.append(cols[1])
        elif not ln.strip() and sentence:
            forms.append(" ".join(sentence))
            sentence = []
    return {f"{path} (# text)": texts, f"{path} (FORMs)": forms}


def encoder(model: onnx.ModelProto) -> tuple[TextEncoder, str]:
    """The Python runtime's preprocessing of a standalone model, and its task."""
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta.tokenizer is not None
    return TextEncoder.create(meta.tokenizer, meta.vocabulary, meta.task_config), meta.task


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the graph's preprocessing with the Python runtime's on each corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a standalone .onnx (bilstm export --with-tokenizer)")
    parser.add_argument("corpora", nargs="*", help=".tsv, .conllu or plain text files")
    args = parser.parse_args(argv)
    corpora = args.corpora or [str(p) for p in SHARED_CORPORA]
    missing = [c for c in corpora if not Path(c).is_file()]
    if missing:
        print(f"missing corpora {missing}: give files, or see ../shared/data", file=sys.stderr)
        return 2
    model = onnx.load(args.model)
    enc, task = encoder(model)
    runner = StandaloneRunner(model)
    failed = False
    for path in corpora:
        for name, texts in read_corpus(path).items():
            started = time.perf_counter()
            stats = compare_preprocessing(runner, enc, task, texts)
            nonascii = sum(not t.isascii() for t in texts)
            print(
                f"{name}: {stats['texts']} texts ({nonascii} non-ASCII), {stats['tokens']} tokens, "
                f"{stats['mismatched_texts']} texts differ ({time.perf_counter() - started:.1f} s)"
            )
            for example in stats["examples"]:
                print("   ", example)
            failed |= bool(stats["mismatched_texts"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
