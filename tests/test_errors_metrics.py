"""Bad input to the metrics: the NumPy functions, the evaluate modules and the Trainer helpers. Each case checks the
exception type and that the message names the culprit."""

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from fourm_hf.evaluation.metrics import (
    Accuracy,
    DepthEstimationMetrics,
    MeanIoU,
    accuracy,
    argmax_logits_for_metrics,
    classification_compute_metrics,
    confusion_matrix,
    depth_compute_metrics,
    depth_metrics,
    iou_from_confusion,
    mean_iou,
    segmentation_compute_metrics,
)

MAPS = np.zeros((1, 2, 2), dtype=np.int64)


@pytest.mark.parametrize(
    "predictions, references, error, message",
    [
        ([1, 2], [1], ValueError, r"predictions and references must have the same shape, got \(2,\) and \(1,\)"),
        ([], [], ValueError, r"predictions and references are empty"),
        ([math.nan], [1], ValueError, r"predictions holds 1 NaN or infinite value"),
        ([1], [math.inf], ValueError, r"references holds 1 NaN or infinite value"),
        ([1.5], [1], ValueError, r"predictions must be integer class ids, got 1 fractional value\(s\) such as 1\.5"),
        (["cat"], ["dog"], TypeError, r"predictions must hold real numbers \(class ids\), got dtype <U3"),
        (1, 1, TypeError, r"predictions must be an array or a list of class ids, got int"),
        ([[1], [1, 2]], [[1], [1, 2]], ValueError, r"predictions must be class ids of one shape"),
    ],
)
def test_accuracy_rejects(predictions, references, error, message):
    with pytest.raises(error, match=message):
        accuracy(predictions, references)


@pytest.mark.parametrize(
    "predictions, references, kwargs, error, message",
    [
        (np.full((1, 2, 2), 0.5), MAPS, {}, ValueError, r"predictions must be integer class ids.*such as 0\.5"),
        (MAPS, np.full((1, 2, 2), 0.5), {}, ValueError, r"references must be integer class ids.*not probabilities"),
        (np.full((1, 2, 2), math.nan), MAPS, {}, ValueError, r"predictions holds 4 NaN or infinite value"),
        (
            MAPS,
            np.zeros((1, 2, 3)),
            {},
            ValueError,
            r"label maps must have the same shape, got \(1, 2, 2\) and \(1, 2, 3\)",
        ),
        (np.zeros((0, 2, 2)), np.zeros((0, 2, 2)), {}, ValueError, r"label maps are empty"),
        (MAPS, MAPS, {"num_labels": 0}, ValueError, r"num_labels must be >= 1, got 0"),
        (MAPS, MAPS, {"num_labels": -3}, ValueError, r"num_labels must be >= 1, got -3"),
        (MAPS, MAPS, {"num_labels": 2.5}, TypeError, r"num_labels must be an integer, got float 2\.5"),
        (MAPS, MAPS, {"ignore_index": "255"}, TypeError, r"ignore_index must be an integer, got str"),
        (
            np.full((1, 2, 2), 3),
            MAPS,
            {},
            ValueError,
            r"predictions must be class ids in \[0, 2\].*got values in \[3, 3\]",
        ),
        (np.full((1, 2, 2), -1), MAPS, {}, ValueError, r"predictions must be class ids in \[0, 2\]"),
        (MAPS, np.full((1, 2, 2), 7), {}, ValueError, r"references must be class ids in \[0, 2\].*\[7, 7\]"),
        (MAPS, np.full((1, 2, 2), 255), {}, ValueError, r"needs at least one labelled \(non-ignored\) pixel"),
        (
            [np.zeros((2, 2)), np.zeros((3, 3))],
            [np.zeros((2, 2)), np.zeros((3, 3))],
            {},
            ValueError,
            r"class ids of one shape",
        ),
    ],
)
def test_mean_iou_rejects(predictions, references, kwargs, error, message):
    with pytest.raises(error, match=message):
        mean_iou(predictions, references, **{"num_labels": 3, **kwargs})


def test_confusion_helpers_reject():
    with pytest.raises(ValueError, match=r"num_labels must be >= 1, got 0"):
        confusion_matrix(MAPS, MAPS, 0)
    with pytest.raises(
        ValueError, match=r"confusion must be a square \(num_labels, num_labels\) matrix, got shape \(2, 3\)"
    ):
        iou_from_confusion(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "predictions, references, error, message",
    [
        ([], [], ValueError, r"need at least one depth map; predictions and references are empty"),
        (1.0, 2.0, TypeError, r"predictions must be a sequence of depth maps \(N, H, W\), got float"),
        ("map", "map", TypeError, r"predictions must be a sequence of depth maps"),
        ([np.ones((2, 2))], [], ValueError, r"Got 1 predicted and 0 reference depth maps"),
        ([np.ones((2, 2))], [np.ones((2, 3))], ValueError, r"Depth map 0: prediction \(2, 2\) and reference \(2, 3\)"),
        (
            [np.full((2, 2), math.nan)],
            [np.ones((2, 2))],
            ValueError,
            r"Depth map 0: predicted depth must be positive .*4 NaN or infinite",
        ),
        ([-np.ones((2, 2))], [np.ones((2, 2))], ValueError, r"Depth map 0: .* got 4 value\(s\) <= 0"),
        ([np.array([["a"]])], [np.ones((1, 1))], TypeError, r"predictions\[0\] must hold real numbers"),
        ([np.ones((2, 2))], [np.zeros((2, 2))], ValueError, r"at least one valid reference pixel"),
    ],
)
def test_depth_metrics_reject(predictions, references, error, message):
    with pytest.raises(error, match=message):
        depth_metrics(predictions, references)


def test_depth_maps_without_valid_pixels_are_left_out_with_a_warning(caplog):
    predictions = [np.ones((2, 2)), np.ones((2, 2))]
    references = [np.ones((2, 2)), np.full((2, 2), math.nan)]
    assert depth_metrics(predictions, references)["delta1"] == 1.0
    assert "1 of 2 depth maps have no valid reference pixel" in caplog.text


def test_evaluate_modules_reject_before_arrow_truncates():
    with pytest.raises(ValueError, match=r"predictions must be integer class ids.*1\.5"):
        Accuracy().compute(predictions=[1.5], references=[1])
    with pytest.raises(ValueError, match=r"references must be integer class ids.*1\.7"):
        Accuracy().compute(predictions=[1], references=[1.7])
    with pytest.raises(ValueError, match=r"predictions must be integer class ids.*0\.5"):
        MeanIoU().compute(predictions=[[[0.5]]], references=[[[0]]], num_labels=2)
    with pytest.raises(ValueError, match=r"MeanIoU\.compute needs num_labels="):
        MeanIoU().compute(predictions=[[[0]]], references=[[[0]]])
    with pytest.raises(ValueError, match=r"Depth map 0: prediction \(1, 1\) and reference \(1, 2\)"):
        DepthEstimationMetrics().compute(predictions=[[[1.0]]], references=[[[1.0, 2.0]]])


def test_trainer_helpers_reject():
    with pytest.raises(ValueError, match=r"takes logits of shape \(N, num_labels\), got \(2,\)"):
        classification_compute_metrics(EvalPrediction(predictions=np.zeros(2), label_ids=np.zeros(2)))
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        classification_compute_metrics(EvalPrediction(predictions=np.zeros((2, 3)), label_ids=np.zeros(3)))
    with pytest.raises(ValueError, match=r"num_labels must be >= 1, got 0"):
        segmentation_compute_metrics(0)
    with pytest.raises(TypeError, match=r"ignore_index must be an integer, got float"):
        segmentation_compute_metrics(3, ignore_index=255.0)
    compute = segmentation_compute_metrics(3)
    with pytest.raises(ValueError, match=r"predictions must be integer class ids"):
        compute(EvalPrediction(predictions=np.full((1, 2, 2), 0.5), label_ids=MAPS))
    with pytest.raises(
        ValueError, match=r"argmax_logits_for_metrics takes logits of shape \(B, num_labels, H, W\), got \(2, 3\)"
    ):
        argmax_logits_for_metrics(torch.zeros(2, 3), None)
    with pytest.raises(ValueError, match=r"Depth map 0: prediction \(2, 2\) and reference \(2, 3\)"):
        depth_compute_metrics(EvalPrediction(predictions=np.ones((1, 2, 2)), label_ids=np.ones((1, 2, 3))))


def test_trainer_helpers_reject_empty_outputs():
    with pytest.raises(ValueError, match=r"EvalPrediction\.predictions is an empty tuple; expected the model's logits"):
        classification_compute_metrics(EvalPrediction(predictions=(), label_ids=np.zeros(2)))
    with pytest.raises(ValueError, match=r"logits is an empty list"):
        argmax_logits_for_metrics([], None)
