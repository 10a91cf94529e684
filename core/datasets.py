"""Labelled data readers shared by training (`bilstm train`) and evaluation (`bilstm eval`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bilstm.core.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledText:
    """One classification example and where it came from."""

    text: str
    label: str
    line: int


def _read_lines(path: Path, skipped: set[int] | None = None) -> list[str]:
    """The file's lines (LF or CRLF, BOM removed); non-UTF-8 bytes raise `DataError`.

    With `skipped` (a caller that honours --skip-bad-lines), a line that is not valid UTF-8
    becomes an empty string at its place (line numbers stay right) and its number is added to
    `skipped`; the caller must check `skipped` before treating the line as blank.
    """
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if skipped is None:
            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(
                f"{path}:{line}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8"
            ) from exc
        text = _decode_by_line(path, raw, skipped)
    # Split on LF only (str.splitlines would also split at U+2028, form feeds and others,
    # which then count as lines that are not in the file); strip one CR of CRLF.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _decode_by_line(path: Path, raw: bytes, skipped: set[int]) -> str:
    """Decode line by line, blanking (and recording) the lines that are not UTF-8."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    out = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            skipped.add(number)
            log.warning(
                "skipped %s:%d: not valid UTF-8 (byte %d of the line)", path, number, exc.start
            )
            out.append("")
    return "\n".join(out)


def read_classification(path: Path, skip_bad_lines: bool = False) -> list[LabelledText]:
    """Read `label<TAB>text` TSV (optional `label<TAB>text` header) or JSONL {"text","label"}.

    The format is chosen by extension (.jsonl/.json -> JSONL, else TSV). Blank lines are
    ignored. A malformed line raises `DataError` naming file and line, unless `skip_bad_lines`,
    which skips it and logs how many were skipped.
    """
    undecodable: set[int] = set()
    lines = _read_lines(Path(path), undecodable if skip_bad_lines else None)
    jsonl = Path(path).suffix.lower() in (".jsonl", ".json")
    items: list[LabelledText] = []
    bad = len(undecodable)
    for number, line in enumerate(lines, start=1):
        if number in undecodable or not line.strip():
            continue
        try:
            if jsonl:
                item = _parse_jsonl(line, number)
            else:
                if number == 1 and line.strip().lower() == "label\ttext":
                    continue
                item = _parse_tsv(line, number)
        except DataError as exc:
            if not skip_bad_lines:
                raise DataError(f"{path}:{exc}") from None
            bad += 1
            log.warning("skipped %s:%s", path, exc)
            continue
        items.append(item)
    if bad:
        log.warning("%s: skipped %d bad line(s) (--skip-bad-lines)", path, bad)
    if not items:
        raise DataError(f"{path}: contains no examples (expected label<TAB>text lines)")
    return items


def _parse_tsv(line: str, number: int) -> LabelledText:
    if "\t" not in line:
        raise DataError(f"{number}: expected 'label<TAB>text', found no tab character")
    label, text = line.split("\t", 1)
    label = label.strip()
    if not label:
        raise DataError(f"{number}: the label (first column) is empty")
    if "\t" in text:
        columns = line.count("\t") + 1
        raise DataError(
            f"{number}: expected 2 tab-separated columns (label, text), found {columns}"
        )
    return LabelledText(text=text, label=label, line=number)


def _parse_jsonl(line: str, number: int) -> LabelledText:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{number}: not valid JSON ({exc.msg})") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, numbers too long
        raise DataError(
            f"{number}: JSON too deeply nested or with a number too long ({type(exc).__name__})"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise DataError(f'{number}: expected an object with a string "text" and a "label"')
    label = obj.get("label")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise DataError(f'{number}: "label" must be a string or an integer, got {label!r}')
    return LabelledText(text=obj["text"], label=str(label), line=number)


@dataclass(frozen=True)
class TaggedSentence:
    """Tokens and one tag per token, and the line where the sentence starts."""

    tokens: list[str]
    tags: list[str]
    line: int


CONLLU_COLUMNS = {"form": 1, "upos": 3, "xpos": 4}


def read_tagged(
    path: Path, tag_column: str | int = "upos", skip_bad_lines: bool = False
) -> list[TaggedSentence]:
    """Read CoNLL-U (by content: 10 tab-separated columns) or two-column `token<TAB>tag`.

    Sentences are separated by blank lines; `#` comment lines are ignored, as are CoNLL-U
    multi-word token ranges (`1-2`) and empty nodes (`1.1`). `tag_column` is `upos`, `xpos`
    or a 1-based column number (CoNLL-U only).
    """
    undecodable: set[int] = set()
    lines = _read_lines(Path(path), undecodable if skip_bad_lines else None)
    if isinstance(tag_column, str) and not tag_column.isdigit():
        if tag_column.lower() not in ("upos", "xpos"):
            raise DataError(
                f"--tag-column must be upos, xpos or a column number, got {tag_column!r}"
            )
        column = CONLLU_COLUMNS[tag_column.lower()]
    else:
        column = int(tag_column) - 1
        if not 1 <= column <= 9:
            raise DataError(
                f"--tag-column {tag_column} is not a CoNLL-U tag column; use 2..10, upos or xpos"
            )
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    bad = len(undecodable)

    def flush() -> None:
        if tokens:
            sentences.append(TaggedSentence(list(tokens), list(tags), start))
        tokens.clear()
        tags.clear()

    for number, line in enumerate(lines, start=1):
        if number in undecodable:  # skipped like a malformed line: the sentence goes on
            continue
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        if not tokens:
            start = number
        cells = line.split("\t")
        try:
            if len(cells) == 10:
                if "-" in cells[0] or "." in cells[0]:
                    continue
                token, tag = cells[1], cells[column]
            elif len(cells) == 2:
                token, tag = cells
            else:
                raise DataError(
                    f"{number}: expected 10 CoNLL-U columns or 'token<TAB>tag', "
                    f"found {len(cells)} column(s)"
                )
            if not token.strip() or not tag.strip() or tag == "_":
                raise DataError(f"{number}: empty token or tag")
            if any(ch.isspace() for ch in token):
                # Pre-tokenised input is split on whitespace at inference; keep tokens whole.
                token = "".join(token.split())
        except DataError as exc:
            if not skip_bad_lines:
                raise DataError(f"{path}:{exc}") from None
            bad += 1
            continue
        tokens.append(token)
        tags.append(tag.strip())
    flush()
    if bad:
        log.warning("%s: skipped %d bad line(s) (--skip-bad-lines)", path, bad)
    if not sentences:
        raise DataError(f"{path}: contains no sentences (expected CoNLL-U or token<TAB>tag lines)")
    return sentences


def read_text_lines(path: Path, skip_bad_lines: bool = False) -> list[str]:
    """Non-blank lines of a plain UTF-8 text file (cloze training).

    With `skip_bad_lines`, lines that are not valid UTF-8 are skipped and counted.
    """
    undecodable: set[int] = set()
    lines = _read_lines(Path(path), undecodable if skip_bad_lines else None)
    if undecodable:
        log.warning("%s: skipped %d bad line(s) (--skip-bad-lines)", path, len(undecodable))
    texts = [line for n, line in enumerate(lines, start=1) if n not in undecodable and line.strip()]
    if not texts:
        raise DataError(f"{path}: contains no text lines")
    return texts


@dataclass
class Series:
    """Numeric columns of a CSV time series, in file order."""

    columns: dict[str, list[float]]
    rows: int
    lines: list[int]
    """File line number of each row."""
    non_numeric: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    """Columns left out of `columns` (reading without a column list) because a cell is not a
    number: column -> (line of the first such cell, the cell, how many cells were numbers).
    A column with some numbers is most likely numeric data with a bad cell."""

    def cell_error(self, path: Path, column: str, hint: str = "") -> DataError:
        """The error for `column`'s first non-numeric cell: file:line, column and value."""
        line, cell, _ = self.non_numeric[column]
        return DataError(
            f"{path}:{line}: column '{column}' has "
            f"{'a missing value' if not cell else repr(cell)}, expected a number" + hint
        )


def read_series(path: Path, columns: list[str] | None = None) -> Series:
    """Read a CSV with a header into float columns; every value must be a finite number.

    With `columns`, only those are read (and must exist). A missing value, a non-numeric cell
    or NaN/inf raises `DataError` with file, line and column.
    """
    import csv
    import math

    lines = _read_lines(Path(path))
    if not lines:
        raise DataError(f"{path}: is empty, expected a CSV with a header row")
    csv.field_size_limit(1 << 20)
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise DataError(f"{path}:1: malformed CSV header ({exc})") from None
    wanted = columns if columns is not None else header
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}: columns {missing} not in the header {header}")
    index = {c: header.index(c) for c in wanted}
    data: dict[str, list[float]] = {c: [] for c in wanted}
    numeric = dict.fromkeys(wanted, True)
    first_bad: dict[str, tuple[int, str, int]] = {}
    line_numbers: list[int] = []
    rows_iter = enumerate(reader, start=2)
    while True:
        try:
            number, row = next(rows_iter)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{path}: malformed CSV near line {reader.line_num} ({exc})") from None
        if not row or all(not cell.strip() for cell in row):
            continue
        line_numbers.append(number)
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} columns, found {len(row)}")
        for col, i in index.items():
            cell = row[i].strip()
            try:
                value = float(cell)
            except ValueError:
                if columns is None:  # discovering numeric columns: drop this one
                    numeric[col] = False
                    first_bad.setdefault(col, (number, cell, 0))
                    continue
                raise DataError(
                    f"{path}:{number}: column '{col}' has "
                    f"{'a missing value' if not cell else repr(cell)}, "
                    "expected a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{path}:{number}: column '{col}' is {cell}, expected a finite number"
                )
            data[col].append(value)
    keep = {c: v for c, v in data.items() if numeric[c]}
    rows = len(next(iter(keep.values()))) if keep else 0
    if rows == 0:
        raise DataError(f"{path}: contains no numeric data rows")
    dropped = {c: (line, cell, len(data[c])) for c, (line, cell, _) in first_bad.items()}
    return Series(columns=keep, rows=rows, lines=line_numbers, non_numeric=dropped)
