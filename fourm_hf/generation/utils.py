"""Chained any-to-any generation with 4M: the `generate` mixin.

A generation run decodes a list of target modalities one after the other. Every decoded token becomes an encoder
input for what follows, so `rgb -> depth -> normals` conditions the normals on the RGB image and on the generated
depth. Image-like targets are decoded in parallel steps (MaskGIT: keep the most confident predictions; ROAR: random
order), sequence targets token by token with a KV cache (`schemes`). Classifier-free guidance encodes its conditional
and unconditional passes each at its own length and decodes them as one batch (`decoding`).

Semantics follow the official `GenerationSampler` of apple/ml-4m (per-step seeds `seed + step`, token and
temperature schedules, how targets are initialised and how sequence outputs are merged back), so that decoding at
temperature 0 gives the same tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput, logging

from ..checks import check_bool, check_int, close_match
from ..conversion.hub import hub_kwargs
from ..data.sequences import blank_target
from ..modalities import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, Modalities
from ..models.fourm.validation_fourm import check_modalities
from . import recipes
from .configuration_fourm_generation import GENERATION_FIELDS, FourMGenerationConfig, FourMTargetSchedule
from .logits_process import sampling_warpers
from .schemes import DECODING_SCHEMES, FourMGenerationState, TargetPlan

logger = logging.get_logger(__name__)


@dataclass
class FourMGenerateOutput(ModelOutput):
    """The output of [`FourMGenerationMixin.generate`]: the modality dict, as a `ModelOutput`.

    Its items are the modalities (`out["caption"]["tensor"]`, `out.keys()`, `dict(out)`), the inputs first and then
    every generated target, each fully visible (see `generate`'s Returns). Built from a modality dict, whose entries
    become the items (`ModelOutput`'s rule for a dict given as its first field); so it goes straight to
    `FourMProcessor.postprocess` or back into `generate`.

    Args:
        modalities (`dict[str, dict[str, torch.Tensor]]`): the modality dict; read it back by item, not attribute.
    """

    modalities: Modalities | None = None


class FourMGenerationMixin:
    """Chained any-to-any generation for [`FourMForMaskedModeling`]: see [`~FourMGenerationMixin.generate`]."""

    @torch.no_grad()
    def generate(
        self,
        modalities: Modalities | None = None,
        generation_config: FourMGenerationConfig | Sequence[FourMTargetSchedule] | None = None,
        seed: int | None = None,
        logits_processor: LogitsProcessorList | None = None,
        progress_bar: bool = True,
        streamer: BaseStreamer | None = None,
        **kwargs: Any,
    ) -> FourMGenerateOutput:
        r"""
        Generate the targets of `generation_config` one after the other, each conditioned on the inputs and on
        every target generated before it.

        The algorithm (comments in the body refer to these steps):
        ```
        1. Settings: kwargs override `generation_config`, which overrides the model's `generation_config` (on a copy).
           With neither giving targets, the targets are the inputs' entries with target positions, each with its
           family's recipe settings (`recipes.batch_recipe`).
        2. Inputs: checked as the forward checks them; masks filled in (absent = fully visible, not a target), blank
           targets added for targets that are not given, every entry repeated `num_return_sequences` times, each
           target resolved to its token schedule, temperatures (all 0 with `do_sample=False`), guidance groups and
           sampling warpers.
        3. For every target, its decoding scheme (`DECODING_SCHEMES`) advances one `FourMGenerationState`: `begin`,
           then `step` until the target is complete. Seeded step s (counted over the whole chain) draws from a
           generator seeded `seed + s`.
           a. Each step builds its passes: with guidance, one conditional pass per group and an unconditional pass
              that empties the groups' conditions; each pass is encoded at its own length and the decoder runs all
              passes as one batch, split only for cross-attention (`batch_guidance=False`: one decoder run each).
           b. MaskGIT / ROAR (one seeded step per parallel step): encode the visible tokens, query the step's target
              positions with the mask token, decode, combine the passes' logits, sample every query, commit the
              accepted tokens (they become visible inputs and stop being targets).
           c. Autoregressive (one seeded step per target): encode once, then decode one token per step from the
              first token of the target span (KV cache: only the new token goes through the decoder), until every
              sample produced the span's last token or the budget runs out; the generated span replaces the
              sequence's sentinels.
           d. With `grow_conditioning`, a completed MaskGIT / ROAR target joins the guidance conditions.
        ```

        Args:
            modalities (`dict[str, dict[str, torch.Tensor]]`): the inputs, in the forward format (`tensor` and
                optionally `input_mask` (True = hidden; absent = fully visible) and `target_mask`), e.g. the
                processor's output. A target may be given partially: its positions with `target_mask == False` are
                generated (in-painting, or a text prompt whose sentinel span is to be completed). The modalities may
                instead be passed as keywords named after them, so `generate(**processor(...))` works: every keyword
                that names one of the model's modalities is an input, the others override config fields.
            generation_config ([`FourMGenerationConfig`] or `list[FourMTargetSchedule]`, *optional*): the chain; a
                list of target schedules replaces the targets of the model's generation config. When neither gives
                targets, the targets are the inputs' entries with target positions (the processor's `targets`), in
                their order, with the recipe settings of their families (`"from_rgb"` when RGB is among the other
                inputs, `"to_rgb"` otherwise; see `recipes.batch_recipe`). When the config names the targets, an
                entry with target positions that is not one of them raises.
            seed (`int`, *optional*): makes sampling reproducible; step s uses a generator seeded `seed + s`. When
                None, a seed is drawn from torch's global RNG (so `torch.manual_seed` also fixes the result).
            logits_processor (`LogitsProcessorList`, *optional*): extra processors applied after guidance and before
                top-k / top-p / temperature. They receive `cur_step` when their signature asks for it, and as
                `input_ids` the ids generated so far (autoregressive targets) or None (parallel schemes).
            progress_bar (`bool`, *optional*, defaults to `True`): show a `tqdm` bar over the seeded steps.
            streamer (`BaseStreamer`, *optional*): e.g. a `TextStreamer`; every autoregressive target `put`s its
                sampled token ids as it decodes them (one `(B,)` tensor per token, `[PAD]` for samples already
                finished, the span's end token included) and calls `end()` when complete. Image targets are not
                streamed.
            kwargs: the inputs by modality name (see `modalities`), and overrides of generation config fields, with
                transformers' meaning where it has one: `do_sample=False` (greedy: temperature 0 for every target),
                `num_return_sequences=n`, `max_new_tokens=k` (sequence targets), `top_p=0.8`, `use_cache=False`,
                `special_tokens=tokenizer.special_tokens`...

        Returns:
            [`FourMGenerateOutput`]: a mapping holding the inputs and every generated target as fully visible
            modalities (`tensor` (B * num_return_sequences, N) token ids, `input_mask` (True only on padding of
            merged sequences), `target_mask` all True), ready for `processor.postprocess`, `generate` or the forward.
        """
        # 1. Settings
        modalities = self._collect_modalities(modalities, kwargs)
        config = self._prepare_generation_config(generation_config, kwargs, modalities)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()))
        else:
            check_int(seed, "seed", minimum=-(2**63), maximum=2**63 - 1)
        check_bool(progress_bar, "progress_bar")
        logits_processor = _as_logits_processor(logits_processor)
        _check_streamer(streamer)
        # 2. Inputs and the resolved chain
        modalities = self._prepare_generation_inputs(modalities, config)
        targets = self._plan_targets(config, modalities)
        state = FourMGenerationState(modalities, config, config.special_tokens, seed, logits_processor, streamer)

        # 3. The chain
        with tqdm(total=sum(t.num_steps for t in targets), disable=not progress_bar, desc="4M generation") as bar:
            for target in targets:
                bar.set_postfix_str(target.spec.name)
                scheme = DECODING_SCHEMES[target.schedule.scheme]
                state.start_target(target)
                scheme.begin(self, state)  # 3c: encode once
                complete = False
                while not complete:
                    complete = scheme.step(self, state)  # 3a-c
                    bar.update(state.step - bar.n)
                # 3d happened in `config.guidance_plan()`: later targets already list this one in their groups
        return FourMGenerateOutput(state.modalities)

    # -- 1. settings -------------------------------------------------------------------------------------------------

    def _collect_modalities(self, modalities: Modalities | None, kwargs: dict) -> Modalities:
        """The inputs, `modalities` or the keywords named after the model's modalities (taken out of `kwargs`),
        checked as the forward checks them."""
        names = dict.fromkeys([*self.config.encoder_modalities, *self.config.decoder_modalities])
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        if modalities is None:
            if not given:
                raise TypeError(
                    "generate() needs the inputs: a modality dict (generate(batch)) or its entries as keywords "
                    f"(generate(**batch)) named after the model's modalities {list(names)}."
                )
            modalities = given
        elif given:
            raise TypeError(
                f"generate() got the modalities {list(given)} as keywords and a modality dict; pass them one way."
            )
        check_modalities(
            self.config, modalities, set(self.config.encoder_modalities) | set(self.config.decoder_modalities),
            decodable=self.config.decoder_modalities,
        )
        return modalities

    def _prepare_generation_config(
        self,
        generation_config: FourMGenerationConfig | Sequence[FourMTargetSchedule] | None,
        kwargs: dict,
        modalities: Modalities,
    ) -> FourMGenerationConfig:
        default = self.generation_config if isinstance(self.generation_config, FourMGenerationConfig) else None
        if generation_config is None and not (default is not None and default.targets) and "targets" not in kwargs:
            config = copy.deepcopy(default or FourMGenerationConfig())
            config.update(**recipes.batch_recipe(self.config, modalities))
        elif generation_config is None:
            config = copy.deepcopy(default or FourMGenerationConfig())
        elif isinstance(generation_config, FourMGenerationConfig):
            config = copy.deepcopy(generation_config)
        elif isinstance(generation_config, (list, tuple)):
            config = copy.deepcopy(default or FourMGenerationConfig())
            config.targets = list(generation_config)
        else:
            hint = ""
            if isinstance(generation_config, str):
                hint = " (for a recipe, pass e.g. FourMGenerationConfig.rgb_to_all(model.config))"
            raise TypeError(
                "generation_config must be a FourMGenerationConfig or a list of FourMTargetSchedule, got "
                f"{type(generation_config).__name__} {generation_config!r}{hint}."
            )
        for key in kwargs:
            if key not in GENERATION_FIELDS:
                choices = [*GENERATION_FIELDS, *self.config.encoder_modalities, *self.config.decoder_modalities]
                raise ValueError(
                    f"generate() got an unknown argument {key!r} (neither a modality of the model nor a "
                    f"FourMGenerationConfig field; it overrides {list(GENERATION_FIELDS)}).{close_match(key, choices)}"
                )
        config.update(**kwargs)  # validates
        if not config.targets:
            raise ValueError("Nothing to generate: the generation config has no targets.")
        return config

    # -- 2. inputs ---------------------------------------------------------------------------------------------------

    def _prepare_generation_inputs(self, modalities: Modalities, config: FourMGenerationConfig) -> Modalities:
        """Copy the inputs (checked by `_collect_modalities`) with every mask present (bool), token ids as int64, features in the model
        dtype, image tokens flattened, a blank entry for each target that is not given, and every entry repeated
        `num_return_sequences` times (the copies of a sample next to each other)."""
        targets = {t.modality for t in config.targets}
        for name in targets:
            if name not in self.config.decoder_modalities:
                raise ValueError(
                    f"The model cannot generate {name}; it decodes {self.config.decoder_modalities}."
                    f"{close_match(name, self.config.decoder_modalities)}"
                )
        batch_size = next(iter(modalities.values()))["tensor"].shape[0]
        prepared = {}
        for name, entry in modalities.items():
            spec = self.config.modality(name)
            if name not in self.config.encoder_modalities and name not in targets:
                raise ValueError(f"{name} is neither an input of the model nor a target of the generation config.")
            target_mask = entry.get("target_mask")
            if name not in targets and target_mask is not None and not bool(target_mask.all()):
                raise ValueError(
                    f"{name} is requested as a target (it has target positions, target_mask False, e.g. from the "
                    f"processor's targets=) but the generation config does not generate it (targets: "
                    f"{[t.modality for t in config.targets]}); add it to the config's targets, or drop it from the "
                    "inputs."
                )
            tensor = entry["tensor"].to(self.device)
            if spec.kind in (PIXELS, SEQUENCE_EMBEDDING):
                tensor = tensor.to(self.dtype)
            else:
                tensor = tensor.flatten(1).long() if spec.kind == IMAGE_TOKENS else tensor.long()
            shape = (tensor.shape[0], tensor.shape[1] if spec.is_sequence else spec.num_tokens)
            masks = {}
            for key, default in (("input_mask", False), ("target_mask", True)):
                mask = entry.get(key)
                mask = torch.full(shape, default, dtype=torch.bool) if mask is None else mask
                masks[key] = mask.to(self.device, torch.bool)
            prepared[name] = {"tensor": tensor, **masks}
        for target in config.targets:
            if target.modality not in prepared:
                spec = self.config.modality(target.modality)
                length = target.num_tokens if spec.kind == SEQUENCE else None  # images: the whole grid
                prepared[target.modality] = blank_target(spec, batch_size, length, config.special_tokens, self.device)
        copies = config.num_return_sequences or 1
        if copies > 1:
            prepared = {
                name: {key: value.repeat_interleave(copies, dim=0) for key, value in entry.items()}
                for name, entry in prepared.items()
            }
        return prepared

    def _plan_targets(self, config: FourMGenerationConfig, modalities: Modalities) -> list[TargetPlan]:
        plans = []
        for schedule, (groups, weights) in zip(config.targets, config.guidance_plan(), strict=True):
            spec = self.config.modality(schedule.modality)
            for name in (m for g in groups for m in g):
                if name not in modalities:
                    raise ValueError(f"Guidance condition {name!r} is not among the inputs {list(modalities)}.")
            to_decode = (~modalities[schedule.modality]["target_mask"]).sum(1)
            if int(to_decode.max()) == 0:
                raise ValueError(
                    f"{schedule.modality} is a target of the generation config but is given as a complete input "
                    "(no position with target_mask False); drop it from the inputs to generate it, or from the "
                    "targets to condition on it."
                )
            if int(to_decode.min()) != int(to_decode.max()):
                raise ValueError(
                    f"{schedule.modality}: every sample needs the same, non-zero number of target positions "
                    f"(target_mask == False), got {to_decode.tolist()}."
                )
            plan = TargetPlan(schedule, spec, groups=groups, weights=weights)
            if schedule.is_autoregressive:
                plan.temperatures = [schedule.temperature]
            else:
                num = int(to_decode[0])
                if schedule.num_tokens is not None and schedule.num_tokens != num:
                    raise ValueError(
                        f"{schedule.modality}: num_tokens={schedule.num_tokens}, but {num} positions are targets."
                    )
                plan.token_counts = schedule.token_counts(num)
                plan.temperatures = schedule.temperatures(plan.token_counts)
            if not config.do_sample:
                plan.temperatures = [0.0] * len(plan.temperatures)
            plan.warpers = sampling_warpers(config.top_k, config.top_p, spec.vocab_size, plan.temperatures)
            plans.append(plan)
        return plans

    # -- loading -------------------------------------------------------------------------------------------------------

    def adjust_generation_fn(
        self, generation_config: GenerationConfig | None, from_auto_class: bool, from_pipeline: str | None,
        pretrained_model_name_or_path: str | None, **kwargs: Any,
    ) -> None:
        """Called by `from_pretrained`: use the given generation config, or the checkpoint's
        `generation_config.json` when it has one (transformers would load it as a plain `GenerationConfig`)."""
        if generation_config is not None:
            self.generation_config = FourMGenerationConfig.from_dict(generation_config.to_dict())
        elif pretrained_model_name_or_path is not None:
            try:
                self.generation_config = FourMGenerationConfig.from_pretrained(
                    pretrained_model_name_or_path, **hub_kwargs(kwargs)
                )
            except OSError:
                logger.info("No generation_config.json found; using the default FourMGenerationConfig.")


def _check_streamer(streamer: Any) -> None:
    """A streamer is None or has transformers' `BaseStreamer` interface (`put` and `end`)."""
    if streamer is not None and not all(callable(getattr(streamer, method, None)) for method in ("put", "end")):
        raise TypeError(
            f"streamer must be a transformers BaseStreamer (with put() and end(), e.g. a TextStreamer), got "
            f"{type(streamer).__name__}."
        )


def _as_logits_processor(logits_processor: Any) -> LogitsProcessorList:
    """The caller's extra processors as a list: None, or a list of callables `(input_ids, scores) -> scores`."""
    if logits_processor is None:
        return LogitsProcessorList()
    if not isinstance(logits_processor, (list, tuple)):
        raise TypeError(
            f"logits_processor must be a LogitsProcessorList (or a list of LogitsProcessor), got "
            f"{type(logits_processor).__name__}."
        )
    for index, processor in enumerate(logits_processor):
        if not callable(processor):
            raise TypeError(f"logits_processor[{index}] must be a LogitsProcessor, got {type(processor).__name__}.")
    return LogitsProcessorList(logits_processor)


__all__ = ["FourMGenerateOutput", "FourMGenerationMixin"]
