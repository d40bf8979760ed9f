"""Offline evaluation metrics for the task heads: accuracy, mean IoU and depth errors.

`evaluate.load("accuracy")` fetches its script from the Hub and fails offline, so the metrics live here as
`evaluate.Metric` subclasses (instantiate them directly: `Accuracy().compute(predictions=..., references=...)`),
each a thin wrapper over a NumPy function. The `*_compute_metrics` helpers plug the same functions into
`Trainer(compute_metrics=...)` without the Arrow round trip of `evaluate`.

Conventions:
    * mean IoU follows the usual ADE20K protocol: one confusion matrix over the whole dataset, IoU per class, mean
      over classes that occur in the references or predictions; pixels labelled `ignore_index` are skipped.
    * depth metrics follow the NYUv2 protocol: per image over valid pixels (finite reference > 0), then averaged
      over images. `delta1` = share of pixels with max(pred / ref, ref / pred) < 1.25, `abs_rel` = mean
      |pred - ref| / ref, `rmse` = root mean squared error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
from transformers import EvalPrediction

DELTA_THRESHOLD = 1.25


# ----------------------------------------------------------------------------------------------------------------
# NumPy functions


def accuracy(predictions: Any, references: Any) -> float:
    """Share of predictions equal to their reference."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape:
        raise ValueError(
            f"predictions and references must have the same shape, got {predictions.shape} and {references.shape}."
        )
    if references.size == 0:
        raise ValueError("accuracy needs at least one prediction.")
    return float((predictions == references).mean())


def confusion_matrix(predictions: Any, references: Any, num_labels: int, ignore_index: int | None = 255) -> np.ndarray:
    """(num_labels, num_labels) counts: row = reference class, column = predicted class, `ignore_index` skipped."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape:
        raise ValueError(
            f"predicted and reference label maps must have the same shape, got {predictions.shape} and "
            f"{references.shape}."
        )
    keep = references != ignore_index if ignore_index is not None else np.ones(references.shape, dtype=bool)
    predictions, references = predictions[keep].astype(np.int64), references[keep].astype(np.int64)
    for name, values in (("references", references), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_labels):
            raise ValueError(
                f"{name} must be class ids in [0, {num_labels - 1}] (or the ignore index {ignore_index}), got values "
                f"in [{values.min()}, {values.max()}]."
            )
    counts = np.bincount(references * num_labels + predictions, minlength=num_labels * num_labels)
    return counts.reshape(num_labels, num_labels)


def iou_from_confusion(confusion: np.ndarray) -> dict[str, Any]:
    """`mean_iou`, `mean_accuracy` (per-class recall), `overall_accuracy` and `per_category_iou` (NaN for classes
    absent from both references and predictions; they are left out of the means)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersection = np.diag(confusion)
    references_per_class = confusion.sum(1)
    union = references_per_class + confusion.sum(0) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
        recall = np.where(references_per_class > 0, intersection / references_per_class, np.nan)
    total = confusion.sum()
    if total == 0:
        raise ValueError("mean IoU needs at least one labelled (non-ignored) pixel.")
    return {
        "mean_iou": float(np.nanmean(iou)),
        "mean_accuracy": float(np.nanmean(recall)),
        "overall_accuracy": float(intersection.sum() / total),
        "per_category_iou": iou,
    }


def mean_iou(predictions: Any, references: Any, num_labels: int, ignore_index: int | None = 255) -> dict[str, Any]:
    """Mean IoU of label maps (any shape, e.g. (N, H, W) or a list of (H, W) maps of one size)."""
    return iou_from_confusion(confusion_matrix(predictions, references, num_labels, ignore_index))


def depth_metrics(predictions: Any, references: Any) -> dict[str, float]:
    """`delta1`, `delta2`, `delta3`, `abs_rel` and `rmse` of depth maps (N, H, W), per image then averaged."""
    per_image = []
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predicted and {len(references)} reference depth maps.")
    for index, (pred, ref) in enumerate(zip(predictions, references)):
        pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if pred.shape != ref.shape:
            raise ValueError(f"Depth map {index}: prediction {pred.shape} and reference {ref.shape} differ in shape.")
        valid = np.isfinite(ref) & (ref > 0)
        if not valid.any():
            continue
        pred, ref = pred[valid], ref[valid]
        if not np.all(pred > 0):
            raise ValueError(f"Depth map {index}: predicted depth must be positive at valid pixels.")
        ratio = np.maximum(pred / ref, ref / pred)
        per_image.append(
            [
                (ratio < DELTA_THRESHOLD).mean(),
                (ratio < DELTA_THRESHOLD**2).mean(),
                (ratio < DELTA_THRESHOLD**3).mean(),
                (np.abs(pred - ref) / ref).mean(),
                np.sqrt(((pred - ref) ** 2).mean()),
            ]
        )
    if not per_image:
        raise ValueError("depth metrics need at least one valid reference pixel (finite and > 0).")
    values = np.mean(per_image, axis=0)
    return dict(zip(("delta1", "delta2", "delta3", "abs_rel", "rmse"), map(float, values)))


# ----------------------------------------------------------------------------------------------------------------
# evaluate modules

_MAP_INT = datasets.List(datasets.List(datasets.Value("int64")))
_MAP_FLOAT = datasets.List(datasets.List(datasets.Value("float32")))


class Accuracy(evaluate.Metric):
    """Top-1 accuracy of class ids."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Share of predictions equal to the reference.",
            citation="",
            inputs_description="predictions, references: class ids (int).",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return {"accuracy": accuracy(predictions, references)}


class MeanIoU(evaluate.Metric):
    """Mean intersection over union of semantic label maps; `compute(..., num_labels=..., ignore_index=255)`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Dataset-level confusion matrix, IoU per class, mean over classes present.",
            citation="",
            inputs_description="predictions, references: (H, W) class-id maps; num_labels (int); ignore_index (int).",
            features=datasets.Features({"predictions": _MAP_INT, "references": _MAP_INT}),
        )

    def _compute(self, predictions, references, num_labels: int, ignore_index: int | None = 255) -> dict[str, Any]:
        return mean_iou(np.asarray(predictions), np.asarray(references), num_labels, ignore_index)


class DepthEstimationMetrics(evaluate.Metric):
    """delta1/2/3, abs_rel and rmse of depth maps, skipping invalid reference pixels (<= 0 or not finite)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="NYUv2-style depth errors per image over valid pixels, averaged over images.",
            citation="",
            inputs_description="predictions, references: (H, W) depth maps (float).",
            features=datasets.Features({"predictions": _MAP_FLOAT, "references": _MAP_FLOAT}),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return depth_metrics(predictions, references)


# ----------------------------------------------------------------------------------------------------------------
# Trainer helpers


def _predictions(eval_prediction: EvalPrediction) -> np.ndarray:
    predictions = eval_prediction.predictions
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def classification_compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `FourMForImageClassification`: accuracy of the argmax of the logits."""
    return {"accuracy": accuracy(_predictions(eval_prediction).argmax(-1), eval_prediction.label_ids)}


def argmax_logits_for_metrics(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    """`preprocess_logits_for_metrics` for segmentation: keep (B, H, W) class maps instead of (B, C, H, W) logits."""
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return logits.argmax(1)


def segmentation_compute_metrics(
    num_labels: int, ignore_index: int | None = 255
) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for `FourMForSemanticSegmentation` (takes logits, or class maps from
    `argmax_logits_for_metrics`): mean IoU, mean accuracy, overall accuracy."""

    def compute(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = _predictions(eval_prediction)
        if predictions.ndim == 4:  # raw (N, C, H, W) logits
            predictions = predictions.argmax(1)
        result = mean_iou(predictions, eval_prediction.label_ids, num_labels, ignore_index)
        return {key: value for key, value in result.items() if key != "per_category_iou"}

    return compute


def depth_compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `FourMForDepthEstimation`."""
    return depth_metrics(_predictions(eval_prediction), eval_prediction.label_ids)


__all__ = [
    "Accuracy",
    "DepthEstimationMetrics",
    "MeanIoU",
    "accuracy",
    "argmax_logits_for_metrics",
    "classification_compute_metrics",
    "confusion_matrix",
    "depth_compute_metrics",
    "depth_metrics",
    "iou_from_confusion",
    "mean_iou",
    "segmentation_compute_metrics",
]
