"""`bilstm convert MODEL... --ort`: ORT-format files for ONNX Runtime Mobile and minimal builds.

ONNX Runtime's mobile packages and custom minimal builds load only the ORT format (a
flatbuffer of the graph after ONNX Runtime's own optimisations), and a minimal build includes
only the operators listed in a reduced-operator configuration file. This command writes both,
with ONNX Runtime's own machinery from the onnxruntime wheel:

- each `.onnx` becomes `OUT_DIR/NAME.ort` the way `onnxruntime.tools.convert_onnx_models_to_ort`
  converts it (a CPU session that saves its optimised graph with
  `session.save_model_format=ORT`, the same optimisation level, QDQ int8 kept off, the x86-only
  NCHWc transformer disabled so that the file runs on ARM phones too). That tool itself is not
  called: it imports `onnx` (not in the runtime install), writes beside its input under its own
  names and prints to stdout;
- `required_operators.config` (`--config`) lists the operators of exactly the converted models,
  from `onnxruntime.tools.ort_format_model.create_config_from_models` (what ONNX Runtime's
  `build.py --include_ops_by_config` reads); with `--type-reduction`, also the types each
  operator needs, for an even smaller build.

Each `.ort` keeps the model's bilstm metadata (the ORT format carries `metadata_props`), so
`bilstm-run model.ort`, `bilstm info` and `BiLSTM.load` read it like the `.onnx`. Before a file
is put in place it is opened again and checked against the `.onnx` on probe inputs: the same
metadata, inputs and outputs, and outputs equal within `PARITY_TOLERANCE`. Nothing is written
when a check fails; outputs are checked (core/outpaths.py) before any work and written
atomically. Never imports torch or onnx.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
import typer

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import BiLSTMError, InputError, ModelLoadError, ParityError
from bilstm.core.outpaths import check_output_file
from bilstm.runtime import metadata as md
from bilstm.runtime.builtin import resolve_model
from bilstm.runtime.session import Device, check_model_file, create_session, is_ort_format

CONFIG_NAME = "required_operators.config"
PARITY_TOLERANCE = 1e-6
"""Largest difference allowed between the `.ort` and the `.onnx` outputs on the probes. The
same kernels run the same optimised graph, so they agree exactly in practice; the margin only
allows for a different summation order should ONNX Runtime pick another kernel on reload."""
_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# Probe batch: ragged lengths, as the exporter's parity check uses.
_PROBE_LENGTHS = (7, 3, 1)
_PROBE_TEXTS = ("A gorgeous, witty movie .", "Dull .", "")
_PROBE_CHARS = 6


@dataclass
class Converted:
    """One converted model: where from, where to, and what the check found."""

    source: Path
    target: Path
    onnx_bytes: int
    ort_bytes: int
    max_abs_diff: float


def _probe_feeds(session: ort.InferenceSession, meta: md.ModelMetadata) -> dict[str, np.ndarray]:
    """Inputs for every graph input, by its (stable) name: ragged ids within the vocabulary,
    character ids, blanks inside each row, standardised-scale features or raw texts."""
    rng = np.random.default_rng(0)
    batch, time = len(_PROBE_LENGTHS), max(_PROBE_LENGTHS)
    lengths = np.array(_PROBE_LENGTHS, dtype=np.int64)
    mask = np.arange(time)[None, :] < lengths[:, None]
    chars = meta.task_config.get("char_vocabulary")
    feeds: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        name = spec.name
        if name == md.TEXT:
            feeds[name] = np.array(_PROBE_TEXTS, dtype=object)
        elif name == md.LENGTHS:
            feeds[name] = lengths
        elif name == md.INPUT_IDS:
            feeds[name] = rng.integers(2, max(3, len(meta.vocabulary)), (batch, time)) * mask
        elif name == md.CHAR_IDS:
            width = spec.shape[2] if isinstance(spec.shape[2], int) else _PROBE_CHARS
            top = max(3, len(chars) if isinstance(chars, list) else 3)
            feeds[name] = rng.integers(2, top, (batch, time, width)) * mask[:, :, None]
        elif name == md.MASK_POSITIONS:
            feeds[name] = (lengths - 1) // 2
        elif name == md.FEATURES:
            steps = spec.shape[1] if isinstance(spec.shape[1], int) else None
            steps = steps or int(meta.task_config.get("window", time))
            columns = spec.shape[2] if isinstance(spec.shape[2], int) else 1
            feeds[name] = rng.normal(size=(batch, steps, columns)).astype(np.float32)
        else:
            raise ModelLoadError(f"input '{name}' is not one of a bilstm model's inputs")
    return feeds


def _compare(source: Path, target: Path) -> float:
    """Open both files on the CPU and compare metadata, signatures and probe outputs."""
    want = create_session(source, device=Device.cpu, threads=1)
    got = create_session(target, device=Device.cpu, threads=1)
    a = want.get_modelmeta().custom_metadata_map
    b = got.get_modelmeta().custom_metadata_map
    if a.get(md.METADATA_KEY) != b.get(md.METADATA_KEY):
        raise ParityError(f"{target}: the bilstm metadata did not survive the conversion")
    for kind in ("get_inputs", "get_outputs"):
        sig_a = [(x.name, x.type, x.shape) for x in getattr(want, kind)()]
        sig_b = [(x.name, x.type, x.shape) for x in getattr(got, kind)()]
        if sig_a != sig_b:
            raise ParityError(f"{target}: the graph's {kind[4:]} changed: {sig_a} -> {sig_b}")
    if md.METADATA_KEY not in a:
        return 0.0  # not a bilstm model: no probes to build; the signature check stands
    feeds = _probe_feeds(want, md.ModelMetadata.from_json(a[md.METADATA_KEY]))
    worst = 0.0
    names = [o.name for o in want.get_outputs()]
    for name, x, y in zip(names, want.run(None, feeds), got.run(None, feeds), strict=True):
        if x.dtype.kind in "fc":
            diff = float(np.max(np.abs(x - y))) if x.size else 0.0
            worst = max(worst, diff)
            ok = x.shape == y.shape and diff <= PARITY_TOLERANCE
        else:
            ok = x.shape == y.shape and bool(np.all(x == y))
        if not ok:
            raise ParityError(f"{target}: output '{name}' differs from {source.name}'s")
    return worst


def _session_options(level: str, out: Path) -> ort.SessionOptions:
    """What onnxruntime.tools.convert_onnx_models_to_ort sets (fixed optimisation style)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _LEVELS[level]
    opts.optimized_model_filepath = str(out)
    opts.add_session_config_entry("session.save_model_format", "ORT")
    opts.add_session_config_entry("session.qdqisint8allowed", "0")
    opts.intra_op_num_threads = 1
    return opts


def _convert_one(source: Path, target: Path, level: str) -> Converted:
    check_model_file(source)  # the .onnx walk: refuses hostile files before ONNX Runtime
    with atomic_path(target) as tmp:
        try:
            ort.InferenceSession(
                str(source),
                sess_options=_session_options(level, tmp),
                providers=["CPUExecutionProvider"],
                # The tool leaves NCHWc out unless the target is x86-64: it makes the file
                # x86-specific, and ORT-format files are mostly for ARM phones.
                disabled_optimizers=["NchwcTransformer"] if level == "all" else None,
            )
        except Exception as exc:  # ORT raises several unrelated types for files it refuses
            raise ModelLoadError(f"{source}: ONNX Runtime cannot convert it: {exc}") from exc
        if not is_ort_format(tmp):
            raise ModelLoadError(f"{source}: ONNX Runtime did not write an ORT-format file")
        worst = _compare(source, tmp)
        size = tmp.stat().st_size
    return Converted(source, target, source.stat().st_size, size, worst)


def _write_config(models: list[Path], config: Path, type_reduction: bool) -> None:
    """The reduced-operator configuration of exactly `models`, from ONNX Runtime's tools."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    tool_log = logging.getLogger("ort_format_model.utils")  # it logs "Created config in TMP"
    level = tool_log.level
    tool_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / CONFIG_NAME
            with contextlib.redirect_stdout(io.StringIO()):  # nothing of it on our stdout
                create_config_from_models(models, raw, type_reduction)
            text = raw.read_text(encoding="utf-8")
    finally:
        tool_log.setLevel(level)
    # The tool names each model by its full path; keep only file names, so the file can be
    # committed or shipped without this machine's folders in it.
    text = re.sub(r"(?m)^# - (.+)$", lambda m: f"# - {Path(m.group(1)).name}", text)
    with atomic_path(config) as out:
        out.write_text(text, encoding="utf-8")


def convert_models(
    models: Sequence[str | Path],
    out_dir: Path,
    config: Path | None = None,
    level: str = "all",
    type_reduction: bool = False,
    force: bool = False,
) -> list[Converted]:
    """Convert `models` (built-in names or `.onnx` paths) to `out_dir/NAME.ort` and write the
    reduced-operator `config` for all of them (default `out_dir/required_operators.config`).

    Raises `InputError` for bad arguments or outputs, `ModelLoadError` for files ONNX Runtime
    cannot convert, `ParityError` when a converted file differs from its source.
    """
    if level not in _LEVELS:
        raise InputError(f"optimization must be one of {'|'.join(_LEVELS)}, got {level!r}")
    if not models:
        raise InputError("give at least one model: a built-in name or an .onnx path")
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out-dir is not a folder; create it first")
    sources = [resolve_model(m) for m in models]
    for source in sources:
        if is_ort_format(source):
            raise InputError(f"{source}: is already an ORT-format file; give the .onnx model")
    targets = [out_dir / f"{s.stem}.ort" for s in sources]
    if len({t.resolve() for t in targets}) != len(targets):
        raise InputError("two models have the same file name; convert them into separate folders")
    config = config if config is not None else out_dir / CONFIG_NAME
    for target in [*targets, config]:  # everything checked before any work
        check_output_file(target, sources, force=force, flag="output")
    done = [_convert_one(s, t, level) for s, t in zip(sources, targets, strict=True)]
    _write_config(targets, config, type_reduction)
    return done


def convert(
    models: Annotated[
        list[str],
        typer.Argument(metavar="MODEL...", help="Built-in model names or .onnx paths."),
    ],
    ort_format: Annotated[
        bool,
        typer.Option("--ort", help="Write ORT-format files (ONNX Runtime Mobile, minimal builds)."),
    ] = False,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Folder for NAME.ort and the config.")
    ] = Path("."),
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"Reduced-operator configuration file (default OUT_DIR/{CONFIG_NAME}).",
        ),
    ] = None,
    optimization: Annotated[
        str, typer.Option("--optimization", help="basic|extended|all, as ONNX Runtime's tool.")
    ] = "all",
    type_reduction: Annotated[
        bool,
        typer.Option("--type-reduction", help="Also list the types each operator needs."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace existing outputs.")] = False,
) -> None:
    """Convert models for ONNX Runtime Mobile and minimal builds (--ort).

    Writes OUT_DIR/NAME.ort per model, checked against the .onnx, and the reduced-operator
    configuration for exactly these models (ONNX Runtime's build.py --include_ops_by_config).
    """
    try:
        if not ort_format:
            raise InputError("say which format to write: --ort (the ORT format)")
        done = convert_models(models, out_dir, config, optimization, type_reduction, force)
    except BiLSTMError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for item in done:
        typer.echo(str(item.target))
        typer.echo(
            f"{item.source.name}: {item.onnx_bytes:,} bytes -> {item.target.name}: "
            f"{item.ort_bytes:,} bytes, outputs equal on the probes "
            f"(max |diff| {item.max_abs_diff:.1e})",
            err=True,
        )
    chosen = config if config is not None else out_dir / CONFIG_NAME
    typer.echo(str(chosen))
    typer.echo(
        f"{chosen.name}: the operators of these {len(done)} model(s) for a minimal build",
        err=True,
    )


def main() -> None:  # pragma: no cover - `python -m bilstm.runtime.convert` until registered
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(convert)
    app(prog_name="bilstm convert")


if __name__ == "__main__":  # pragma: no cover
    main()
