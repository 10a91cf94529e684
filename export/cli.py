"""`bilstm export CHECKPOINT OUT.onnx` (loaded by the `bilstm` umbrella)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from bilstm.export.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from bilstm.export.verify import FP32_TOLERANCE
from bilstm.runtime.errors import BiLSTMError

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder written by bilstm train.")],
    out: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(min=MIN_OPSET, max=MAX_OPSET)] = DEFAULT_OPSET,
    verify: Annotated[bool, typer.Option(help="Check parity with PyTorch (on by default).")] = True,
    tolerance: Annotated[float, typer.Option(help="Max abs difference allowed.")] = FP32_TOLERANCE,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Export a checkpoint to one self-describing ONNX file, verified against PyTorch."""
    from bilstm.export.exporter import export_checkpoint

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s: %(message)s",
    )
    try:
        report = export_checkpoint(checkpoint, out, opset=opset, verify=verify, tolerance=tolerance)
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if report.parity is not None:
        for case in report.parity.cases:
            typer.echo(
                f"parity {case['case']:<36} {case['output']:<13} max abs "
                f"{case['max_abs']:.2e}  max rel {case['max_rel']:.2e}",
                err=True,
            )
    typer.echo(
        f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB) in {report.seconds:.2f} s"
        + ("" if report.parity else " (parity NOT verified: --no-verify)"),
        err=True,
    )
