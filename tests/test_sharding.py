"""`bilstm-run --shard I/N` and `bilstm merge`: shards merged equal the unsharded run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers.data import review_lines
from typer.testing import CliRunner

from bilstm.core.errors import InputError
from bilstm.runtime.cli import _make_apps
from bilstm.runtime.sharding import Shard, merge_jsonl, parse_shard, select_chunks

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()
UMBRELLA, SINGLE = _make_apps()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    data = "\n".join(review_lines(200, seed=5)).encode("utf-8") + b"\nbad \xff byte\nlast line\n"
    path.write_bytes(data)
    return path


def test_parse_shard() -> None:
    assert parse_shard("0/1") == Shard(0, 1)
    assert parse_shard(" 2/3 ") == Shard(2, 3)
    for bad in ("3/3", "x/2", "1/0", "-1/2", "1/2/3", "", "1", "²/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_select_chunks_is_round_robin() -> None:
    chunks = list(range(10))
    assert list(select_chunks(chunks, Shard(1, 3))) == [1, 4, 7]
    assert list(select_chunks(chunks, None)) == chunks
    picked = sorted(c for i in range(3) for c in select_chunks(chunks, Shard(i, 3)))
    assert picked == chunks


def test_three_shards_merged_equal_the_unsharded_run(source: Path, tmp_path: Path) -> None:
    common = ["sentiment", str(source), "--chunk-size", "16", "--quiet", "--device", "cpu"]
    whole = runner.invoke(SINGLE, common)
    assert whole.exit_code == 1, whole.output  # the bad-byte line gets an error record
    shards = []
    for i in range(3):
        out = tmp_path / f"shard{i}.jsonl"
        result = runner.invoke(SINGLE, [*common, "--shard", f"{i}/3", "--output", str(out)])
        assert result.exit_code in (0, 1), result.output
        numbers = [json.loads(line)["line"] for line in out.read_text("utf-8").splitlines()]
        assert numbers == sorted(numbers)
        assert all((n - 1) // 16 % 3 == i for n in numbers)  # whole chunks, round robin
        shards.append(out)
    merged = tmp_path / "merged.jsonl"
    result = runner.invoke(UMBRELLA, ["merge", str(merged), *reversed([str(s) for s in shards])])
    assert result.exit_code == 0, result.output
    assert merged.read_text("utf-8") == whole.stdout
    assert len(whole.stdout.splitlines()) == 202
    checked = runner.invoke(UMBRELLA, ["merge", "-", *map(str, shards), "--lines", "202"])
    assert checked.exit_code == 0 and checked.stdout == whole.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [("3/3", "must be in 0..2"), ("x/2", "expected I/N"), ("0/0", "at least 1")],
)
def test_bad_shard_values_exit_2(source: Path, value: str, message: str) -> None:
    result = runner.invoke(SINGLE, ["sentiment", str(source), "--shard", value])
    assert result.exit_code == 2
    assert "--shard" in result.output and message in " ".join(result.output.split())


def test_shard_refuses_forecast_input() -> None:
    demand = REPO / "examples" / "demand.csv"
    result = runner.invoke(SINGLE, ["elecdemand-h1", str(demand), "--shard", "0/2"])
    assert result.exit_code == 2
    assert "--shard" in result.output


def _write(path: Path, numbers: list[int]) -> Path:
    path.write_text("".join(json.dumps({"line": n, "label": "x"}) + "\n" for n in numbers))
    return path


def test_merge_refuses_duplicates_gaps_and_unsorted(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [1, 2, 5, 6])
    b = _write(tmp_path / "b.jsonl", [3, 4])
    out = io.StringIO()
    assert merge_jsonl([b, a], out) == 6
    assert [json.loads(x)["line"] for x in out.getvalue().splitlines()] == [1, 2, 3, 4, 5, 6]

    with pytest.raises(InputError, match="line 4 is also in"):
        merge_jsonl([a, b, _write(tmp_path / "dup.jsonl", [4])], io.StringIO())
    with pytest.raises(InputError, match=r"line 3\.\.4 missing"):
        merge_jsonl([a], io.StringIO())
    with pytest.raises(InputError, match="sorted by line"):
        unsorted = _write(tmp_path / "u.jsonl", [1, 2, 4, 3])
        merge_jsonl([unsorted, _write(tmp_path / "v.jsonl", [3])], io.StringIO())
    with pytest.raises(InputError, match="but 7 were expected"):
        merge_jsonl([a, b], io.StringIO(), expect=7)


def test_merge_command_errors_leave_no_output(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [1, 2])
    c = _write(tmp_path / "c.jsonl", [4])
    merged = tmp_path / "merged.jsonl"
    result = runner.invoke(UMBRELLA, ["merge", str(merged), str(a), str(c)])
    assert result.exit_code == 2
    assert "line 3 missing" in result.output
    assert not merged.exists() and not list(tmp_path.glob(".merged*"))

    (tmp_path / "t.tsv").write_text("line\tlabel\n1\tpos\n")
    result = runner.invoke(UMBRELLA, ["merge", str(merged), str(tmp_path / "t.tsv")])
    assert result.exit_code == 2 and "not a JSON record" in result.output

    result = runner.invoke(UMBRELLA, ["merge", str(merged), str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "no such shard output" in result.output
