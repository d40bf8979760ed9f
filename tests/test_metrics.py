"""The offline metrics against values worked out by hand, through the NumPy functions, the evaluate modules and
the Trainer `compute_metrics` helpers."""

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
    mean_iou,
    segmentation_compute_metrics,
)

# Two 2x3 label maps with 3 classes; 255 marks an ignored pixel.
SEG_REFERENCES = np.array([[[0, 0, 1], [1, 2, 255]], [[2, 2, 2], [0, 1, 255]]])
SEG_PREDICTIONS = np.array([[[0, 1, 1], [1, 2, 0]], [[2, 2, 0], [0, 1, 2]]])
# Counted by hand over the 10 labelled pixels (reference -> prediction):
#   class 0: refs at 3 pixels, predicted 0 at 2 of them; predicted 0 at 3 pixels in all -> IoU 2 / (3 + 3 - 2) = 1/2
#   class 1: refs at 3 pixels, all predicted 1; predicted 1 at 4 pixels in all           -> IoU 3 / (3 + 4 - 3) = 3/4
#   class 2: refs at 4 pixels, 3 predicted 2; predicted 2 at 3 pixels in all             -> IoU 3 / (4 + 3 - 3) = 3/4
SEG_IOU = [1 / 2, 3 / 4, 3 / 4]
SEG_RECALL = [2 / 3, 3 / 3, 3 / 4]
SEG_OVERALL = 8 / 10


def test_accuracy_by_hand():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    module = Accuracy(keep_in_memory=True)
    module.add_batch(predictions=[1, 2], references=[1, 2])
    module.add_batch(predictions=[3, 4], references=[0, 4])
    assert module.compute() == {"accuracy": 0.75}


def test_classification_compute_metrics_takes_the_argmax_of_logits():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.9, 0.0]])
    result = classification_compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([1, 0, 1, 1])))
    assert result == {"accuracy": 0.5}


def test_confusion_matrix_by_hand():
    expected = np.array([[2, 1, 0], [0, 3, 0], [1, 0, 3]])
    np.testing.assert_array_equal(confusion_matrix(SEG_PREDICTIONS, SEG_REFERENCES, 3, 255), expected)


def test_mean_iou_by_hand_and_through_the_evaluate_module():
    result = mean_iou(SEG_PREDICTIONS, SEG_REFERENCES, num_labels=3, ignore_index=255)
    np.testing.assert_allclose(result["per_category_iou"], SEG_IOU)
    assert result["mean_iou"] == pytest.approx(np.mean(SEG_IOU))
    assert result["mean_accuracy"] == pytest.approx(np.mean(SEG_RECALL))
    assert result["overall_accuracy"] == pytest.approx(SEG_OVERALL)

    module = MeanIoU(keep_in_memory=True)
    for pred, ref in zip(SEG_PREDICTIONS, SEG_REFERENCES):
        module.add(predictions=pred.tolist(), references=ref.tolist())
    from_module = module.compute(num_labels=3, ignore_index=255)
    assert from_module["mean_iou"] == pytest.approx(np.mean(SEG_IOU))


def test_absent_class_is_left_out_of_the_mean():
    # class 3 never occurs: its IoU is NaN and the mean is over classes 0-2 only
    result = mean_iou(SEG_PREDICTIONS, SEG_REFERENCES, num_labels=4, ignore_index=255)
    assert math.isnan(result["per_category_iou"][3])
    assert result["mean_iou"] == pytest.approx(np.mean(SEG_IOU))


def test_segmentation_compute_metrics_accepts_logits_or_class_maps():
    # logits whose argmax over the class axis is SEG_PREDICTIONS
    logits = np.eye(3)[SEG_PREDICTIONS].transpose(0, 3, 1, 2) * 4.0
    compute = segmentation_compute_metrics(num_labels=3, ignore_index=255)
    from_logits = compute(EvalPrediction(predictions=logits, label_ids=SEG_REFERENCES))
    maps = argmax_logits_for_metrics(torch.from_numpy(logits), None)
    assert maps.shape == (2, 2, 3)
    from_maps = compute(EvalPrediction(predictions=maps.numpy(), label_ids=SEG_REFERENCES))
    assert from_logits == from_maps
    assert from_logits["mean_iou"] == pytest.approx(np.mean(SEG_IOU))
    assert set(from_logits) == {"mean_iou", "mean_accuracy", "overall_accuracy"}


def test_segmentation_label_errors():
    with pytest.raises(ValueError, match=r"references must be class ids in \[0, 2\].*got values in \[0, 7\]"):
        mean_iou(np.zeros((1, 2, 2), int), np.array([[[0, 7], [1, 2]]]), num_labels=3)
    with pytest.raises(ValueError, match=r"predictions must be class ids in \[0, 2\]"):
        mean_iou(np.full((1, 2, 2), 3), np.zeros((1, 2, 2), int), num_labels=3)
    with pytest.raises(ValueError, match="same shape"):
        mean_iou(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int), num_labels=3)
    with pytest.raises(ValueError, match="at least one labelled"):
        mean_iou(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 255), num_labels=3)


def test_depth_metrics_by_hand():
    # image 0: valid pixels (pred, ref) = (1, 1), (2, 1), (4, 5); (3, 0) is missing depth
    #   ratios 1, 2, 1.25 -> delta1 1/3, delta2 (< 1.5625) 2/3, delta3 (< 1.953) 2/3
    #   abs_rel (0 + 1 + 0.2) / 3 = 0.4; rmse sqrt((0 + 1 + 1) / 3)
    # image 1: one valid pixel (2, 2), everything else NaN or negative: delta 1, abs_rel 0, rmse 0
    predictions = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[2.0, 1.0], [1.0, 1.0]])]
    references = [np.array([[1.0, 1.0], [0.0, 5.0]]), np.array([[2.0, np.nan], [-1.0, 0.0]])]
    image0 = {"delta1": 1 / 3, "delta2": 2 / 3, "delta3": 2 / 3, "abs_rel": 0.4, "rmse": math.sqrt(2 / 3)}
    image1 = {"delta1": 1.0, "delta2": 1.0, "delta3": 1.0, "abs_rel": 0.0, "rmse": 0.0}
    expected = {k: (image0[k] + image1[k]) / 2 for k in image0}  # per image, then averaged
    result = depth_metrics(predictions, references)
    assert result == pytest.approx(expected)

    module = DepthEstimationMetrics(keep_in_memory=True)
    module.add_batch(predictions=[p.tolist() for p in predictions], references=[r.tolist() for r in references])
    assert module.compute() == pytest.approx(expected)
    as_trainer = depth_compute_metrics(
        EvalPrediction(predictions=np.stack(predictions), label_ids=np.stack(references))
    )
    assert as_trainer == pytest.approx(expected)


def test_depth_metric_errors():
    with pytest.raises(ValueError, match="positive"):
        depth_metrics([np.array([[0.0, 1.0]])], [np.array([[1.0, 1.0]])])
    with pytest.raises(ValueError, match="at least one valid"):
        depth_metrics([np.ones((2, 2))], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"prediction \(2, 2\) and reference \(2, 3\)"):
        depth_metrics([np.ones((2, 2))], [np.ones((2, 3))])
