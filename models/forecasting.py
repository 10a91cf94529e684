"""Time-series forecasting from windows of several features, with naive baselines."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from bilstm.core import datasets
from bilstm.core.datasets import Series
from bilstm.core.errors import BiLSTMError, DataError
from bilstm.core.metrics import error_metrics, forecast_baselines
from bilstm.models import options, skeleton
from bilstm.models.checkpoint import Checkpoint, load_trainer_state, save_checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMForecaster
from bilstm.models.options import TrainOptions
from bilstm.models.skeleton import Prepared
from bilstm.models.training import distributed

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


@dataclass
class _Windows:
    """What `finish` needs of the encoded data: dev targets, where each dev window ends."""

    y_dev: np.ndarray
    ends_dev: np.ndarray
    train_rows: int
    dev_rows: int
    window: int
    horizon: int
    season: int | None


@dataclass
class ForecastTrainer:
    """The forecast hooks of the training skeleton (`bilstm.models.skeleton.train`)."""

    train_series: Series
    dev_series: Series
    target: str
    features: list[str]
    window: int
    horizon: int
    season: int | None
    model_cfg: dict[str, Any]
    name: str = "forecast"
    windows: _Windows | None = field(default=None, init=False)

    @property
    def columns(self) -> list[str]:
        """The model's input columns: the target first, then the features."""
        return [self.target, *[f for f in self.features if f != self.target]]

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """Scalers from the training rows only; window, horizon and columns as task config."""
        columns, window, horizon = self.columns, self.window, self.horizon
        tr = _matrix(self.train_series, columns, "training")
        if len(tr) < window + horizon:
            raise DataError(
                f"training data has {len(tr)} rows, fewer than window {window} + horizon {horizon}"
            )
        model_config = ModelConfig(
            vocab_size=0,
            num_labels=horizon,
            task=self.name,
            num_features=len(columns),
            **self.model_cfg,
        )
        model = BiLSTMForecaster(model_config)
        mean, std = tr.mean(axis=0), tr.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        model.feature_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        model.feature_std.copy_(torch.tensor(std, dtype=torch.float32))
        model.target_mean.copy_(torch.tensor(mean[0], dtype=torch.float32))
        model.target_std.copy_(torch.tensor(std[0], dtype=torch.float32))
        task_config = {
            "target": self.target,
            "columns": columns,
            "window": window,
            "horizon": horizon,
            "season": self.season,
            "scaler": {"mean": mean.tolist(), "std": std.tolist()},
        }
        return Checkpoint(
            model=model,
            model_config=model_config,
            train_config=cfg,
            tokenizer=None,
            vocabulary=None,
            labels=[],
            task_config=task_config,
        )

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """Windows of both splits (with `base`'s columns, window and horizon) and baselines.

        Dev windows may start in the last `window` training rows, so that every dev row is
        forecast; a few of them become the exporter's examples.
        """
        tc = base.task_config
        columns, window, horizon, season = tc["columns"], tc["window"], tc["horizon"], tc["season"]
        tr = _matrix(self.train_series, columns, "training")
        dv = _matrix(self.dev_series, columns, "dev")
        joined = np.concatenate([tr, dv])
        x_tr, y_tr, ends_tr = make_windows(tr, tr[:, 0], window, horizon)
        x_dv, y_dv, ends_dv = make_windows(joined, joined[:, 0], window, horizon, len(tr))
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
        self.windows = _Windows(y_dv, ends_dv, len(tr), len(dv), window, horizon, season)
        return Prepared(
            spec=ForecastSpec(
                {"train": x_tr, "dev": x_dv}, {"train": y_tr, "dev": y_dv}, baselines, cfg, device
            ),
            base=replace(base, examples=x_dv[::step][:NUM_EXAMPLES].tolist()),
            train_examples=len(x_tr),
            dev_examples=len(x_dv),
            description=(
                f"train {len(x_tr)} windows, dev {len(x_dv)}, columns {columns}, window "
                f"{window}, horizon {horizon}"
            ),
        )

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """Add the best weights' dev residual statistics (for anomaly flags at inference) and
        the dev-file-alone metrics, save `out` again, and report both dev figures."""
        assert isinstance(prepared.spec, ForecastSpec) and self.windows is not None
        w = self.windows
        pred = prepared.spec.predict(ckpt.model, "dev")
        residuals = w.y_dev - pred
        task_config = ckpt.task_config | {
            "residual_mean": residuals.mean(axis=0).tolist(),
            "residual_std": residuals.std(axis=0).tolist(),
        }
        # The dev windows forecast every dev row: the first `window` of them take their
        # context from the end of the training series. `bilstm eval` on the dev file alone
        # has no training rows, so it scores only the windows whose context lies in the dev
        # file (the first forecast at dev row window + 1). Both figures are kept and shown.
        alone = w.ends_dev >= w.train_rows + w.window
        dev_only: dict[str, Any] = {"windows": int(alone.sum())}
        if alone.any():
            dev_only |= error_metrics(w.y_dev[alone], pred[alone])
        summary = ckpt.summary | {"dev_windows": len(w.y_dev), "dev_file_alone_metrics": dev_only}
        ckpt = replace(ckpt, task_config=task_config, summary=summary)
        if distributed()[0] == 0:
            save_checkpoint(ckpt, out, trainer_state=load_trainer_state(out))
        self._report(ckpt, out, console)
        return ckpt

    def _report(self, ckpt: Checkpoint, out: Path, console: Console) -> None:
        """The best epoch's dev errors against the baselines, and what `bilstm eval` will see."""
        assert self.windows is not None
        w, m = self.windows, ckpt.summary["dev_metrics"]
        dev_only = ckpt.summary["dev_file_alone_metrics"]
        windows = ckpt.summary["dev_windows"]
        dev_name = ckpt.summary["data"].get("dev", "the dev file")
        console.print(
            f"best epoch {ckpt.summary['best_epoch']}: dev RMSE {m['rmse']:.4f} "
            f"MAE {m['mae']:.4f} (persistence RMSE {m['baseline_persistence_rmse']:.4f}"
            + (f", seasonal-naive RMSE {m['baseline_seasonal_naive_rmse']:.4f}" if w.season else "")
            + f") over {windows} windows: every dev row is forecast, the first "
            f"{min(w.window, windows)} from windows that start in the last training rows; "
            f"saved {out}"
        )
        if "rmse" in dev_only:
            console.print(
                f"`bilstm eval` on {dev_name} alone scores {dev_only['windows']} windows (the "
                f"first {w.window} dev rows are only context there): on those, dev RMSE "
                f"{dev_only['rmse']:.4f} MAE {dev_only['mae']:.4f}"
            )
        else:
            console.print(
                f"`bilstm eval` on {dev_name} alone cannot score it: {w.dev_rows} rows are "
                f"fewer than window {w.window} + horizon {w.horizon}"
            )


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
    task = ForecastTrainer(train, dev, target, features, window, horizon, season, model_cfg)
    return skeleton.train(task, out, train_cfg, data_info, console, resume)


def train_from_options(
    opts: TrainOptions, model_cfg: dict[str, Any], train_cfg: TrainConfig, console: Console
) -> Checkpoint:
    """`bilstm train forecast`: read the CSV files (target and feature columns) and train."""
    if not opts.target:  # on --resume, the saved run's target is filled in
        raise BiLSTMError("forecast needs --target COLUMN (the series to predict)")
    target = opts.target
    train_series = datasets.read_series(opts.data)
    if target not in train_series.columns:
        if target in train_series.non_numeric:
            raise train_series.cell_error(opts.data, target, " (the --target column)")
        raise DataError(
            f"{opts.data}: --target {target!r} is not a numeric column "
            f"(numeric columns: {list(train_series.columns)})"
        )
    if opts.features is not None:
        feats = [f.strip() for f in opts.features.split(",") if f.strip()]
    else:
        feats = default_features(opts.data, train_series, target, console)
    columns = [target, *[f for f in feats if f != target]]
    return train_forecaster(
        datasets.read_series(opts.data, columns),
        datasets.read_series(opts.dev, columns),
        opts.out,
        target,
        feats,
        opts.window,
        opts.horizon,
        opts.season,
        model_cfg,
        train_cfg,
        options.data_info(opts),
        console=console,
        resume=opts.resume,
    )


def default_features(data: Path, series: Series, target: str, console: Console) -> list[str]:
    """All numeric columns but the target and row-index-like ones (reported on stderr).

    A column with numbers and a non-numeric cell is an error naming file:line; a column of
    text only (e.g. dates) is left out and reported.
    """
    for name, (_, _, numbers) in series.non_numeric.items():
        if numbers and name != target:
            raise series.cell_error(
                data,
                name,
                "; fix the cell, or name the feature columns with --features "
                "(default: every other numeric column)",
            )
    text = [c for c in series.non_numeric if c != target]
    if text:
        console.print(f"forecast: not using the non-numeric columns {text} as features")
    candidates = [c for c in series.columns if c != target]
    excluded = index_like_columns({c: series.columns[c] for c in candidates})
    if excluded:
        why = "; ".join(f"'{c}' {reason}" for c, reason in excluded.items())
        console.print(
            f"forecast: not using {list(excluded)} as features: they look like row indexes "
            f"({why}), which would teach the model the position in the file. Name them in "
            "--features to use them anyway"
        )
    return [c for c in candidates if c not in excluded]


def _matrix(series: Series, columns: list[str], name: str) -> np.ndarray:
    missing = [c for c in columns if c not in series.columns]
    if missing:
        raise DataError(f"{name} data lacks the numeric columns {missing}")
    return np.stack([np.asarray(series.columns[c], np.float64) for c in columns], axis=1)
