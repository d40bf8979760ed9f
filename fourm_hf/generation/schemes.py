"""Decoding schemes of 4M generation: one class per scheme behind one step interface, and the state they advance.

A generation run keeps everything it reads and changes in one [`FourMGenerationState`]: the modality dict (tokens
and masks), the step counter that seeds the random draws, the target being decoded, and the autoregressive
progress (generated ids, KV caches). A [`DecodingScheme`] decodes one target with `begin(model, state)` and then
`step(model, state)` until it reports the target complete:

- [`MaskGITScheme`]: every step queries all positions still to decode and commits the most confident predictions.
- [`ROARScheme`]: every step queries as many positions, in a random order, as it commits, and commits them all.
- [`AutoregressiveScheme`]: every step decodes one token of a sequence's target span (with a KV cache), and the
  last step merges the generated span back into the sequence.

Classifier-free guidance runs as extra passes of the same step: one conditional pass per guidance group and an
unconditional pass in which the groups' conditions are emptied. Each pass is encoded at its own length; the decoder
runs the passes as one batch and splits it only for cross-attention (`decoding.decode`), so the unconditional pass
never computes the conditional pass's padding (`batch_guidance=False`: one decoder run per pass).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from transformers import LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from ..data.sequences import SpecialTokens, merge_span_batch
from ..modalities import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, Modalities, ModalitySpec
from .decoding import PassContexts, SelfAttentionCache, decode
from .logits_process import GREEDY_TEMPERATURE, FourMGuidanceLogitsProcessor, sample_tokens

if TYPE_CHECKING:
    from ..models.fourm.configuration_fourm import FourMConfig
    from ..models.fourm.modeling_fourm import FourMForMaskedModeling
    from .configuration_fourm_generation import FourMGenerationConfig, FourMTargetSchedule


@dataclass
class TargetPlan:
    """A target of the chain, resolved against the model, the inputs and the generation config.

    Args:
        schedule (`FourMTargetSchedule`): the target's settings.
        spec (`ModalitySpec`): the target modality, as the model knows it.
        token_counts (`list[int]`): parallel schemes: tokens committed at each step (empty for sequences).
        temperatures (`list[float]`): one temperature per step (one for sequences).
        groups (`list[list[str]]`): the guidance groups active for this target.
        weights (`list[float]`, *optional*): one guidance weight per group; None when the target is unguided.
        warpers (`LogitsProcessorList`): top-k, top-p and the temperature schedule.
    """

    schedule: FourMTargetSchedule
    spec: ModalitySpec
    token_counts: list[int] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    weights: list[float] | None = None
    warpers: LogitsProcessorList = field(default_factory=LogitsProcessorList)

    @property
    def num_steps(self) -> int:
        """Seeded steps the target takes: one per parallel step; one for a whole sequence."""
        return len(self.token_counts) if self.token_counts else 1

    def is_greedy(self, step: int) -> bool:
        return self.temperatures[step] < GREEDY_TEMPERATURE


@dataclass
class FourMGenerationState:
    """Everything a generation run reads and advances, handed to the decoding schemes.

    Args:
        modalities (`dict[str, dict[str, torch.Tensor]]`): tokens and masks of every modality; committed tokens are
            written here (they become visible inputs and stop being targets).
        config (`FourMGenerationConfig`): the run's settings.
        special_tokens (`SpecialTokens`): the text special tokens (`config.special_tokens`).
        seed (`int`): the run's seed; seeded step s draws from a generator seeded `seed + s`.
        logits_processor (`LogitsProcessorList`): the caller's processors, applied after guidance.
        streamer (`BaseStreamer`, *optional*): receives the tokens of autoregressive targets as they are decoded.
        step (`int`): seeded steps done over the whole chain.
        generator (`torch.Generator`, *optional*): the generator of the current step.
        target (`TargetPlan`, *optional*): the target being decoded.
        target_step (`int`): decoding steps done on it (parallel steps, or tokens of a sequence).
        passes (`list[PassContexts]`): autoregressive targets: the guidance passes, encoded once (one entry, or one
            per pass with `batch_guidance=False`).
        caches (`list[SelfAttentionCache | None]`): autoregressive targets: a KV cache per entry of `passes`
            (None without `use_cache`).
        slots (`torch.Tensor`, *optional*): autoregressive targets: position + modality embedding of each slot of
            the span that can be generated, (B, T, D).
        generated (`torch.Tensor`, *optional*): autoregressive targets: the ids so far, from the span's first token,
            (B, 1 + target_step).
        stop_token (`torch.Tensor`, *optional*): autoregressive targets: the span's last token, which ends decoding.
        finished (`torch.Tensor`, *optional*): autoregressive targets: samples that produced the stop token, (B,).
    """

    modalities: Modalities
    config: FourMGenerationConfig
    special_tokens: SpecialTokens
    seed: int
    logits_processor: LogitsProcessorList = field(default_factory=LogitsProcessorList)
    streamer: BaseStreamer | None = None
    step: int = 0
    generator: torch.Generator | None = None
    target: TargetPlan | None = None
    target_step: int = 0
    passes: list[PassContexts] = field(default_factory=list)
    caches: list[SelfAttentionCache | None] = field(default_factory=list)
    slots: torch.Tensor | None = None
    generated: torch.Tensor | None = None
    stop_token: torch.Tensor | None = None
    finished: torch.Tensor | None = None

    def start_target(self, target: TargetPlan) -> None:
        """Make `target` the one being decoded, with no progress on it."""
        self.target, self.target_step, self.generator = target, 0, None
        self.passes, self.caches = [], []
        self.slots = self.generated = self.stop_token = self.finished = None

    def next_generator(self, device: torch.device) -> torch.Generator:
        """The generator of the next seeded step (seeded `seed + step`, the official per-step seeds)."""
        self.generator = torch.Generator(device).manual_seed(self.seed + self.step)
        self.step += 1
        return self.generator


# ----------------------------------------------------------------------------------------------------------------
# Guidance passes


def _hide(entry: dict, special_tokens: SpecialTokens) -> dict:
    return {**entry, "input_mask": torch.ones_like(entry["input_mask"])}


def _empty_sequence(entry: dict, special_tokens: SpecialTokens) -> dict:
    """A sequence reduced to one visible `[S_1]`: "everything is masked"."""
    tensor = entry["tensor"].clone()
    tensor[:, 0] = special_tokens.sentinel(1)
    input_mask = torch.ones_like(entry["input_mask"])
    input_mask[:, 0] = False
    return {**entry, "tensor": tensor, "input_mask": input_mask}


def _empty_features(entry: dict, special_tokens: SpecialTokens) -> dict:
    """Feature sequences (T5 captions) become a single visible zero vector."""
    input_mask = torch.ones_like(entry["input_mask"])
    input_mask[:, 0] = False
    return {**entry, "tensor": torch.zeros_like(entry["tensor"]), "input_mask": input_mask}


# How the unconditional pass of classifier-free guidance removes a condition, by modality kind.
EMPTY_CONDITION: dict[str, Callable[[dict, SpecialTokens], dict]] = {
    PIXELS: _hide,
    IMAGE_TOKENS: _hide,
    SEQUENCE: _empty_sequence,
    SEQUENCE_EMBEDDING: _empty_features,
}


def guidance_passes(
    model_config: FourMConfig, modalities: Modalities, target: TargetPlan, special_tokens: SpecialTokens
) -> list[Modalities]:
    """The modality dicts a step decodes from: the inputs alone when the target is unguided; otherwise one per
    guidance group (the other groups' modalities hidden), then the unconditional one (every group's modality
    emptied as `EMPTY_CONDITION` says)."""
    if target.weights is None:
        return [modalities]
    grouped = [m for g in target.groups for m in g]
    passes = []
    for group in target.groups:
        passes.append({**modalities, **{m: _hide(modalities[m], special_tokens) for m in grouped if m not in group}})
    empty = {m: EMPTY_CONDITION[model_config.modality(m).kind](modalities[m], special_tokens) for m in grouped}
    return [*passes, {**modalities, **empty}]


def encode_passes(model: FourMForMaskedModeling, passes: list[Modalities], batched: bool) -> list[PassContexts]:
    """Encode every pass at its own length; the decoder then runs them as one batch (`batched`) or one by one."""
    contexts = [model.decoder.context(model.encoder(p)) for p in passes]
    if batched:
        return [PassContexts(model.decoder, contexts)]
    return [PassContexts(model.decoder, [c]) for c in contexts]


def combine_passes(
    logits: torch.Tensor,
    target: TargetPlan,
    processors: LogitsProcessorList,
    input_ids: torch.LongTensor | None,
    cur_step: int,
) -> torch.Tensor:
    """Guidance (on the raw logits of the stacked passes), then the caller's processors. (P R, V) -> (R, V)."""
    if target.weights is not None:
        logits = FourMGuidanceLogitsProcessor(target.weights)(input_ids, logits)
    return processors(input_ids, logits, cur_step=cur_step) if processors else logits


# ----------------------------------------------------------------------------------------------------------------
# Schemes


class DecodingScheme(ABC):
    """How one target is decoded: `begin` once, then `step` until it returns True (the target is complete).

    Class attributes: `decodes_sequences` (sequence targets, token by token, vs image-token grids) and
    `default_token_schedule` (a key of `TOKEN_SCHEDULES`, parallel schemes only).
    """

    decodes_sequences: ClassVar[bool] = False
    default_token_schedule: ClassVar[str | None] = None

    def begin(self, model: FourMForMaskedModeling, state: FourMGenerationState) -> None:
        """Prepare `state` for decoding `state.target` (nothing by default)."""

    @abstractmethod
    def step(self, model: FourMForMaskedModeling, state: FourMGenerationState) -> bool:
        """One decoding step of `state.target`; returns whether the target is complete."""


class ParallelDecodingScheme(DecodingScheme):
    """A scheme that decodes image tokens in parallel steps; subclasses choose the positions each step queries
    (`select_queries`) and the predictions it keeps (`accept`). Step k commits `target.token_counts[k]` tokens."""

    @abstractmethod
    def select_queries(self, target_mask: torch.Tensor, num_select: int, generator: torch.Generator) -> torch.Tensor:
        """Positions to query, among those still to decode (`target_mask` False). (B, N) -> (B, Q)."""

    @abstractmethod
    def accept(self, confidence: torch.Tensor, num_select: int) -> torch.Tensor:
        """Indices of the `num_select` queries to commit, from their confidences. (B, Q) -> (B, num_select)."""

    def step(self, model: FourMForMaskedModeling, state: FourMGenerationState) -> bool:
        target, cur_step = state.target, state.target_step
        name, num_select = target.spec.name, target.token_counts[cur_step]
        generator = state.next_generator(model.device)
        entry = state.modalities[name]
        positions = self.select_queries(entry["target_mask"], num_select, generator)  # (B, Q)
        batch, num_queries = positions.shape
        embedding = model.decoder.embeddings[name]
        table = embedding.pos_emb + model.modality_embedding(name)  # (N, D)
        queries = model.decoder.mask_token + table[positions]  # (B, Q, D)

        logits = []
        passes = guidance_passes(model.config, state.modalities, target, state.special_tokens)
        for contexts in encode_passes(model, passes, state.config.batch_guidance):
            hidden = decode(model.decoder, queries.repeat(contexts.num_passes, 1, 1), contexts)
            logits.append(embedding.to_logits(hidden).float().flatten(0, 1))  # (P B Q, V)
        scores = combine_passes(_stack(logits), target, state.logits_processor, None, cur_step)  # (B Q, V)
        ids, confidence = sample_tokens(scores, target.warpers, None, cur_step, target.is_greedy(cur_step), generator)
        ids, confidence = ids.view(batch, num_queries), confidence.view(batch, num_queries)

        accepted = self.accept(confidence, num_select)  # (B, K) indices into the queries
        committed = positions.gather(1, accepted)
        entry["tensor"] = entry["tensor"].scatter(1, committed, ids.gather(1, accepted))
        entry["input_mask"] = entry["input_mask"].scatter(1, committed, False)
        entry["target_mask"] = entry["target_mask"].scatter(1, committed, True)
        state.target_step += 1
        return state.target_step == len(target.token_counts)


class MaskGITScheme(ParallelDecodingScheme):
    """MaskGIT: query every position still to decode, commit the most confident predictions."""

    default_token_schedule = "cosine"

    def select_queries(self, target_mask: torch.Tensor, num_select: int, generator: torch.Generator) -> torch.Tensor:
        count = int((~target_mask[0]).sum())
        return torch.argsort(target_mask.to(torch.int8), dim=1, stable=True)[:, :count]  # in index order

    def accept(self, confidence: torch.Tensor, num_select: int) -> torch.Tensor:
        return torch.topk(confidence, num_select, dim=-1).indices


class ROARScheme(ParallelDecodingScheme):
    """ROAR (random order autoregression): query only the positions a step commits, in a random order shared by
    the batch (the official draw: one uniform per position, scaled by 1e-6 and added to the mask before sorting)."""

    default_token_schedule = "linear"

    def select_queries(self, target_mask: torch.Tensor, num_select: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.rand(target_mask.shape[1], generator=generator, device=target_mask.device) * 1e-6
        count = min(num_select, int((~target_mask[0]).sum()))
        return torch.argsort(target_mask + noise[None], dim=1)[:, :count]

    def accept(self, confidence: torch.Tensor, num_select: int) -> torch.Tensor:
        return torch.arange(confidence.shape[1], device=confidence.device).expand_as(confidence)


class AutoregressiveScheme(DecodingScheme):
    """Token-by-token decoding of a sequence's target span (`target_mask` False), from its first token (`[S_1]`)
    until every sample produced the span's last token or the budget (the modality's `max_tokens`, the span's
    length and the config's `max_new_tokens`) runs out. The inputs are
    encoded once; with `use_cache` only the new token goes through the decoder. The last step fills the sequence's
    sentinels with the generated spans (`merge_span_batch`). The whole target is one seeded step."""

    decodes_sequences = True

    def begin(self, model: FourMForMaskedModeling, state: FourMGenerationState) -> None:
        spec = state.target.spec
        entry = state.modalities[spec.name]
        target_mask = entry["target_mask"]
        span = torch.argsort(target_mask.to(torch.int8), dim=1, stable=True)[:, : int((~target_mask[0]).sum())]
        span_ids = entry["tensor"].gather(1, span)  # (B, S): [S_1] ... stop token
        embedding = model.decoder.embeddings[spec.name]
        # position + modality embedding of each span slot (positions count the span, clipped at max_length)
        positions = embedding.sequence_embedding(target_mask, model.modality_embedding(spec.name), clip=spec.max_length)
        budget = min(spec.max_tokens, span.shape[1], state.config.max_new_tokens or spec.max_tokens)
        state.slots = positions.gather(1, span[:, :budget, None].expand(-1, -1, positions.shape[-1]))  # (B, T, D)
        state.generated = span_ids[:, :1]
        state.stop_token = span_ids[0, -1]
        state.finished = state.generated[:, 0] == state.stop_token
        state.next_generator(model.device)
        passes = guidance_passes(model.config, state.modalities, state.target, state.special_tokens)
        state.passes = encode_passes(model, passes, state.config.batch_guidance)
        rows, dtype = state.slots.shape[0], state.slots.dtype
        state.caches = [
            SelfAttentionCache(model.decoder, p.num_passes * rows, budget, dtype, model.device)
            if state.config.use_cache else None
            for p in state.passes
        ]

    def step(self, model: FourMForMaskedModeling, state: FourMGenerationState) -> bool:
        budget = state.slots.shape[1]
        if not self._complete(state, budget):
            self._decode_token(model, state)
        if not self._complete(state, budget):
            return False
        name = state.target.spec.name
        entry = state.modalities[name]
        merged, padding = merge_span_batch(entry["tensor"], entry["input_mask"], state.generated, state.special_tokens)
        state.modalities[name] = {"tensor": merged, "input_mask": padding, "target_mask": torch.ones_like(padding)}
        if state.streamer is not None:
            state.streamer.end()
        return True

    @staticmethod
    def _complete(state: FourMGenerationState, budget: int) -> bool:
        return bool(state.finished.all()) or state.target_step >= budget

    @staticmethod
    def _decode_token(model: FourMForMaskedModeling, state: FourMGenerationState) -> None:
        t, target = state.target_step, state.target
        embedding = model.decoder.embeddings[target.spec.name]
        if state.config.use_cache:  # the new token only; it attends to the cache and itself, no mask needed
            step_input = embedding.token_emb(state.generated[:, t:]) + state.slots[:, t : t + 1]  # (B, 1, D)
            self_mask = None
        else:
            step_input = embedding.token_emb(state.generated) + state.slots[:, : t + 1]  # (B, t + 1, D)
            self_mask = model.decoder.causal_mask(t + 1, t + 1, 0, step_input.dtype, model.device)
        logits = []
        for contexts, cache in zip(state.passes, state.caches, strict=True):
            rows = step_input if contexts.num_passes == 1 else step_input.repeat(contexts.num_passes, 1, 1)
            hidden = decode(model.decoder, rows, contexts, self_mask, cache)
            logits.append(embedding.to_logits(hidden[:, -1]).float())  # (P B, V)
        history = state.generated
        scores = combine_passes(_stack(logits), target, state.logits_processor, history, t)
        token, _ = sample_tokens(scores, target.warpers, history, 0, target.is_greedy(0), state.generator)
        state.generated = torch.cat([history, token[:, None]], dim=1)
        if state.streamer is not None:  # finished samples stream [PAD], as transformers' generate does
            state.streamer.put(torch.where(state.finished, state.special_tokens.pad_id, token).cpu())
        state.finished = state.finished | (token == state.stop_token)
        state.target_step += 1


def _stack(logits: list[torch.Tensor]) -> torch.Tensor:
    return logits[0] if len(logits) == 1 else torch.cat(logits)


# The schemes by name (`FourMTargetSchedule.scheme`); the first image and the first sequence scheme are the defaults.
DECODING_SCHEMES: dict[str, DecodingScheme] = {
    "maskgit": MaskGITScheme(),
    "roar": ROARScheme(),
    "autoregressive": AutoregressiveScheme(),
}


__all__ = [
    "DECODING_SCHEMES",
    "EMPTY_CONDITION",
    "AutoregressiveScheme",
    "DecodingScheme",
    "FourMGenerationState",
    "MaskGITScheme",
    "ParallelDecodingScheme",
    "ROARScheme",
    "TargetPlan",
    "combine_passes",
    "encode_passes",
    "guidance_passes",
]
