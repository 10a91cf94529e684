"""Checkpoint -> one self-describing `.onnx`, checked and verified before it is kept."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
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
from bilstm.runtime.errors import ExportError
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


def export_checkpoint(
    checkpoint: Path | Checkpoint,
    out: Path,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = FP32_TOLERANCE,
) -> ExportReport:
    """Export a `bilstm train` checkpoint (folder or loaded) to `out`.

    The graph is checked (fused RNN nodes, `sequence_lens`, dynamic axes, `onnx.checker`) and,
    unless `verify=False`, compared with PyTorch; on `ParityError` no file is left at `out`.
    """
    started = time.perf_counter()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    out = Path(out)
    if not out.parent.is_dir():
        raise ExportError(f"{out}: the output folder {out.parent} does not exist")
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
    export_info = {
        "opset": opset,
        "precision": "fp32",
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": sha,
        "parity": parity.to_dict() if parity else None,
    }
    onnx.helper.set_model_props(model, {md.METADATA_KEY: _metadata(ckpt, export_info).to_json()})
    _save(model, out)
    seconds = time.perf_counter() - started
    log.info("exported %s in %.2f s", out, seconds)
    return ExportReport(
        path=out, size_bytes=out.stat().st_size, seconds=seconds, parity=parity, weights_sha256=sha
    )
