"""Property test: `bilstm-run`, `bilstm eval` and `bilstm merge` with random option mixes.

Whatever the combination (valid, inapplicable or malformed), the command must end with exit
code 0, 1 or 2, print no traceback, and touch no file except its own output path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm.runtime.cli import _make_apps

UMBRELLA, SINGLE = _make_apps()
runner = CliRunner()
EXAMPLES = Path(__file__).parents[1] / "examples"

# Valid choices are listed more than once: most runs should get as far as scoring.
GOOD_MODELS = ["sentiment", "pos-en", "cloze-en", "elecdemand-h1"]
MODELS = [*GOOD_MODELS * 3, "no-such-model", "{dir}/in.txt"]
INPUTS = [
    *["{dir}/in.txt", "{dir}/demand.csv", "{dir}/blanks.txt"] * 3,
    "{dir}/missing.txt",
    "{dir}",
]
OUTPUTS = [None, None, "{dir}/out.jsonl", "{dir}/in.txt", "{dir}", "{dir}/no/such/out.jsonl"]
GOOD_OPTIONS: list[list[str]] = [
    ["--format", "tsv"],
    ["--format", "table"],
    ["--no-probabilities"],
    ["--top-k", "2"],
    ["--rolling"],
    ["--anomalies"],
    ["--threshold", "2.5"],
    ["--batch-size", "3"],
    ["--chunk-size", "2"],
    ["--shard", "0/2"],
    ["--on-error", "stop"],
    ["--max-line-bytes", "8"],
    ["--device", "cpu"],
    ["--threads", "1"],
    ["--optimization", "basic"],
    ["--warmup", "1"],
    ["--optimized-model", "{dir}/opt.onnx"],
    ["--quiet"],
]
BAD_OPTIONS: list[list[str]] = [
    ["--format", "xml"],
    ["--top-k", "0"],
    ["--threshold", "-1"],
    ["--batch-size", "zero"],
    ["--shard", "3/2"],
    ["--on-error", "ignore"],
    ["--device", "tpu"],
    ["--device-id", "5"],
    ["--optimized-model", "{dir}/in.txt"],
    ["--profile", "{dir}/no/prof"],
    ["--unknown-flag"],
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _setup(folder: Path) -> None:
    for stale in folder.rglob("*"):
        if stale.is_file():
            stale.unlink()
    (folder / "in.txt").write_text(
        "A gorgeous, witty movie.\nThe ___ was great\n\n\xe9t\xe9 \nDull and lifeless.\n"
    )
    (folder / "blanks.txt").write_bytes((EXAMPLES / "blanks.txt").read_bytes())
    (folder / "demand.csv").write_bytes((EXAMPLES / "demand.csv").read_bytes())


def _check(result, folder: Path, before: dict[str, str], allowed: set[str]) -> None:  # type: ignore[no-untyped-def]
    text = result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, text, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in text, text
    after = _snapshot(folder)
    for name, digest in before.items():
        assert after.get(name) == digest or name in allowed, f"{name} changed: {text}"
    extra = set(after) - set(before) - allowed
    # ONNX Runtime names its profile by date: any file it writes starts with the prefix.
    assert not extra, f"unexpected files {extra}: {text}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    model=st.sampled_from(MODELS),
    source=st.sampled_from(INPUTS),
    output=st.sampled_from(OUTPUTS),
    options=st.tuples(
        st.lists(st.sampled_from(GOOD_OPTIONS), max_size=3),
        st.lists(st.sampled_from(BAD_OPTIONS), max_size=1),
    ).map(lambda pair: pair[0] + pair[1]),
)
def test_run_with_random_options(
    tmp_path: Path, model: str, source: str, output: str | None, options: list[list[str]]
) -> None:
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    _setup(folder)
    before = _snapshot(folder)
    args = [model.format(dir=folder), source.format(dir=folder)]
    allowed: set[str] = set()
    if output is not None:
        out = output.format(dir=folder)
        args += ["--output", out]
        if Path(out).parent == folder:
            allowed.add(Path(out).name)
    for option in options:
        args += [part.format(dir=folder) for part in option]
        if option[0] == "--optimized-model":
            allowed.add(Path(option[1]).name)
    result = runner.invoke(SINGLE, args)
    _check(result, folder, before, allowed)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(["eval", "merge", "info"]),
    model=st.sampled_from(MODELS),
    data=st.sampled_from(INPUTS),
    extra=st.lists(
        st.sampled_from(
            [
                ["--tag-column", "xpos"],
                ["--top-k", "3"],
                ["--batch-size", "2"],
                ["--lines", "3"],
                ["--json"],
                ["--force"],
                ["--bogus"],
            ]
        ),
        max_size=2,
    ),
)
def test_eval_merge_info_with_random_arguments(
    tmp_path: Path, command: str, model: str, data: str, extra: list[list[str]]
) -> None:
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    _setup(folder)
    (folder / "part0.jsonl").write_text('{"line": 1}\n{"line": 3}\n')
    (folder / "part1.jsonl").write_text('{"line": 2}\n')
    before = _snapshot(folder)
    allowed: set[str] = set()
    if command == "merge":
        target = data.format(dir=folder)
        args = ["merge", target, str(folder / "part0.jsonl"), str(folder / "part1.jsonl")]
        if Path(target).parent == folder:
            allowed.add(Path(target).name)
    elif command == "eval":
        args = ["eval", model.format(dir=folder), data.format(dir=folder)]
    else:
        args = ["info", model.format(dir=folder)]
    for option in extra:
        args += option
    result = runner.invoke(UMBRELLA, args)
    _check(result, folder, before, allowed)
