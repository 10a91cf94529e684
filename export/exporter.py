"""Checkpoint -> one self-describing `.onnx`, checked and verified before it is kept."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import CheckpointError, ExportError, InputError
from bilstm.core.outpaths import check_not_an_input, check_output_file, same_file
from bilstm.export.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, build_graph, check_graph
from bilstm.export.verify import FP32_TOLERANCE, ParityReport, check_parity
from bilstm.models.checkpoint import Checkpoint, load_checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.version import __version__

log = logging.getLogger(__name__)


@dataclass
class ExportReport:
    """What an export produced."""

    path: Path
    size_bytes: int
    seconds: float
    parity: ParityReport | None
    weights_sha256: str
    precision: str = "fp32"
    """fp32, int8 or fp16; `parity` is always the fp32 check the variant was derived after."""
    variant_parity: dict[str, Any] | None = None
    """Parity of the int8/fp16 variant with PyTorch (looser tolerance), None for fp32: the
    variant's `ParityReport.to_dict()`, as stored in the metadata."""
    variant_details: dict[str, Any] | None = None
    """Conversion report of the variant (sizes, op counts, settings), None for fp32."""
    standalone: dict[str, Any] | None = None
    """With `with_tokenizer`: the in-graph preprocessing and its parity figures."""


def weights_hash(model: onnx.ModelProto) -> str:
    """SHA-256 over the initializers' names and bytes, in graph order."""
    digest = hashlib.sha256()
    for init in model.graph.initializer:
        digest.update(init.name.encode())
        digest.update(init.raw_data)
    return digest.hexdigest()


def _metadata(ckpt: Checkpoint, export_info: dict[str, Any]) -> ModelMetadata:
    return ModelMetadata(
        task=ckpt.task,
        labels=ckpt.labels,
        vocabulary=ckpt.vocabulary.tokens if ckpt.vocabulary else [],
        tokenizer=ckpt.tokenizer,
        task_config=ckpt.task_config,
        toolkit_version=__version__,
        model=ckpt.model_config.to_dict(),
        training={
            k: ckpt.summary[k]
            for k in (
                "data",
                "train_examples",
                "dev_examples",
                "best_epoch",
                "epochs_run",
                "train_seconds",
            )
            if k in ckpt.summary
        }
        | {
            "dev_metrics": {
                k: v
                for k, v in ckpt.summary.get("dev_metrics", {}).items()
                if isinstance(v, int | float)
            }
        },
        export=export_info,
    )


def _save(model: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def check_export_output(checkpoint: Path | Checkpoint, out: Path, force: bool = True) -> None:
    """Refuse, before any work, an `out` whose writing would destroy what export did not create.

    Refused always: the checkpoint folder itself, a path inside it (its files are the export's
    input, and `bilstm train` replaces the whole folder on every save, so a model kept there
    would vanish), a link to one of its files, a folder, a path whose folder does not exist.
    An existing `out` file is replaced only with `force` (`bilstm export --force`).
    """
    out = Path(out)
    if not isinstance(checkpoint, Checkpoint):
        folder = Path(checkpoint)
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder}: not a checkpoint folder (expected the --out folder of `bilstm train`)"
            )
        elsewhere = folder.resolve().parent / f"{folder.resolve().name}.onnx"
        if same_file(out, folder):
            raise InputError(
                f"{out}: OUT is the checkpoint folder {folder} (the export's input); "
                f"give a .onnx file outside it, e.g. {elsewhere}"
            )
        home = folder.resolve()
        where = {out.resolve(), out.parent.resolve() / out.name}
        if any(home in p.parents for p in where):
            raise InputError(
                f"{out}: OUT is inside the checkpoint folder {folder}; its files are the "
                "export's input and bilstm train replaces that folder on every save, so write "
                f"the model outside it, e.g. {elsewhere}"
            )
        check_not_an_input(out, [p for p in folder.iterdir() if p.is_file()], flag="OUT")
    check_output_file(out, force=force, flag="OUT")


def export_checkpoint(
    checkpoint: Path | Checkpoint,
    out: Path,
    opset: int | None = None,
    verify: bool = True,
    tolerance: float = FP32_TOLERANCE,
    quantize: str | None = None,
    fp16: bool = False,
    variant_tolerance: float | None = None,
    with_tokenizer: bool = False,
    force: bool = True,
) -> ExportReport:
    """Export a `bilstm train` checkpoint (folder or loaded) to `out`.

    The graph is checked (fused RNN nodes, `sequence_lens`, dynamic axes, `onnx.checker`) and,
    unless `verify=False`, compared with PyTorch; on `ParityError` no file is left at `out`.
    `quantize="int8"` or `fp16=True` then derive that variant from the verified fp32 graph and
    write it instead, checked against PyTorch with `variant_tolerance` on probabilities
    (default `INT8_TOLERANCE`/`FP16_TOLERANCE`, see `bilstm.export.quantize`).
    `with_tokenizer=True` wraps the graph in its own preprocessing (raw `text` in, labels out;
    `bilstm.export.standalone`, opset >= 20, the default then) and proves it on raw texts.
    `opset` defaults to `DEFAULT_OPSET`.

    `out` is checked before any work (`check_export_output`): it may not be the checkpoint
    folder, inside it or a link to one of its files, nor a folder, and its folder must exist
    (`InputError`). An existing `out` file is replaced (atomically, once the export succeeded)
    unless `force=False`, as `bilstm export` without `--force` does.
    """
    started = time.perf_counter()
    precision = _precision(quantize, fp16)
    out = Path(out)
    check_export_output(checkpoint, out, force)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    opset = _opset(ckpt, opset, with_tokenizer)
    ckpt.model.eval()
    model = build_graph(ckpt.model_config, ckpt.model.state_dict(), opset)
    check_graph(model, ckpt.model_config)
    sha = weights_hash(model)
    parity = _fp32_parity(ckpt, model, tolerance, out) if verify else None
    export_info = {
        "opset": opset,
        "precision": "fp32",
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": sha,
        "parity": parity.to_dict() if parity else None,
    }
    variant_parity: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    if precision != "fp32":
        model, details, variant_parity = _variant(
            ckpt, model, precision, verify, variant_tolerance, parity
        )
        sha = weights_hash(model)
        export_info |= _variant_info(export_info, precision, sha, variant_parity, details)
    standalone: dict[str, Any] | None = None
    if with_tokenizer:
        model, standalone = _standalone(ckpt, model, verify, tolerance, precision)
        export_info["standalone"] = standalone
    meta = _metadata(ckpt, export_info)
    meta.standalone = with_tokenizer
    onnx.helper.set_model_props(model, {md.METADATA_KEY: meta.to_json()})
    _save(model, out)
    seconds = time.perf_counter() - started
    log.info("exported %s in %.2f s", out, seconds)
    return ExportReport(
        path=out,
        size_bytes=out.stat().st_size,
        seconds=seconds,
        parity=parity,
        weights_sha256=sha,
        precision=precision,
        variant_parity=variant_parity,
        variant_details=details,
        standalone=standalone,
    )


def _precision(quantize: str | None, fp16: bool) -> str:
    """fp32, int8 or fp16 from the options; `ExportError` for an unknown or double choice."""
    if quantize is not None and quantize not in ("int8",):
        raise ExportError(f"--quantize {quantize} is not supported; choose int8")
    if quantize and fp16:
        raise ExportError("--quantize int8 and --fp16 exclude each other; choose one")
    return "fp16" if fp16 else quantize or "fp32"


def _opset(ckpt: Checkpoint, opset: int | None, with_tokenizer: bool) -> int:
    """The opset to build at: the default, or `STANDALONE_OPSET` for --with-tokenizer."""
    if with_tokenizer:
        from bilstm.export.standalone import STANDALONE_OPSET, check_supported

        # Refused before any work: a pattern with no exact RE2 form, a non-text model.
        check_supported(ckpt)
        opset = STANDALONE_OPSET if opset is None else opset
        if opset < STANDALONE_OPSET:
            raise ExportError(
                f"--with-tokenizer needs --opset {STANDALONE_OPSET} or later (StringConcat)"
            )
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    return opset


def _fp32_parity(
    ckpt: Checkpoint, model: onnx.ModelProto, tolerance: float, out: Path
) -> ParityReport:
    """`check_parity` on the fp32 graph; warns (UserWarning) when the check is weaker."""
    with tempfile.TemporaryDirectory(prefix="bilstm-export-") as tmp:
        candidate = Path(tmp) / "candidate.onnx"
        onnx.save_model(model, candidate)
        parity = check_parity(ckpt, candidate, tolerance=tolerance)
    if parity.note:
        # stacklevel 3: the caller of export_checkpoint.
        warnings.warn(f"{out}: {parity.note}", UserWarning, stacklevel=3)
    return parity


def _variant(
    ckpt: Checkpoint,
    model: onnx.ModelProto,
    precision: str,
    verify: bool,
    tolerance: float | None,
    fp32_parity: ParityReport | None,
) -> tuple[onnx.ModelProto, dict[str, Any], dict[str, Any] | None]:
    """The int8/fp16 model, its conversion report and its parity as stored (None: unverified)."""
    from bilstm.export.quantize import build_variant

    model, details, report = build_variant(
        ckpt, model, precision, verify=verify, tolerance=tolerance
    )
    if report is None:
        return model, details, None
    # The fp32 check ran on the same cases: its note (no dev examples) holds here too, also
    # when the variant's own check was skipped.
    report.note = report.note or (fp32_parity.note if fp32_parity else None)
    return model, details, report.to_dict()


def _variant_info(
    fp32: dict[str, Any],
    precision: str,
    sha: str,
    parity: dict[str, Any] | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The `export` keys of a variant; the fp32 graph's hash and parity move to `fp32`."""
    fp32_info = {k: fp32[k] for k in ("weights_sha256", "parity")}
    return {
        "precision": precision,
        "weights_sha256": sha,
        "parity": parity,
        "fp32": fp32_info | {"size_bytes": details["size_before"]},
        "quantization" if precision == "int8" else "conversion": details,
    }


def _standalone(
    ckpt: Checkpoint, core: onnx.ModelProto, verify: bool, tolerance: float, precision: str
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The standalone model around `core` and its `export.standalone` metadata."""
    from bilstm.export.standalone import build_standalone, describe, verify_standalone

    model = build_standalone(ckpt, core)
    standalone = describe(ckpt, model)
    if verify:
        # A variant is compared with its own id graph only: PyTorch is fp32.
        standalone["parity"] = verify_standalone(
            ckpt, model, core, tolerance, against_pytorch=precision == "fp32"
        ).to_dict()
    return model, standalone
