"""Logits processing of 4M generation: guidance over stacked passes, step-aware temperatures, and sampling.

The processors follow transformers' `LogitsProcessor` interface; the temperature warper is step-aware (it receives
`cur_step` through `LogitsProcessorList`), so stock warpers and schedule-aware ones share one list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper

from ..checks import check_number

# Temperatures below this are greedy (argmax), as in the official sampler.
GREEDY_TEMPERATURE = 1e-10


class FourMGuidanceLogitsProcessor(LogitsProcessor):
    r"""
    Classifier-free guidance over stacked passes: `scores` holds the conditional passes (one per guidance group, in
    order) and then the unconditional pass, each `R` rows; returns `uncond + sum_i w_i (cond_i - uncond)`, `R` rows.
    With one group this is `ClassifierFreeGuidanceLogitsProcessor` for any scale (also <= 1).

    Args:
        weights (`list[float]`): one guidance weight per conditional pass.
    """

    def __init__(self, weights: Sequence[float]):
        self.weights = [float(check_number(w, f"weights[{i}]")) for i, w in enumerate(_non_empty(weights, "weights"))]

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        num_passes = len(self.weights) + 1
        if scores.dim() != 2 or scores.shape[0] % num_passes:
            raise ValueError(
                f"scores must stack {num_passes} passes of equal size (weights + the unconditional pass) as "
                f"(passes * rows, vocab), got shape {tuple(scores.shape)}."
            )
        passes = scores.view(len(self.weights) + 1, -1, scores.shape[-1])  # (P, R, V)
        uncond, cond = passes[-1], passes[:-1]
        weights = torch.tensor(self.weights, dtype=scores.dtype, device=scores.device)[:, None, None]
        return uncond + ((cond - uncond) * weights).sum(0)


class FourMTemperatureScheduleLogitsWarper(LogitsProcessor):
    r"""
    Divides the logits by the temperature of the current decoding step (`cur_step`, counting from 0 within a target).

    Args:
        temperatures (`list[float]`): one temperature per step.
    """

    def __init__(self, temperatures: Sequence[float]):
        self.temperatures = [
            float(check_number(t, f"temperatures[{i}] (use greedy decoding for 0)", 0, open_minimum=True))
            for i, t in enumerate(_non_empty(temperatures, "temperatures"))
        ]

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor, cur_step: int) -> torch.Tensor:
        return scores / self.temperatures[cur_step]


def _non_empty(values: Sequence[float], name: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of numbers, got {values!r}.")
    return list(values)


def sampling_warpers(
    top_k: int | float, top_p: float, vocab_size: int, temperatures: Sequence[float]
) -> LogitsProcessorList:
    """top-k and top-p on the untempered logits, then the step's temperature.

    Args:
        top_k (`int` or `float`): keep the k most likely tokens (a float is a fraction of `vocab_size`); 0 disables.
        top_p (`float`): nucleus filtering; 0 or 1 disables it.
        vocab_size (`int`): vocabulary of the target.
        temperatures (`list[float]`): one per step; greedy steps (below `GREEDY_TEMPERATURE`) never reach the
            warpers, so they are floored only to keep the processor's temperatures positive.
    """
    warpers = LogitsProcessorList()
    if top_k:
        k = int(top_k * vocab_size) if isinstance(top_k, float) else top_k
        warpers.append(TopKLogitsWarper(max(k, 1)))
    if 0 < top_p < 1:
        warpers.append(TopPLogitsWarper(float(top_p)))
    warpers.append(FourMTemperatureScheduleLogitsWarper([max(t, GREEDY_TEMPERATURE) for t in temperatures]))
    return warpers


def sample_tokens(
    scores: torch.Tensor,
    warpers: LogitsProcessorList,
    input_ids: torch.LongTensor | None,
    cur_step: int,
    greedy: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of `scores` (R, V); returns `(ids, confidence)`, both (R,).

    Greedy rows take the argmax with confidence 1; otherwise `warpers` (top-k, top-p, temperature) turn the scores
    into a distribution, one token is drawn, and its probability is the confidence.
    """
    if greedy:
        ids = scores.argmax(dim=-1)
        return ids, torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
    probs = warpers(input_ids, scores, cur_step=cur_step).softmax(dim=-1)
    ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return ids, probs.gather(1, ids[:, None])[:, 0]


__all__ = [
    "GREEDY_TEMPERATURE",
    "FourMGuidanceLogitsProcessor",
    "FourMTemperatureScheduleLogitsWarper",
    "sample_tokens",
    "sampling_warpers",
]
