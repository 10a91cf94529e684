"""What a padded batch gets from the naive export of a packed BiLSTM, and from export_module.

A user's classifier (embedding -> packed bidirectional LSTM -> both final states -> linear),
random weights, scored on one padded batch (64 rows, time 40, lengths 3..40) by PyTorch (the
truth) and by ONNX Runtime running:

1. `torch.onnx.export(model, ...)` as written (dynamo, the default): does it export at all?
2. the usual workaround when it does not: the same weights without `pack_padded_sequence`
   (the LSTM runs over the padded batch), exported by `torch.onnx.export` (dynamo);
3. `torch.onnx.export(..., dynamo=False)`: the deprecated TorchScript exporter;
4. `bilstm.export.export_module` on the module as written.

For each: max abs difference of the logits from PyTorch on padded rows and on full rows, and
the rows whose predicted class differs. No timing: this measures correctness.

    python -m benchmarks.naive_export
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "naive_export"


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--time", type=int, default=40)
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.time = 8, 10
    machine = c.machine_info(args.wait_quiet)

    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    from bilstm.export import export_module

    torch.set_num_threads(args.threads)

    class Classifier(nn.Module):
        def __init__(self, packed: bool = True) -> None:
            super().__init__()
            self.packed = packed
            self.embedding = nn.Embedding(1000, 32, padding_idx=0)
            self.lstm = nn.LSTM(32, 32, bidirectional=True, batch_first=True)
            self.out = nn.Linear(64, 5)

        def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            x = self.embedding(ids)
            if self.packed:
                x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(x)
            return self.out(torch.cat((h[-2], h[-1]), dim=1))

    torch.manual_seed(0)
    model = Classifier().eval()
    unpacked = Classifier(packed=False).eval()
    unpacked.load_state_dict(model.state_dict())

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, args.time + 1, size=args.batch)
    lengths[0] = args.time
    ids = rng.integers(1, 1000, size=(args.batch, args.time))
    ids[np.arange(args.time)[None, :] >= lengths[:, None]] = 0
    feeds = {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int64)}
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        truth = model(**tensors).numpy()
    padded = lengths < args.time

    # the example the exporters trace with: 4 rows of time 12 (not the scored batch's shape)
    example = (torch.randint(1, 1000, (4, 12)), torch.tensor([12, 9, 5, 3]))
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    shapes = {"ids": {0: batch, 1: time}, "lengths": {0: batch}}
    work = Path(tempfile.mkdtemp(prefix="bilstm-naive-"))

    def score(path: Path) -> dict[str, Any]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        try:
            got = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
        except Exception as exc:  # noqa: BLE001 - a graph that cannot run this batch is a finding
            return {"runs": False, "error": str(exc).splitlines()[0][:300]}
        diff = np.abs(got - truth).max(axis=1)
        return {
            "runs": True,
            "max_abs_padded_rows": float(diff[padded].max(initial=0.0)),
            "max_abs_full_rows": float(diff[~padded].max(initial=0.0)),
            "rows_class_differs": int((got.argmax(1) != truth.argmax(1)).sum()),
        }

    def dynamo(module: nn.Module, path: Path) -> dict[str, Any]:
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    module, example, dynamic_shapes=shapes, input_names=["ids", "lengths"]
                )
                assert program is not None
                program.save(str(path))
        except Exception as exc:  # noqa: BLE001 - the point: how the naive export fails
            return {"exports": False, "error": _cause(exc)}
        return {"exports": True, **score(path)}

    def torchscript(path: Path) -> dict[str, Any]:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with contextlib.redirect_stdout(io.StringIO()):
                    torch.onnx.export(
                        model,
                        example,
                        str(path),
                        dynamo=False,
                        input_names=["ids", "lengths"],
                        dynamic_axes={"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
                    )
        except Exception as exc:  # noqa: BLE001 - the point: how the naive export fails
            return {"exports": False, "error": _cause(exc)}
        deprecated = any(issubclass(w.category, DeprecationWarning) for w in caught)
        return {"exports": True, "deprecation_warning": deprecated, **score(path)}

    results: dict[str, Any] = {}
    results["dynamo_as_written"] = dynamo(model, work / "dynamo.onnx")
    results["dynamo_without_packing"] = dynamo(unpacked, work / "unpacked.onnx")
    results["torchscript_dynamo_false"] = torchscript(work / "torchscript.onnx")
    report = export_module(
        model,
        example,
        work / "export_module.onnx",
        input_names=["ids", "lengths"],
        output_names=["logits"],
        dynamic_shapes=shapes,
        lengths="lengths",
    )
    results["export_module"] = {
        "exports": True,
        "parity_max_abs": report.parity.max_abs,
        **score(work / "export_module.onnx"),
    }
    data = {
        "batch": args.batch,
        "time": args.time,
        "padded_rows": int(padded.sum()),
        "model": "embedding 1000x32 -> BiLSTM hidden 32 (packed) -> linear 5, random weights",
        "results": results,
    }
    for name, r in results.items():
        print(f"{name}: {r}")
    c.save(NAME, args, argv, data, machine)
    return 0


def _cause(exc: Exception) -> str:
    """The line of torch.onnx's error report that names the root cause (else its first)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("<class '")), lines[0] if lines else "")
    return re.sub(r"\x1b\[[0-9;]*m", "", cause)[:300]


if __name__ == "__main__":
    raise SystemExit(main())
