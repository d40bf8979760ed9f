"""Offline evaluation metrics for the task heads: accuracy, mean IoU and depth errors.

`evaluate.load("accuracy")` fetches its script from the Hub and fails offline, so the metrics live here as
`evaluate.Metric` subclasses (instantiate them directly: `Accuracy().compute(predictions=..., references=...)`),
each a thin wrapper over a NumPy function. The `*_compute_metrics` helpers plug the same functions into
`Trainer(compute_metrics=...)` without the Arrow round trip of `evaluate`.

Conventions:
    * mean IoU follows the usual ADE20K protocol: one confusion matrix over the whole dataset, IoU per class, mean
      over classes that occur in the references or predictions; pixels labelled `ignore_index` are skipped.
    * depth metrics follow the NYUv2 protocol: per image over valid pixels (finite reference > 0), then averaged
      over images (an image without valid pixels is left out, with a warning). `delta1` = share of pixels with
      max(pred / ref, ref / pred) < 1.25, `abs_rel` = mean |pred - ref| / ref, `rmse` = root mean squared error.
    * class ids (predictions and references of accuracy and mean IoU) must be integers: NaN or fractional values
      raise a `ValueError` rather than being truncated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
from transformers import EvalPrediction
from transformers.utils import logging

from ..checks import check_int

logger = logging.get_logger(__name__)

DELTA_THRESHOLD = 1.25


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _numeric_array(values: Any, name: str, what: str) -> np.ndarray:
    """`values` as a NumPy array of real numbers; a `ValueError` for ragged input, a `TypeError` for other dtypes."""
    try:
        array = np.asarray(values)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be {what} of one shape (a rectangular array): {err}") from err
    if array.ndim == 0:
        raise TypeError(f"{name} must be an array or a list of {what}, got {type(values).__name__} {values!r}.")
    if array.dtype == object or array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers ({what}), got dtype {array.dtype}.")
    return array


def _class_ids(values: Any, name: str) -> np.ndarray:
    """`values` as an int64 array of class ids; NaN, infinite or fractional values raise a `ValueError`."""
    array = _numeric_array(values, name, "class ids")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise ValueError(f"{name} holds {int((~finite).sum())} NaN or infinite value(s); class ids are integers.")
        fractional = array != np.round(array)
        if fractional.any():
            raise ValueError(
                f"{name} must be integer class ids, got {int(fractional.sum())} fractional value(s) such as "
                f"{array[fractional].flat[0]:g} (pass class maps, e.g. logits.argmax(1), not probabilities)."
            )
    return array.astype(np.int64)


def _paired_class_ids(predictions: Any, references: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and references as int64 class-id arrays of one non-empty shape (`what` names them in errors)."""
    predictions, references = _class_ids(predictions, "predictions"), _class_ids(references, "references")
    if predictions.shape != references.shape:
        raise ValueError(f"{what} must have the same shape, got {predictions.shape} and {references.shape}.")
    if references.size == 0:
        raise ValueError(f"{what} are empty; pass at least one prediction.")
    return predictions, references


def _check_label_space(num_labels: int, ignore_index: int | None) -> None:
    check_int(num_labels, "num_labels", minimum=1)
    if ignore_index is not None:
        check_int(ignore_index, "ignore_index")


# ----------------------------------------------------------------------------------------------------------------
# NumPy functions


def accuracy(predictions: Any, references: Any) -> float:
    """Share of predictions (class ids) equal to their reference."""
    predictions, references = _paired_class_ids(predictions, references, "predictions and references")
    return float((predictions == references).mean())


def confusion_matrix(predictions: Any, references: Any, num_labels: int, ignore_index: int | None = 255) -> np.ndarray:
    """(num_labels, num_labels) counts: row = reference class, column = predicted class, `ignore_index` skipped."""
    _check_label_space(num_labels, ignore_index)
    predictions, references = _paired_class_ids(predictions, references, "predicted and reference label maps")
    keep = references != ignore_index if ignore_index is not None else np.ones(references.shape, dtype=bool)
    predictions, references = predictions[keep], references[keep]
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
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square (num_labels, num_labels) matrix, got shape {confusion.shape}.")
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
    """`delta1`, `delta2`, `delta3`, `abs_rel` and `rmse` of depth maps (N, H, W), per image then averaged.

    A map without any valid reference pixel (finite and > 0) is left out of the averages, with a warning."""
    for name, maps in (("predictions", predictions), ("references", references)):
        if isinstance(maps, (str, bytes)) or not hasattr(maps, "__len__") or np.ndim(maps) == 0:
            raise TypeError(f"{name} must be a sequence of depth maps (N, H, W), got {type(maps).__name__}.")
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predicted and {len(references)} reference depth maps.")
    if len(references) == 0:
        raise ValueError("depth metrics need at least one depth map; predictions and references are empty.")
    per_image = []
    for index, (pred, ref) in enumerate(zip(predictions, references)):
        pred = _numeric_array(pred, f"predictions[{index}]", "depths").astype(np.float64)
        ref = _numeric_array(ref, f"references[{index}]", "depths").astype(np.float64)
        if pred.shape != ref.shape:
            raise ValueError(f"Depth map {index}: prediction {pred.shape} and reference {ref.shape} differ in shape.")
        valid = np.isfinite(ref) & (ref > 0)
        if not valid.any():
            continue
        pred, ref = pred[valid], ref[valid]
        if not np.all(pred > 0):  # NaN fails too
            not_finite = int((~np.isfinite(pred)).sum())
            raise ValueError(
                f"Depth map {index}: predicted depth must be positive at valid pixels, got "
                f"{int((pred <= 0).sum())} value(s) <= 0 and {not_finite} NaN or infinite value(s)."
            )
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
    if len(per_image) < len(references):
        logger.warning(
            f"depth_metrics: {len(references) - len(per_image)} of {len(references)} depth maps have no valid "
            "reference pixel (finite and > 0) and are left out of the averages."
        )
    values = np.mean(per_image, axis=0)
    return dict(zip(("delta1", "delta2", "delta3", "abs_rel", "rmse"), map(float, values)))


# ----------------------------------------------------------------------------------------------------------------
# evaluate modules

# class ids are read as floats so that fractional values reach the checks instead of being truncated by Arrow
_MAP_IDS = datasets.List(datasets.List(datasets.Value("float64")))
_MAP_FLOAT = datasets.List(datasets.List(datasets.Value("float32")))


class Accuracy(evaluate.Metric):
    """Top-1 accuracy of class ids."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Share of predictions equal to the reference.",
            citation="",
            inputs_description="predictions, references: class ids (int).",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
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
            features=datasets.Features({"predictions": _MAP_IDS, "references": _MAP_IDS}),
        )

    def _compute(
        self, predictions, references, num_labels: int | None = None, ignore_index: int | None = 255
    ) -> dict[str, Any]:
        if num_labels is None:
            raise ValueError("MeanIoU.compute needs num_labels=<number of classes>.")
        return mean_iou(predictions, references, num_labels, ignore_index)


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


def _first_output(outputs: Any, what: str) -> Any:
    """The first of several model outputs (a tuple or list), or `outputs` itself."""
    if isinstance(outputs, (tuple, list)):
        if not outputs:
            raise ValueError(f"{what} is an empty {type(outputs).__name__}; expected the model's logits.")
        return outputs[0]
    return outputs


def _predictions(eval_prediction: EvalPrediction) -> np.ndarray:
    return np.asarray(_first_output(eval_prediction.predictions, "EvalPrediction.predictions"))


def classification_compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `FourMForImageClassification`: accuracy of the argmax of the logits."""
    logits = _predictions(eval_prediction)
    if logits.ndim != 2:
        raise ValueError(f"classification_compute_metrics takes logits of shape (N, num_labels), got {logits.shape}.")
    return {"accuracy": accuracy(logits.argmax(-1), eval_prediction.label_ids)}


def argmax_logits_for_metrics(logits: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
    """`preprocess_logits_for_metrics` for segmentation: keep (B, H, W) class maps instead of (B, C, H, W) logits."""
    logits = _first_output(logits, "logits")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"argmax_logits_for_metrics takes logits of shape (B, num_labels, H, W), got {got}.")
    return logits.argmax(1)


def segmentation_compute_metrics(
    num_labels: int, ignore_index: int | None = 255
) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for `FourMForSemanticSegmentation` (takes logits, or class maps from
    `argmax_logits_for_metrics`): mean IoU, mean accuracy, overall accuracy."""
    _check_label_space(num_labels, ignore_index)

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
