"""Pipelines of 4M beyond transformers' own tasks (the task heads serve `image-classification`,
`image-segmentation`, `depth-estimation` and `image-feature-extraction` directly)."""

from .any_to_any import TASK, FourMAnyToAnyPipeline

__all__ = ["TASK", "FourMAnyToAnyPipeline"]
