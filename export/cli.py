"""`bilstm export CHECKPOINT OUT.onnx` (loaded by the `bilstm` umbrella)."""

from __future__ import annotations

import logging
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bilstm.core.errors import BiLSTMError
from bilstm.export.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from bilstm.export.standalone import STANDALONE_OPSET
from bilstm.export.verify import FP32_TOLERANCE

if TYPE_CHECKING:
    from bilstm.export.exporter import ExportReport

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)


class Quantize(str, Enum):
    """Quantised variants `bilstm export --quantize` can write."""

    int8 = "int8"


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder written by bilstm train.")],
    out: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    opset: Annotated[
        int | None,
        typer.Option(
            min=MIN_OPSET,
            max=MAX_OPSET,
            help=f"ONNX opset (default {DEFAULT_OPSET}; {STANDALONE_OPSET} with --with-tokenizer).",
        ),
    ] = None,
    verify: Annotated[bool, typer.Option(help="Check parity with PyTorch (on by default).")] = True,
    tolerance: Annotated[float, typer.Option(help="Max abs difference allowed.")] = FP32_TOLERANCE,
    quantize: Annotated[
        Quantize | None,
        typer.Option(
            help="Write a dynamically quantised int8 model (about 4x smaller, CPU; parity on "
            "probabilities within 0.1)."
        ),
    ] = None,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Write a float16 model for the CUDA provider (half the size; parity on "
            "probabilities within 0.01).",
        ),
    ] = False,
    variant_tolerance: Annotated[
        float | None,
        typer.Option(help="Max abs difference on probabilities for --quantize/--fp16."),
    ] = None,
    with_tokenizer: Annotated[
        bool,
        typer.Option(
            "--with-tokenizer",
            help="Standalone model: the graph takes raw text (string input 'text') and does the "
            "tokenizer, vocabulary and label lookups itself with ONNX Runtime's built-in "
            "operators, so any language with ONNX Runtime can use it.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace OUT if it exists (it is kept otherwise)."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Export a checkpoint to one self-describing ONNX file, verified against PyTorch.

    OUT may not be the checkpoint folder or inside it, nor a folder; an existing OUT is
    replaced only with --force (and only once the new model is verified).
    """
    from bilstm.export.exporter import export_checkpoint

    _configure_logging(debug)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            report = export_checkpoint(
                checkpoint,
                out,
                opset=opset,
                verify=verify,
                tolerance=tolerance,
                quantize=quantize.value if quantize else None,
                fp16=fp16,
                variant_tolerance=variant_tolerance,
                with_tokenizer=with_tokenizer,
                force=force,
            )
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    _echo_report(report)


def _configure_logging(debug: bool) -> None:
    """Warnings (everything with --debug) on stderr, one line each."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s: %(message)s",
    )


def _echo_report(report: ExportReport) -> None:
    """The parity figures and the written file on stderr (stdout stays free for pipes)."""
    if report.parity is not None:
        for case in report.parity.cases:
            typer.echo(
                f"parity {case.case:<36} {case.output:<13} max abs "
                f"{case.max_abs:.2e}  max rel {case.max_rel:.2e}",
                err=True,
            )
    if report.variant_details is not None:
        _echo_variant(report.precision, report.variant_details, report.variant_parity)
    if report.standalone is not None and "parity" in report.standalone:
        sp = report.standalone["parity"]
        typer.echo(
            f"standalone: token ids identical to the Python tokenizer on {sp['texts']} texts "
            f"({sp['tokens']} tokens); probabilities max abs "
            f"{sp['probabilities_max_abs_vs_id_graph']:.2e} vs the id graph"
            + (
                f", {sp['probabilities_max_abs_vs_pytorch']:.2e} vs PyTorch"
                if "probabilities_max_abs_vs_pytorch" in sp
                else ""
            ),
            err=True,
        )
    typer.echo(
        f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, {report.precision}) in "
        f"{report.seconds:.2f} s"
        + ("" if report.parity else " (parity NOT verified: --no-verify)"),
        err=True,
    )


def _echo_variant(precision: str, details: dict[str, Any], parity: dict[str, Any] | None) -> None:
    """The int8/fp16 figures on stderr: sizes, parity on probabilities, argmax agreement."""
    typer.echo(
        f"{precision}: graph {details['size_before'] / 1e6:.2f} MB fp32 -> "
        f"{details['size_after'] / 1e6:.2f} MB",
        err=True,
    )
    if parity is None:
        return
    if "skipped" in parity:
        typer.echo(f"{precision}: parity NOT checked: {parity['skipped']}", err=True)
        return
    for case in parity["cases"]:
        typer.echo(
            f"{precision} parity {case['case']:<31} {case['output']:<13} max abs "
            f"{case['max_abs']:.2e}",
            err=True,
        )
    agreement = parity.get("examples_argmax_agreement")
    examples = (
        f", {agreement:.1%} of {parity['examples']} dev examples" if agreement is not None else ""
    )
    dev = parity.get("fp32_dev_metrics", {})
    typer.echo(
        f"{precision}: probabilities max abs {parity['max_abs']:.2e} (tolerance "
        f"{parity['tolerance']:g}) on {parity['provider']}; predicted class agrees with fp32 on "
        f"{parity['argmax_agreement']:.1%} of all parity rows"
        + examples
        + (f"; fp32 dev accuracy {dev['accuracy']:.3f}" if "accuracy" in dev else ""),
        err=True,
    )
