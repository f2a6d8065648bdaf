"""Learning curves: AUC-ROC on the validation pairs after every epoch of a PyTorch model.

The validation pairs (``recsys.holdout.build_validation``) come from whole sessions the graph stage
held out of the training days, never from the test days, so the curve shows how training generalises
without touching the holdout the models are compared on. The article this project follows plots the
same curve for each of its PyTorch models.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from recsys.metrics import auc_roc
from recsys.models.base import ValidationPairs
from recsys.models.negative_sampling import EpochRecord, Trainable

class ValidationCurve:
    """``curve(trainable)`` -> the AUC-ROC of the trainable's current scores on the validation pairs."""

    def __init__(self, a: np.ndarray, b: np.ndarray, label: np.ndarray):
        self.a, self.b, self.label = a, b, label.astype(bool)

    @classmethod
    def of(cls, pairs: ValidationPairs | None) -> "ValidationCurve | None":
        return None if pairs is None else cls(pairs.a, pairs.b, pairs.label)

    def __call__(self, model: Trainable) -> float | None:
        if not self.label.any() or self.label.all():
            return None
        scores = model.pair_scores(self.a, self.b)
        if model.trained is not None:
            scores = np.where(model.trained[self.a] & model.trained[self.b], scores, model.fallback())
        return auc_roc(scores[self.label], scores[~self.label])


def curve_json(records: list[EpochRecord]) -> list[dict]:
    """Epoch records for ``model.json``; an AUC that could not be computed is stored as null."""
    rows = []
    for record in records:
        row = asdict(record)
        auc = row["validation_auc"]
        row["validation_auc"] = None if auc is None or math.isnan(auc) else round(float(auc), 6)
        row["loss"] = round(float(row["loss"]), 6)
        rows.append(row)
    return rows
