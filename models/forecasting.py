"""Time-series forecasting from windows of several features, with naive baselines."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from bilstm.models.checkpoint import Checkpoint, load_trainer_state, save_checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMForecaster
from bilstm.models.training import (
    distributed,
    parameter_count,
    seed_everything,
    start_or_resume,
    train_and_save,
)
from bilstm.runtime.datasets import Series
from bilstm.runtime.errors import DataError
from bilstm.runtime.metrics import error_metrics, forecast_baselines
from bilstm.runtime.version import __version__

NUM_EXAMPLES = 8


INDEX_NAMES = re.compile(
    r"(index|idx|id|row|rows|row_?(id|no|num|number|index)|step|steps|time_?step|"
    r"unnamed: ?\d+)",
    re.IGNORECASE,
)


def index_like_columns(columns: dict[str, list[float]]) -> dict[str, str]:
    """Columns that look like row indexes, with the reason: a name such as index, id, row or
    step, or integers that count up by the same step on every row (1, 2, 3, ...).

    As a feature such a column tells the model where in the file a row is, not anything it
    can use on new data (whose index values it never saw), so it is not a default feature.
    """
    found: dict[str, str] = {}
    for name, values in columns.items():
        if INDEX_NAMES.fullmatch(name.strip()):
            found[name] = "is named like a row index"
            continue
        arr = np.asarray(values, np.float64)
        if len(arr) < 3 or not np.all(arr == np.round(arr)):
            continue
        steps = np.diff(arr)
        if steps[0] > 0 and np.all(steps == steps[0]):
            found[name] = f"counts up by {steps[0]:g} on every row"
    return found


def make_windows(
    values: np.ndarray, target: np.ndarray, window: int, horizon: int, first_end: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (window, next `horizon` targets) pairs: X [n, window, cols], Y [n, horizon], ends.

    A window covers rows [end - window, end) and forecasts rows [end, end + horizon).
    `first_end` skips windows whose forecast starts before that row.
    """
    ends = np.arange(max(window, first_end), len(values) - horizon + 1)
    if len(ends) == 0:
        return (
            np.zeros((0, window, values.shape[1]), np.float32),
            np.zeros((0, horizon), np.float32),
            ends,
        )
    idx = ends[:, None] + np.arange(-window, 0)[None, :]
    out = ends[:, None] + np.arange(horizon)[None, :]
    return values[idx].astype(np.float32), target[out].astype(np.float32), ends


class ForecastSpec:
    """MSE on standardised targets; dev RMSE (in the data's units) picks the best epoch."""

    metric = "rmse"
    higher_is_better = False

    def __init__(
        self,
        x: dict[str, np.ndarray],
        y: dict[str, np.ndarray],
        baselines: dict[str, dict[str, np.ndarray]],
        cfg: TrainConfig,
        device: torch.device,
    ) -> None:
        self.x, self.y, self.baselines, self.cfg, self.device = x, y, baselines, cfg, device

    def lengths(self, split: str) -> list[int]:
        return [self.x[split].shape[1]] * len(self.x[split])

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        x = torch.from_numpy(self.x[split][batch]).to(self.device)
        y = torch.from_numpy(self.y[split][batch]).to(self.device)
        lens = torch.full((len(batch),), x.shape[1], dtype=torch.int64)
        # Call the module itself (not forward_scaled) so that DistributedDataParallel's hooks
        # run; the loss is the MSE in standardised target units.
        inner = getattr(model, "module", model)
        mean, std = inner.target_mean, inner.target_std
        pred = (model(x, lens) - mean) / std
        return torch.nn.functional.mse_loss(pred, (y - mean) / std)

    def predict(self, model: torch.nn.Module, split: str) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(self.x[split]), self.cfg.batch_size):
                x = torch.from_numpy(self.x[split][start : start + self.cfg.batch_size])
                lens = torch.full((len(x),), x.shape[1], dtype=torch.int64)
                out.append(model(x.to(self.device), lens).cpu().numpy())
        return np.concatenate(out) if out else np.zeros_like(self.y[split])

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        pred = self.predict(model, split)
        metrics: dict[str, Any] = error_metrics(self.y[split], pred)
        for name, base in self.baselines[split].items():
            for k, v in error_metrics(self.y[split], base).items():
                metrics[f"baseline_{name}_{k}"] = v
        return metrics


def train_forecaster(
    train: Series,
    dev: Series,
    out: Path,
    target: str,
    features: list[str],
    window: int,
    horizon: int,
    season: int | None,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
) -> Checkpoint:
    """Train a forecaster on windows of `[target, *features]`, saving `out` every epoch.

    Scaling statistics come from the training rows only. Dev windows may start in the last
    `window` training rows so that every dev row is forecast; dev residual statistics per
    step are stored for anomaly flags. With `resume`, the checkpoint's columns, window,
    horizon and scalers are kept.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    seed_everything(train_cfg.seed)
    device = torch.device(train_cfg.device)
    columns = [target, *[f for f in features if f != target]]

    def build() -> Checkpoint:
        tr = _matrix(train, columns, "training")
        if len(tr) < window + horizon:
            raise DataError(
                f"training data has {len(tr)} rows, fewer than window {window} + horizon {horizon}"
            )
        cfg = ModelConfig(
            vocab_size=0,
            num_labels=horizon,
            task="forecast",
            num_features=len(columns),
            **model_cfg,
        )
        model = BiLSTMForecaster(cfg)
        mean, std = tr.mean(axis=0), tr.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        model.feature_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        model.feature_std.copy_(torch.tensor(std, dtype=torch.float32))
        model.target_mean.copy_(torch.tensor(mean[0], dtype=torch.float32))
        model.target_std.copy_(torch.tensor(std[0], dtype=torch.float32))
        task_config = {
            "target": target,
            "columns": columns,
            "window": window,
            "horizon": horizon,
            "season": season,
            "scaler": {"mean": mean.tolist(), "std": std.tolist()},
        }
        return Checkpoint(
            model=model,
            model_config=cfg,
            train_config=train_cfg,
            tokenizer=None,
            vocabulary=None,
            labels=[],
            task_config=task_config,
        )

    base, state = start_or_resume("forecast", out, resume, build)
    tc = base.task_config
    columns, window, horizon, season = tc["columns"], tc["window"], tc["horizon"], tc["season"]
    tr, dv = _matrix(train, columns, "training"), _matrix(dev, columns, "dev")
    joined = np.concatenate([tr, dv])
    x_tr, y_tr, ends_tr = make_windows(tr, tr[:, 0], window, horizon)
    x_dv, y_dv, ends_dv = make_windows(joined, joined[:, 0], window, horizon, first_end=len(tr))
    if len(x_tr) == 0 or len(x_dv) == 0:
        raise DataError(
            f"not enough rows for window {window} + horizon {horizon}: training "
            f"{len(tr)}, dev {len(dv)}"
        )
    baselines = {
        "train": forecast_baselines(tr[:, 0], ends_tr, horizon, season),
        "dev": forecast_baselines(joined[:, 0], ends_dv, horizon, season),
    }
    step = max(1, len(x_dv) // NUM_EXAMPLES)
    base = replace(base, train_config=train_cfg, examples=x_dv[::step][:NUM_EXAMPLES].tolist())
    model = base.model.to(device)
    console.print(
        f"train {len(x_tr)} windows, dev {len(x_dv)}, columns {columns}, window "
        f"{window}, horizon {horizon}, {parameter_count(model):,} parameters"
    )
    spec = ForecastSpec(
        {"train": x_tr, "dev": x_dv}, {"train": y_tr, "dev": y_dv}, baselines, train_cfg, device
    )
    summary = {
        "task": "forecast",
        "toolkit_version": __version__,
        "data": data_info,
        "train_examples": len(x_tr),
        "dev_examples": len(x_dv),
    }
    ckpt = train_and_save(model, spec, train_cfg, console, out, base, summary, state)
    # Residual statistics of the best weights, for anomaly flags at inference.
    residuals = y_dv - spec.predict(model, "dev")
    ckpt = replace(
        ckpt,
        task_config=tc
        | {
            "residual_mean": residuals.mean(axis=0).tolist(),
            "residual_std": residuals.std(axis=0).tolist(),
        },
    )
    # The dev windows above forecast every dev row: the first `window` of them take their
    # context from the end of the training series. `bilstm eval` on the dev file alone has no
    # training rows, so it scores only the windows whose context lies in the dev file (the
    # first forecast at dev row window + 1). Both figures go into the summary and the output.
    alone = ends_dv >= len(tr) + window
    dev_only: dict[str, Any] = {"windows": int(alone.sum())}
    if alone.any():
        dev_only |= error_metrics(y_dv[alone], spec.predict(model, "dev")[alone])
    ckpt = replace(
        ckpt,
        summary=ckpt.summary | {"dev_windows": len(x_dv), "dev_file_alone_metrics": dev_only},
    )
    if distributed()[0] == 0:
        save_checkpoint(ckpt, out, trainer_state=load_trainer_state(out))
    m = ckpt.summary["dev_metrics"]
    dev_name = data_info.get("dev", "the dev file")
    console.print(
        f"best epoch {ckpt.summary['best_epoch']}: dev RMSE {m['rmse']:.4f} MAE {m['mae']:.4f} "
        f"(persistence RMSE {m['baseline_persistence_rmse']:.4f}"
        + (f", seasonal-naive RMSE {m['baseline_seasonal_naive_rmse']:.4f}" if season else "")
        + f") over {len(x_dv)} windows: every dev row is forecast, the first "
        f"{min(window, len(x_dv))} from windows that start in the last training rows; saved {out}"
    )
    if "rmse" in dev_only:
        console.print(
            f"`bilstm eval` on {dev_name} alone scores {dev_only['windows']} windows (the "
            f"first {window} dev rows are only context there): on those, dev RMSE "
            f"{dev_only['rmse']:.4f} MAE {dev_only['mae']:.4f}"
        )
    else:
        console.print(
            f"`bilstm eval` on {dev_name} alone cannot score it: {len(dv)} rows are fewer "
            f"than window {window} + horizon {horizon}"
        )
    return ckpt


def _matrix(series: Series, columns: list[str], name: str) -> np.ndarray:
    missing = [c for c in columns if c not in series.columns]
    if missing:
        raise DataError(f"{name} data lacks the numeric columns {missing}")
    return np.stack([np.asarray(series.columns[c], np.float64) for c in columns], axis=1)
