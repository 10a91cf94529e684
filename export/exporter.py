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

from bilstm.export.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, build_graph, check_graph
from bilstm.export.verify import FP32_TOLERANCE, ParityReport, check_parity
from bilstm.models.checkpoint import Checkpoint, load_checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.atomic import atomic_path
from bilstm.runtime.errors import CheckpointError, ExportError, InputError
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.outpaths import check_not_an_input, check_output_file, same_file
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
    """Parity of the int8/fp16 variant with PyTorch (looser tolerance), None for fp32."""
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
    if quantize is not None and quantize not in ("int8",):
        raise ExportError(f"--quantize {quantize} is not supported; choose int8")
    if quantize and fp16:
        raise ExportError("--quantize int8 and --fp16 exclude each other; choose one")
    precision = "fp16" if fp16 else quantize or "fp32"
    out = Path(out)
    check_export_output(checkpoint, out, force)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if with_tokenizer:
        from bilstm.export.standalone import STANDALONE_OPSET, check_supported

        check_supported(ckpt)
        opset = STANDALONE_OPSET if opset is None else opset
        if opset < STANDALONE_OPSET:
            raise ExportError(
                f"--with-tokenizer needs --opset {STANDALONE_OPSET} or later (StringConcat)"
            )
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    ckpt.model.eval()
    model = build_graph(ckpt.model_config, ckpt.model.state_dict(), opset)
    check_graph(model, ckpt.model_config)
    sha = weights_hash(model)

    parity: ParityReport | None = None
    if verify:
        with tempfile.TemporaryDirectory(prefix="bilstm-export-") as tmp:
            candidate = Path(tmp) / "candidate.onnx"
            onnx.save_model(model, candidate)
            parity = check_parity(ckpt, candidate, tolerance=tolerance)
        if parity.note:
            warnings.warn(f"{out}: {parity.note}", UserWarning, stacklevel=2)
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
        from bilstm.export.quantize import build_variant

        model, details, variant_parity = build_variant(
            ckpt, model, precision, verify=verify, tolerance=variant_tolerance
        )
        sha = weights_hash(model)
        if parity is not None and parity.note and variant_parity is not None:
            variant_parity.setdefault("note", parity.note)
        fp32_info = {k: export_info[k] for k in ("weights_sha256", "parity")}
        export_info |= {
            "precision": precision,
            "weights_sha256": sha,
            "parity": variant_parity,
            "fp32": fp32_info | {"size_bytes": details["size_before"]},
            "quantization" if precision == "int8" else "conversion": details,
        }
    standalone: dict[str, Any] | None = None
    if with_tokenizer:
        from bilstm.export.standalone import build_standalone, describe, verify_standalone

        core, model = model, build_standalone(ckpt, model)
        standalone = describe(ckpt, model)
        if verify:
            standalone["parity"] = verify_standalone(
                ckpt, model, core, tolerance, against_pytorch=precision == "fp32"
            )
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
