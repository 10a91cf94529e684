"""What `export_module` changes in a user's module while `torch.export` traces it.

PyTorch's dynamo exporter writes no `sequence_lens` and cannot trace `pack_padded_sequence`
(its batch sizes are data, not shapes: docs/export-notes.md 2). So, only for the duration of
the trace (`export_patches`):

- `pack_padded_sequence` / `pad_packed_sequence` keep the batch padded: the packing primitives
  (`torch._VF._pack_padded_sequence`, `_pad_packed_sequence`, which every way of calling
  those functions goes through) return the padded, time-major tensor as the `PackedSequence`'s
  data and real per-step batch sizes computed from the lengths with tensor ops, so the
  sorting, `sorted_indices`/`unsorted_indices` and the returned lengths stay in the graph;
- each `nn.LSTM`/`nn.GRU` instance's `forward` emits one placeholder node
  (`bilstm.module::RNN`) with the input, the real lengths (full length for an unpacked
  input) and the initial states; `export/module_lower.py` replaces it by fused ONNX
  `LSTM`/`GRU` nodes (one per layer) fed `sequence_lens`, or the `Scan` lowering for
  `proj_size`, with the weights of the module.

Nothing is changed outside the context manager, and everything is restored on any error.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from bilstm.core.errors import ExportError

PLACEHOLDER_DOMAIN = "bilstm.module"
PLACEHOLDER_OP = "RNN"

# Layers that cannot be exported padding-exact: a cell stepped by a Python loop is unrolled to
# the traced length; a plain Elman RNN is not mapped (only LSTM and GRU are).
_REFUSED: dict[type[nn.Module], str] = {
    nn.RNN: "nn.RNN (Elman RNN) is not supported; use nn.LSTM or nn.GRU",
    nn.LSTMCell: "nn.LSTMCell steps in a Python loop, which the exporter unrolls to the traced "
    "length; use nn.LSTM over the whole sequence",
    nn.GRUCell: "nn.GRUCell steps in a Python loop, which the exporter unrolls to the traced "
    "length; use nn.GRU over the whole sequence",
    nn.RNNCell: "nn.RNNCell is not supported; use nn.LSTM or nn.GRU over the whole sequence",
}


@dataclass
class RNNSite:
    """One `nn.LSTM`/`nn.GRU` of the module, by its qualified name."""

    name: str
    module: nn.LSTM | nn.GRU
    calls: int = 0
    """How often the traced forward called it (0: unused, nothing to export)."""
    packed: list[bool] = field(default_factory=list)
    """Per call: whether it was given a PackedSequence (else a padded tensor, run full length)."""

    @property
    def cell(self) -> str:
        return "lstm" if isinstance(self.module, nn.LSTM) else "gru"

    @property
    def directions(self) -> int:
        return 2 if self.module.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Per direction: proj_size for LSTMs with projections, else hidden_size."""
        return int(getattr(self.module, "proj_size", 0) or self.module.hidden_size)

    def describe(self) -> dict[str, Any]:
        """JSON facts stored in the exported model's metadata."""
        m = self.module
        return {
            "name": self.name,
            "cell": self.cell,
            "input_size": m.input_size,
            "hidden_size": m.hidden_size,
            "proj_size": int(getattr(m, "proj_size", 0)),
            "num_layers": m.num_layers,
            "bidirectional": m.bidirectional,
            "batch_first": m.batch_first,
            "calls": self.calls,
            "packed": self.packed,
        }


def find_rnns(module: nn.Module) -> dict[str, RNNSite]:
    """The module's LSTM/GRU layers by qualified name; `ExportError` naming any refused layer.

    Refused: nn.RNN and the cells (see `_REFUSED`), subclasses of nn.LSTM/nn.GRU that
    override `forward` (their code would be bypassed), and non-float32 weights (ONNX
    Runtime's CPU LSTM/GRU kernels are float32 only: docs/export-notes.md 5).
    """
    sites: dict[str, RNNSite] = {}
    seen: dict[int, str] = {}
    for name, sub in module.named_modules():
        label = name or type(module).__name__
        for kind, why in _REFUSED.items():
            if isinstance(sub, kind):
                raise ExportError(f"layer '{label}' ({type(sub).__name__}): {why}")
        if not isinstance(sub, nn.LSTM | nn.GRU):
            if isinstance(sub, nn.RNNBase):
                raise ExportError(
                    f"layer '{label}' ({type(sub).__name__}, mode {sub.mode}) is not supported; "
                    "use nn.LSTM or nn.GRU"
                )
            continue
        base = nn.LSTM if isinstance(sub, nn.LSTM) else nn.GRU
        if type(sub).forward is not base.forward:
            raise ExportError(
                f"layer '{label}' ({type(sub).__name__}) overrides {base.__name__}.forward; "
                "only the stock forward is exported (move the extra code to the parent module)"
            )
        for pname, param in sub.named_parameters():
            if param.dtype != torch.float32:
                raise ExportError(
                    f"layer '{label}': parameter {pname} is {param.dtype}; export float32 "
                    "weights (call module.float() first)"
                )
        if id(sub) not in seen:  # a shared layer is one site
            seen[id(sub)] = name
            sites[name] = RNNSite(name=name, module=sub)
    return sites


def lengths_from_batch_sizes(batch_sizes: torch.Tensor, batch: int | torch.SymInt) -> torch.Tensor:
    """Per-row lengths (in the packed, descending order) from per-step batch sizes."""
    rows = torch.arange(batch, device=batch_sizes.device)
    return (batch_sizes.unsqueeze(0) > rows.unsqueeze(1)).sum(1)


def _pack_padded(
    input: torch.Tensor, lengths: torch.Tensor, batch_first: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace-time `_VF._pack_padded_sequence`: the padded batch, time-major, and the real
    per-step batch sizes (rows longer than each step), of the input's full time length."""
    x = input.transpose(0, 1) if batch_first else input
    steps = torch.arange(x.shape[0], device=lengths.device)
    batch_sizes = (lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(1)
    return x, batch_sizes


def _pad_packed(
    data: torch.Tensor,
    batch_sizes: torch.Tensor,
    batch_first: bool,
    padding_value: float,
    total_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace-time `_VF._pad_packed_sequence` on `_pack_padded`'s form: positions past each
    row's length get `padding_value`; the time axis is the input's (or `total_length`)."""
    time, batch = data.shape[0], data.shape[1]
    lengths = lengths_from_batch_sizes(batch_sizes, batch)
    valid = torch.arange(time).unsqueeze(1) < lengths.unsqueeze(0)
    valid = valid.reshape(time, batch, *([1] * (data.dim() - 2)))
    out = torch.where(valid, data, torch.full((), padding_value, dtype=data.dtype))
    if total_length > time:
        widths = [0, 0] * (data.dim() - 2) + [0, 0, 0, total_length - time]
        out = nn.functional.pad(out, widths, value=padding_value)
    return (out.transpose(0, 1) if batch_first else out), lengths


def _placeholder(
    site: RNNSite, x: torch.Tensor, lengths: torch.Tensor, h0: Any, c0: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One `bilstm.module::RNN` node: y [T, B, D*H_out], h_n [L*D, B, H_out] and, for an
    LSTM, c_n [L*D, B, H]."""
    m = site.module
    time, batch = x.shape[0], x.shape[1]
    d, out = site.directions, site.output_size
    shapes = [[time, batch, d * out], [m.num_layers * d, batch, out]]
    if site.cell == "lstm":
        shapes.append([m.num_layers * d, batch, m.hidden_size])
    outputs = torch.onnx.ops.symbolic_multi_out(
        f"{PLACEHOLDER_DOMAIN}::{PLACEHOLDER_OP}",
        [x, lengths.to(torch.int32), h0, c0],
        {"site": site.name},
        dtypes=[x.dtype] * len(shapes),
        shapes=shapes,
        version=1,
    )
    return outputs[0], outputs[1], (outputs[2] if len(outputs) > 2 else None)


def _rnn_forward(site: RNNSite) -> Any:
    """The trace-time `forward` of one LSTM/GRU instance (same inputs and outputs)."""
    m = site.module

    def forward(self: nn.Module, input: Any, hx: Any = None) -> Any:
        packed = isinstance(input, PackedSequence)
        unbatched = False
        sorted_idx = unsorted_idx = None
        if packed:
            x, batch_sizes, sorted_idx, unsorted_idx = input
            if x.dim() != 3:
                raise ExportError(
                    f"layer '{site.name}': got a PackedSequence not made by "
                    "pack_padded_sequence (or changed after it); pack a padded batch with "
                    "pack_padded_sequence"
                )
            lengths = lengths_from_batch_sizes(batch_sizes, x.shape[1])
        else:
            if input.dim() == 2:  # unbatched [T, in]
                unbatched, x = True, input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if m.batch_first else input
            lengths = torch.ones(x.shape[1], dtype=torch.int64) * x.shape[0]
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx if isinstance(m, nn.LSTM) else (hx, None)
            if unbatched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
            if sorted_idx is not None:  # states come in the caller's row order
                h0 = h0.index_select(1, sorted_idx)
                c0 = c0.index_select(1, sorted_idx) if c0 is not None else None
        y, h_n, c_n = _placeholder(site, x, lengths, h0, c0)
        site.calls += 1
        site.packed.append(packed)
        if unsorted_idx is not None:  # states go back to the caller's row order
            h_n = h_n.index_select(1, unsorted_idx)
            c_n = c_n.index_select(1, unsorted_idx) if c_n is not None else None
        if packed:
            output: Any = PackedSequence(y, input.batch_sizes, sorted_idx, unsorted_idx)
        elif unbatched:
            output, h_n = y.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        else:
            output = y.transpose(0, 1) if m.batch_first else y
        return output, ((h_n, c_n) if c_n is not None else h_n)

    return forward


@contextlib.contextmanager
def export_patches(sites: dict[str, RNNSite]) -> Iterator[None]:
    """Within: packing keeps the batch padded, and every site's forward emits a placeholder."""
    vf = torch._VF
    saved = {
        name: vf.__dict__.get(name) for name in ("_pack_padded_sequence", "_pad_packed_sequence")
    }
    patched: list[nn.Module] = []
    try:
        vf._pack_padded_sequence = _pack_padded  # type: ignore[attr-defined]
        vf._pad_packed_sequence = _pad_packed  # type: ignore[attr-defined]
        for site in sites.values():
            site.calls, site.packed = 0, []
            site.module.forward = types.MethodType(_rnn_forward(site), site.module)  # type: ignore[method-assign]
            patched.append(site.module)
        yield
    finally:
        for module in patched:
            del module.forward
        for name, value in saved.items():
            if value is None:
                vf.__dict__.pop(name, None)
            else:
                setattr(vf, name, value)
