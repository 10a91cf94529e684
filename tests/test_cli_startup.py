"""`bilstm-run` start-up stays light, and its two argument parsers agree.

typer 0.29 parses every option through a pydantic TypeAdapter, which added ~0.17 s to each
cold start (benchmarks/findings.md, section 3); pyproject.toml pins typer below it. Then the
plain command line stopped importing Typer at all: `runtime/run_args.py` parses it, and
everything else (help, usage errors, unusual spellings) goes to the Typer command
(benchmarks/findings/coldstart.md). These tests fail if a plain run imports Typer, click,
rich or pydantic again, or if the fast parser and the Typer command disagree on any
option's spelling, type, bound, default, or on what a command line means.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm.runtime import commands
from bilstm.runtime.run_args import FLAGS, POSITIONAL, VALUE_OPTIONS, _NotPlain, parse
from bilstm.runtime.run_command import RunArgs

SCRIPT = """
import json, os, sys
from bilstm.runtime.cli import run_main
sys.argv = ["bilstm-run", "sentiment", sys.argv[1], "--quiet", "--threads", "1"]
try:
    run_main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = ("pydantic", "rich", "typer", "click", "torch", "bilstm.runtime.commands")
after = {"heavy": [m for m in heavy if m in sys.modules]}
after["blas"] = os.environ.get("OPENBLAS_NUM_THREADS")
print(json.dumps(after), file=sys.stderr)
"""


def _one_line_run(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`bilstm-run sentiment` on one line through `run_main`, in a fresh process: its record,
    and what the process had after the run (heavy modules imported, OPENBLAS_NUM_THREADS)."""
    src = tmp_path / "one.txt"
    src.write_text(text + "\n", encoding="utf-8")
    cmd = [sys.executable, "-c", SCRIPT, str(src)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout), json.loads(out.stderr.strip().splitlines()[-1])


def test_bilstm_run_imports_no_command_line_library(tmp_path: Path) -> None:
    record, after = _one_line_run(tmp_path, "A gorgeous, witty, seductive movie.")
    assert record["line"] == 1 and record["label"] in ("negative", "positive")
    assert after["heavy"] == []


def test_importing_the_cli_imports_no_numpy() -> None:
    """The script imports `bilstm.runtime.cli` first; numpy must come after `run_main` has
    set the BLAS threads (and `import bilstm.runtime` stays as light)."""
    code = (
        "import sys, bilstm.runtime, bilstm.runtime.cli; "
        "print([m for m in ('numpy', 'onnxruntime', 'typer') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("preset", "expected"), [(None, "1"), ("3", "3")])
def test_blas_threads_default_to_one_unless_set(
    tmp_path: Path, preset: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    _, after = _one_line_run(tmp_path, "fine", env)
    assert after["blas"] == expected


CONSOLE = "import sys; from bilstm.runtime.cli import {entry}; {entry}()"


def _entry(entry: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = CONSOLE.format(entry=entry)
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd
    )


def test_console_entry_point_exits_as_run_main(tmp_path: Path) -> None:
    """`console_main` skips the interpreter's teardown; what it writes, and its exit
    status, are `run_main`'s: records, an output file, record errors, usage and model errors."""
    (tmp_path / "in.txt").write_bytes(b"A gorgeous, witty movie.\n\xff bad\nDull.\n")
    cases = [
        ["sentiment", "in.txt", "--threads", "1"],
        ["sentiment", "in.txt", "--threads", "1", "-q", "-f", "tsv"],
        ["sentiment", "in.txt", "--threads", "1", "-q", "-o", "{entry}.jsonl"],
        ["sentiment", "in.txt", "--threads", "0"],
        ["no-such-model", "in.txt", "--threads", "1"],
    ]
    for case in cases:
        runs = {}
        for entry in ("run_main", "console_main"):
            run = _entry(entry, [a.format(entry=entry) for a in case], tmp_path)
            written = tmp_path / f"{entry}.jsonl"
            runs[entry] = (
                run.returncode,
                run.stdout,
                run.stderr.split(" records, ")[0],  # the summary line ends with a timing
                written.read_bytes() if written.exists() else None,
            )
        assert runs["run_main"] == runs["console_main"], case
        assert runs["run_main"][0] in (1, 2), case  # the bad line, or the bad option / model


TRAIN_HELP = """
import json, sys
from bilstm.cli import main
sys.argv = ["bilstm", "train", "--help"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps([m for m in ("torch", "bilstm.models.training") if m in sys.modules]),
      file=sys.stderr)
"""


def test_bilstm_train_help_imports_no_torch() -> None:
    """`bilstm train --help` answers without torch, which takes seconds to import."""
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_HELP], capture_output=True, text=True, check=True
    )
    assert "--hidden-size" in out.stdout and "--resume" in out.stdout
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


# -- the fast parser's table is the Typer command's ---------------------------------------------


def _click_command() -> Any:
    return typer.main.get_command(commands.single_app())


def _conversion_of(param: Any) -> tuple[str, Any]:
    """What the click parameter accepts, in the terms of `run_args`' table."""
    kind = type(param.type).__name__
    if kind == "IntRange":
        assert param.type.max is None and not param.type.min_open
        return "int", param.type.min
    if kind == "FloatRange":
        assert param.type.max is None and not param.type.min_open
        return "float", param.type.min
    if kind in ("Choice", "TyperChoice"):
        assert param.type.case_sensitive
        return "choice", tuple(param.type.choices)
    if kind == "TyperPath":
        return "path", None
    assert kind == "StringParamType", kind
    return "str", None


def _probe(convert: Any) -> tuple[str, Any]:
    """The same description of a `run_args` conversion, found by trying values."""
    from enum import Enum

    def accepts(text: str) -> Any:
        try:
            return convert(text)
        except _NotPlain:
            return _NotPlain

    got = accepts("7")
    if isinstance(got, Path):
        return "path", None
    if isinstance(got, int):
        low = next(n for n in range(0, 3) if accepts(str(n)) is not _NotPlain)
        return "int", low
    if isinstance(got, float):
        assert accepts("0") == 0.0  # both float bounds are 0.0, inclusive
        return "float", 0.0
    if got is _NotPlain:  # an enum: try the words of every enum the command uses
        from bilstm.runtime.output import Format
        from bilstm.runtime.run_command import OnError, Tokenize
        from bilstm.runtime.session import Device, Optimization

        for enum in (Format, Tokenize, OnError, Device, Optimization):
            values = [m.value for m in enum]
            if accepts(values[0]) is not _NotPlain:
                assert all(isinstance(accepts(v), Enum) for v in values)
                assert accepts(values[0].upper()) is _NotPlain  # case-sensitive, as click
                return "choice", tuple(values)
    return "str", None


def test_fast_table_matches_the_typer_command() -> None:
    params = _click_command().params
    arguments = [p.name for p in params if p.param_type_name == "argument"]
    assert tuple(arguments) == POSITIONAL
    options = [p for p in params if p.param_type_name == "option"]
    assert {p.name for p in options} | set(POSITIONAL) == set(RunArgs._fields)
    spelled: dict[str, str] = {}
    for p in options:
        assert RunArgs._field_defaults[p.name] == p.default, p.name
        if p.is_flag:
            for spelling in p.opts:
                assert FLAGS[spelling] == (p.name, True), spelling
            for spelling in p.secondary_opts:
                assert FLAGS[spelling] == (p.name, False), spelling
        else:
            assert p.nargs == 1 and not p.multiple and not p.secondary_opts
            for spelling in p.opts:
                name, convert = VALUE_OPTIONS[spelling]
                assert name == p.name, spelling
                if p.name == "shard":  # a string checked by parse_shard, as the command does
                    assert convert("0/2") == "0/2"
                else:
                    assert _probe(convert) == _conversion_of(p), spelling
        assert p.envvar is None  # no other source of values than the command line
        spelled.update(dict.fromkeys([*p.opts, *p.secondary_opts], p.name))
    assert set(spelled) == set(FLAGS) | set(VALUE_OPTIONS)


# -- both parsers give the same arguments --------------------------------------------------------


def _typer_parse(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any] | None:
    """What the Typer command hands to `execute` for `argv`; None for a usage error."""
    seen: list[tuple[RunArgs, frozenset[str]]] = []

    def execute(args: RunArgs, given: set[str], shard_of: Any = None) -> int:
        seen.append((args, frozenset(given)))
        return 0

    with monkeypatch.context() as patch:
        patch.setattr(commands, "execute", execute)
        patch.setattr(commands, "setup_logging", lambda quiet, debug: None)
        result = CliRunner().invoke(commands.single_app(), argv)
    if not seen:
        assert result.exit_code in (0, 2), (argv, result.output)  # help, or a usage error
        return None
    return seen[0]


PLAIN = [
    ["sentiment", "in.txt"],
    ["sentiment", "-"],
    ["sentiment", "in.txt", "--threads", "1", "--quiet"],
    ["--quiet", "sentiment", "--threads=2", "in.txt"],
    ["m.onnx", "in.txt", "-o", "out.jsonl", "-f", "tsv", "-q"],
    ["m.onnx", "in.txt", "--output=out.tsv", "--format=table", "--no-probabilities"],
    ["pos-en", "in.txt", "--tokenize", "words", "--batch-size", "3", "--chunk-size", "7"],
    ["cloze-en", "in.txt", "--top-k", "2", "--on-error", "stop", "--max-line-bytes", "9"],
    ["elecdemand-h1", "d.csv", "--rolling", "--anomalies", "--threshold", "2.5"],
    ["elecdemand-h1", "d.csv", "--follow", "--max-delay-ms", ".5", "--no-rolling"],
    ["m", "i", "--no-anomalies", "--no-follow", "--probabilities", "--debug"],
    ["m", "i", "--device", "cuda", "--device-id", "0", "--workers", "2", "--warmup", "0"],
    ["m", "i", "--optimization", "none", "--profile", "p", "--optimized-model", "o.onnx"],
    ["m", "i", "--shard", "1/3", "--max-delay-ms", "0", "--threshold", "0."],
]
NOT_PLAIN = [
    [],
    ["sentiment"],
    ["a", "b", "c"],
    ["--help"],
    ["sentiment", "in.txt", "--help"],
    ["sentiment", "in.txt", "--threads", "0"],
    ["sentiment", "in.txt", "--threads", "+3"],
    ["sentiment", "in.txt", "--threads"],
    ["sentiment", "in.txt", "--threads", "1", "--threads", "2"],
    ["sentiment", "in.txt", "--format", "JSONL"],
    ["sentiment", "in.txt", "--shard", "3/2"],
    ["sentiment", "in.txt", "--threshold", "1e3"],
    ["sentiment", "in.txt", "--max-delay-ms", "-1"],
    ["sentiment", "in.txt", "-qf", "tsv"],
    ["sentiment", "in.txt", "-otsv"],
    ["sentiment", "in.txt", "-o=x"],
    ["sentiment", "in.txt", "--output", "-"],
    ["sentiment", "in.txt", "--quiet=1"],
    ["sentiment", "in.txt", "--no-quiet"],
    ["sentiment", "in.txt", "--thread", "1"],
    ["--", "sentiment", "in.txt"],
    ["sentiment", ""],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_command_lines_parse_as_typer_parses_them(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = parse(argv)
    assert fast is not None, "an ordinary command line must not need Typer"
    assert fast == _typer_parse(argv, monkeypatch)


@pytest.mark.parametrize("argv", NOT_PLAIN, ids=lambda a: " ".join(a) or "(none)")
def test_other_command_lines_are_left_to_typer(argv: list[str]) -> None:
    assert parse(argv) is None


VALUES = ["0", "1", "2", "07", "1.5", ".5", "0.", "-1", "1e2", " 1", "x", "", "JSONL", "-"]
VALUES += ["tsv", "table", "words", "stop", "cpu", "none", "basic", "0/2", "2/2", "out.jsonl"]
JUNK = ["--", "-x", "--help", "-qf", "--quiet=1", "--no-quiet", "extra"]


def _good_values(spelling: str) -> list[str]:
    """Values the option takes (found by trying them), so most drawn lines are valid."""
    convert = VALUE_OPTIONS[spelling][1]
    good = []
    for value in [*VALUES, "spaces", "jsonl", "record", "auto", "cuda", "extended", "all"]:
        try:
            convert(value)
        except _NotPlain:
            continue
        good.append(value)
    return good or VALUES


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """MODEL INPUT among options: mostly well-formed, with wrong, repeated and odd ones."""
    parts: list[list[str]] = [[draw(st.sampled_from(["sentiment", "m.onnx"]))]]
    parts.append([draw(st.sampled_from(["in.txt", "-", "d.csv"]))])
    spellings = sorted([*FLAGS, *VALUE_OPTIONS])
    for spelling in draw(st.lists(st.sampled_from(spellings), max_size=5, unique=True)):
        if spelling in FLAGS:
            parts.append([spelling])
            continue
        good = draw(st.booleans()) or draw(st.booleans())  # three in four
        value = draw(st.sampled_from(_good_values(spelling) if good else VALUES))
        attached = spelling.startswith("--") and draw(st.booleans())
        parts.append([f"{spelling}={value}"] if attached else [spelling, value])
    if draw(st.integers(0, 4)) == 0:
        parts.append([draw(st.sampled_from(JUNK))])
    if draw(st.integers(0, 4)) == 0:  # an option given twice
        parts.append(list(draw(st.sampled_from(parts[2:] or [["--quiet"]]))))
    order = draw(st.permutations(range(len(parts))))
    return [arg for i in order for arg in parts[i]]


@settings(
    max_examples=120,  # 400 took 7 s; the listed command lines above cover each spelling
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(argv=command_lines())
def test_fast_parser_never_disagrees_with_typer(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any mix of spellings and values: where the fast parser gives an answer, Typer gives
    the same; where Typer refuses the command line, the fast parser left it to Typer."""
    fast = parse(argv)
    typer_parsed = _typer_parse(argv, monkeypatch)
    if fast is not None:
        assert fast == typer_parsed


def test_usage_errors_still_come_from_typer(tmp_path: Path) -> None:
    """A bad value gets click's message and exit 2 through the real entry point."""
    script = "import sys; from bilstm.runtime.cli import run_main; run_main()"
    out = subprocess.run(
        [sys.executable, "-c", script, "sentiment", "-", "--threads", "0"],
        capture_output=True,
        text=True,
        input="",
    )
    assert out.returncode == 2
    assert "Invalid value for '--threads'" in out.stderr and "Traceback" not in out.stderr
