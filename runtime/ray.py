"""The data-frame predictors under their first name: they serve Ray Data and Spark alike, so
they live in `bilstm.runtime.frames`; this module keeps existing imports working."""

from bilstm.runtime.frames import (
    BiLSTMPredictor,
    cpu_cores,
    default_threads,
    score_dataset,
    shared_predictor,
)

__all__ = ["BiLSTMPredictor", "cpu_cores", "default_threads", "score_dataset", "shared_predictor"]
