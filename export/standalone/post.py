"""What every task's standalone postprocessing shares (the steps themselves are per task,
in the task's export hooks: export/task_*.py)."""

from __future__ import annotations

from dataclasses import dataclass

from bilstm.export.standalone.names import CLASSES
from bilstm.export.standalone.nodes import NodeBuilder, strings
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md

CORE_LOGITS, CORE_PROBABILITIES = "core_logits", "core_probabilities"
"""The id graph's outputs, renamed inside: the standalone graph's own `logits` and
`probabilities` are those zeroed for texts without tokens (or without exactly one blank)."""


@dataclass
class Post:
    """What the postprocessing steps share."""

    b: NodeBuilder
    ckpt: Checkpoint
    present: str
    """Bool [batch, time]: True where a real token is."""
    zero: str
    classes: int
    """Size of the last axis of probabilities: labels, or the vocabulary for cloze."""

    def zero_rows(self, keep: str) -> None:
        """`logits` and `probabilities`: the id graph's where `keep`, zeros elsewhere."""
        self.b.op("Where", [keep, CORE_LOGITS, self.zero], md.LOGITS)
        self.b.op("Where", [keep, CORE_PROBABILITIES, self.zero], md.PROBABILITIES)

    def label_names(self) -> None:
        """The `classes` output: the labels, in the order of the probabilities' last axis."""
        self.b.op("Identity", [self.b.const("classes", strings(list(self.ckpt.labels)))], CLASSES)
