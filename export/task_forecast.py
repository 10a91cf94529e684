"""Export hooks of `forecast`: windows of numbers in, the next values out (no text form)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from bilstm.export.builder import GraphBuilder
from bilstm.export.feeds import Feeds, ragged_batch
from bilstm.export.layers import BATCH, TIME, as_array, encoder, io
from bilstm.export.task_base import ExportTask, Graph, State
from bilstm.models.checkpoint import Checkpoint, predict_logits
from bilstm.models.config import ModelConfig
from bilstm.runtime import metadata as md


class ForecastExport(ExportTask):
    """Scaling in the graph: raw features in, forecasts in the target's units out."""

    name = "forecast"

    def graph(self, g: GraphBuilder, cfg: ModelConfig, state: State, seq_lens: str) -> Graph:
        f32 = TensorProto.FLOAT
        inputs = [
            io(md.FEATURES, f32, [BATCH, TIME, cfg.num_features]),
            io(md.LENGTHS, TensorProto.INT64, [BATCH]),
        ]
        scaled = g.op(
            "Div",
            [
                g.op("Sub", [md.FEATURES, g.const("mean", as_array(state["feature_mean"]))]),
                g.const("std", as_array(state["feature_std"])),
            ],
        )
        _, final = encoder(g, cfg, state, g.op("Transpose", [scaled], perm=[1, 0, 2]), seq_lens)
        y = g.op("MatMul", [final, g.const("out_w", as_array(state["output.weight"]).T)])
        y = g.op("Add", [y, g.const("out_b", as_array(state["output.bias"]))])
        y = g.op("Mul", [y, g.const("target_std", as_array(state["target_std"]))])
        g.op("Add", [y, g.const("target_mean", as_array(state["target_mean"]))], [md.FORECAST])
        return inputs, [io(md.FORECAST, f32, [BATCH, cfg.num_labels])]

    def random_feeds(self, ckpt: Checkpoint, batch: int, time: int, seed: int) -> Feeds:
        """Features around the training scaler's mean and spread."""
        cfg = ckpt.model_config
        rng = np.random.default_rng(seed + 1000)
        _, lens = ragged_batch(3, batch, time, seed)
        scale = ckpt.task_config.get("scaler", {})
        mean = np.asarray(scale.get("mean", np.zeros(cfg.num_features)), np.float32)
        std = np.asarray(scale.get("std", np.ones(cfg.num_features)), np.float32)
        x = rng.normal(size=(batch, time, cfg.num_features)).astype(np.float32) * std + mean
        return {md.FEATURES: x.astype(np.float32), md.LENGTHS: lens}

    def example_feeds(self, ckpt: Checkpoint) -> Feeds | None:
        if not ckpt.examples:
            return None
        x = np.asarray(ckpt.examples, dtype=np.float32)
        return {md.FEATURES: x, md.LENGTHS: np.full(len(x), x.shape[1], np.int64)}

    def reference_outputs(self, ckpt: Checkpoint, feeds: Feeds) -> Feeds:
        out = predict_logits(ckpt.model, feeds[md.FEATURES], feeds[md.LENGTHS])
        return {md.FORECAST: out.numpy()}
