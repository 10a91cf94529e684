"""Labelled data readers shared by training (`bilstm train`) and evaluation (`bilstm eval`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from bilstm.runtime.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledText:
    """One classification example and where it came from."""

    text: str
    label: str
    line: int


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8"
        ) from exc
    return text.splitlines()


def read_classification(path: Path, skip_bad_lines: bool = False) -> list[LabelledText]:
    """Read `label<TAB>text` TSV (optional `label<TAB>text` header) or JSONL {"text","label"}.

    The format is chosen by extension (.jsonl/.json -> JSONL, else TSV). Blank lines are
    ignored. A malformed line raises `DataError` naming file and line, unless `skip_bad_lines`,
    which skips it and logs how many were skipped.
    """
    lines = _read_lines(Path(path))
    jsonl = Path(path).suffix.lower() in (".jsonl", ".json")
    items: list[LabelledText] = []
    bad = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
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
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise DataError(f'{number}: expected an object with a string "text" and a "label"')
    label = obj.get("label")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise DataError(f'{number}: "label" must be a string or an integer, got {label!r}')
    return LabelledText(text=obj["text"], label=str(label), line=number)
