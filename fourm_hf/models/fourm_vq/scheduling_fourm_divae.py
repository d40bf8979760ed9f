"""Noise schedules and samplers of the 4M diffusion tokenizers (DDPM and DDIM), numerically as the official
apple/ml-4m schedulers (themselves diffusers 0.20 copies extended with zero-terminal-SNR rescaling, a shifted-cosine
schedule and selectable timestep spacing).

Conventions: `alphas_cumprod[t]` is the signal fraction at training step t (0 <= t < T);
`x_t = sqrt(ac_t) x0 + sqrt(1 - ac_t) eps`; `v = sqrt(ac_t) eps - sqrt(1 - ac_t) x0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...checks import check_choice, check_int, check_number
from .configuration_fourm_vq import PREDICTION_TYPES, FourMDiVAEConfig, shifted_cosine_shift

# ----------------------------------------------------------------------------------------------------------------
# Noise schedules


def _linear_betas(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float32, device="cpu")


def _scaled_linear_betas(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float32, device="cpu") ** 2


def _squaredcos_cap_v2_betas(steps: int, beta_start: float, beta_end: float, max_beta: float = 0.999) -> torch.Tensor:
    """Glide cosine schedule: `alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi / 2)`."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32, device="cpu")


def _sigmoid_betas(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.sigmoid(torch.linspace(-6, 6, steps, device="cpu")) * (beta_end - beta_start) + beta_start


BETA_SCHEDULE_FUNCTIONS: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "linear": _linear_betas,
    "scaled_linear": _scaled_linear_betas,
    "squaredcos_cap_v2": _squaredcos_cap_v2_betas,
    "sigmoid": _sigmoid_betas,
}


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so that the last step has zero SNR (Lin et al. 2023): shift and scale `sqrt(alphas_cumprod)`
    to end at 0 while keeping its first value."""
    sqrt_ac = (1 - betas).cumprod(0).sqrt()
    first, last = sqrt_ac[0].clone(), sqrt_ac[-1].clone()
    sqrt_ac = (sqrt_ac - last) * (first / (first - last))
    ac = sqrt_ac**2
    alphas = torch.cat([ac[0:1], ac[1:] / ac[:-1]])
    return 1 - alphas


def shifted_cosine_alphas_cumprod(steps: int, shift: float) -> torch.Tensor:
    """Cosine schedule shifted by `log(shift)` in log-SNR (shift < 1: less noise); the last step is forced to 0."""
    t = torch.linspace(0, 1, steps, device="cpu").to(torch.float64)
    log_snr = -2 * (torch.tan(torch.pi * t / 2).log() + np.log(shift))
    alphas_cumprod = log_snr.clamp(-15, 15).float().sigmoid()
    alphas_cumprod[-1] = 0.0
    return alphas_cumprod


def make_alphas_cumprod(
    num_train_timesteps: int,
    beta_schedule: str,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    zero_terminal_snr: bool = True,
) -> torch.Tensor:
    """`alphas_cumprod` (T,) float32 of a named schedule (see `BETA_SCHEDULE_FUNCTIONS`, or
    `"shifted_cosine:<shift>"`, which is defined on `alphas_cumprod` directly and ignores `zero_terminal_snr`)."""
    shift = shifted_cosine_shift(beta_schedule)
    if shift is not None:
        return shifted_cosine_alphas_cumprod(num_train_timesteps, shift)
    check_choice(beta_schedule, "beta_schedule", [*BETA_SCHEDULE_FUNCTIONS, "shifted_cosine:<shift>"])
    betas = BETA_SCHEDULE_FUNCTIONS[beta_schedule](num_train_timesteps, beta_start, beta_end)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return torch.cumprod(1.0 - betas, dim=0)


# ----------------------------------------------------------------------------------------------------------------
# Timestep spacings (inference)


def _leading(num_train: int, steps: int) -> np.ndarray:
    return (np.arange(0, steps) * (num_train // steps)).round()[::-1]


def _trailing(num_train: int, steps: int) -> np.ndarray:
    return np.round(np.arange(num_train, 0, -num_train / steps)) - 1


def _linspace(num_train: int, steps: int) -> np.ndarray:
    return np.linspace(num_train, 1, steps).round() - 1


TIMESTEP_SPACINGS: dict[str, Callable[[int, int], np.ndarray]] = {
    "leading": _leading,
    "trailing": _trailing,
    "linspace": _linspace,
}


# ----------------------------------------------------------------------------------------------------------------
# Samplers


@dataclass
class FourMSchedulerOutput:
    """
    Args:
        prev_sample (`torch.FloatTensor`): the sample at the previous (less noisy) timestep.
        pred_original_sample (`torch.FloatTensor`): the (thresholded) prediction of x0 at this step.
    """

    prev_sample: torch.FloatTensor
    pred_original_sample: torch.FloatTensor


class FourMNoiseScheduler:
    """Shared forward process, timestep bookkeeping and x0 / noise recovery of [`FourMDDPMScheduler`] and
    [`FourMDDIMScheduler`].

    Args:
        num_train_timesteps (`int`, *optional*, defaults to 1000): T.
        beta_schedule (`str`, *optional*, defaults to `"linear"`): see [`make_alphas_cumprod`].
        beta_start / beta_end (`float`): range of the linear-type schedules.
        zero_terminal_snr (`bool`, *optional*, defaults to `True`): rescale so that `alphas_cumprod[T - 1] = 0`.
        prediction_type (`str`, *optional*, defaults to `"sample"`): `"sample"`, `"epsilon"` or `"v_prediction"`.
        thresholding (`bool`, *optional*, defaults to `True`): dynamic thresholding of x0 at every step.
        dynamic_thresholding_ratio (`float`), sample_max_value (`float`): thresholding parameters (with
            `sample_max_value=1` it is a plain clamp to [-1, 1]).
        clip_sample (`bool`, *optional*, defaults to `False`): clamp x0 to `[-clip_sample_range, clip_sample_range]`
            when not thresholding.
    """

    default_spacing = "leading"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        zero_terminal_snr: bool = True,
        prediction_type: str = "sample",
        thresholding: bool = True,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
    ):
        check_int(num_train_timesteps, "num_train_timesteps", minimum=2)
        check_choice(prediction_type, "prediction_type", PREDICTION_TYPES)
        self.num_train_timesteps = num_train_timesteps
        self.prediction_type = prediction_type
        self.thresholding = thresholding
        self.dynamic_thresholding_ratio = dynamic_thresholding_ratio
        self.sample_max_value = sample_max_value
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.alphas_cumprod = make_alphas_cumprod(
            num_train_timesteps, beta_schedule, beta_start, beta_end, zero_terminal_snr
        )
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, device="cpu")

    @classmethod
    def from_config(cls, config: FourMDiVAEConfig) -> FourMNoiseScheduler:
        """The scheduler a [`FourMDiVAEConfig`] describes."""
        return cls(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            zero_terminal_snr=config.zero_terminal_snr,
            prediction_type=config.prediction_type,
            thresholding=config.thresholding,
            dynamic_thresholding_ratio=config.dynamic_thresholding_ratio,
            sample_max_value=config.sample_max_value,
            clip_sample=config.clip_sample,
        )

    # -- inference timesteps -----------------------------------------------------------------------------------------

    def set_timesteps(self, num_inference_steps: int, spacing: str | None = None) -> None:
        """Choose the sampling timesteps (descending). `spacing`: `"leading"` (0, T/n, ... reversed: the official
        DDPM), `"trailing"` (T-1, T-1-T/n, ...: the official DDIM default) or `"linspace"`; defaults to the sampler's
        own. Each step goes to the next timestep of the list (-1 after the last), as the official samplers do when
        `num_inference_steps` divides T."""
        if spacing is not None and not isinstance(spacing, str):
            raise TypeError(f"timestep spacing must be a string or None, got {type(spacing).__name__}.")
        spacing = check_choice(spacing or self.default_spacing, "timestep spacing", TIMESTEP_SPACINGS)
        check_int(num_inference_steps, "num_inference_steps", 1, self.num_train_timesteps)
        steps = TIMESTEP_SPACINGS[spacing](self.num_train_timesteps, num_inference_steps)
        self.timesteps = torch.from_numpy(steps.astype(np.int64).copy())

    def previous_timestep(self, timestep: int) -> int:
        later = (self.timesteps < timestep).nonzero()
        return int(self.timesteps[later[0, 0]]) if len(later) else -1

    # -- forward process ---------------------------------------------------------------------------------------------

    def _coefficients(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_timesteps(timesteps, like.shape[0], self.num_train_timesteps)
        ac = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)[timesteps.to(like.device)]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return (ac**0.5).view(shape), ((1 - ac) ** 0.5).view(shape)

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """`x_t = sqrt(ac_t) x0 + sqrt(1 - ac_t) noise`, timesteps (B,)."""
        check_same_shape_floats(original=original, noise=noise)
        signal, sigma = self._coefficients(timesteps, original)
        return signal * original + sigma * noise

    def training_target(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the denoiser learns to output: x0, the noise, or the velocity `sqrt(ac) noise - sqrt(1 - ac) x0`."""
        check_same_shape_floats(original=original, noise=noise)
        if self.prediction_type == "sample":
            return original
        if self.prediction_type == "epsilon":
            return noise
        signal, sigma = self._coefficients(timesteps, original)
        return signal * noise - sigma * original

    # -- reverse process ---------------------------------------------------------------------------------------------

    def _check_step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None,
    ) -> int:
        """The arguments of `step`, checked; returns `timestep` as an int."""
        check_same_shape_floats(model_output=model_output, sample=sample)
        check_generator(generator)
        if isinstance(timestep, torch.Tensor) and timestep.numel() == 1 and not timestep.is_floating_point():
            timestep = timestep.item()
        return check_int(timestep, "timestep", 0, self.num_train_timesteps - 1)

    def _alphas(self, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`alphas_cumprod` at `timestep` and at the previous timestep (1 after the last step)."""
        prev = self.previous_timestep(timestep)
        return self.alphas_cumprod[timestep], self.alphas_cumprod[prev] if prev >= 0 else torch.tensor(1.0)

    def _predict(
        self, model_output: torch.Tensor, sample: torch.Tensor, ac_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) implied by the model output; eps comes from the unthresholded x0, as in the official DDIM."""
        beta_t = 1 - ac_t
        if self.prediction_type == "epsilon":
            x0 = (sample - beta_t**0.5 * model_output) / ac_t**0.5
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - ac_t**0.5 * x0) / beta_t**0.5
        else:
            x0 = ac_t**0.5 * sample - beta_t**0.5 * model_output
            eps = ac_t**0.5 * model_output + beta_t**0.5 * sample
        return x0, eps

    def _bound(self, x0: torch.Tensor) -> torch.Tensor:
        if self.thresholding:
            return self._threshold(x0)
        if self.clip_sample:
            return x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0

    def _threshold(self, x0: torch.Tensor) -> torch.Tensor:
        """Dynamic thresholding (Imagen): per sample, s = quantile(|x0|, ratio) clamped to [1, sample_max_value];
        x0 -> clamp(x0, -s, s) / s. With `sample_max_value <= 1` (all released tokenizers) s is 1: a plain clamp."""
        if self.sample_max_value <= 1:
            return x0.clamp(-1, 1)
        dtype, shape = x0.dtype, x0.shape
        flat = x0.float().reshape(shape[0], -1)
        s = torch.quantile(flat.abs(), self.dynamic_thresholding_ratio, dim=1)
        s = s.clamp(min=1, max=self.sample_max_value).unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(shape).to(dtype)


def check_same_shape_floats(**tensors: Any) -> None:
    """Raise unless every value of `tensors` (named by its keyword) is a floating-point tensor of one shape."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            got = f"{type(tensor).__name__} {getattr(tensor, 'dtype', '')}".strip()
            raise TypeError(f"{name} must be a floating-point tensor, got {got}.")
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{' and '.join(shapes)} must have the same shape, got {shapes}.")


def check_timesteps(timesteps: Any, batch_size: int, num_train_timesteps: int) -> None:
    """Raise unless `timesteps` is an integer tensor of shape `(batch_size,)` with values in `[0, T)`."""
    if not isinstance(timesteps, torch.Tensor) or timesteps.is_floating_point() or timesteps.dtype == torch.bool:
        got = f"{type(timesteps).__name__} {getattr(timesteps, 'dtype', '')}".strip()
        raise TypeError(f"timesteps must be an integer tensor of training steps, one per sample, got {got}.")
    if tuple(timesteps.shape) != (batch_size,):
        raise ValueError(
            f"timesteps must have shape (batch,) = ({batch_size},), one step per sample, got {tuple(timesteps.shape)}."
        )
    low, high = (int(timesteps.min()), int(timesteps.max())) if timesteps.numel() else (0, 0)
    if low < 0 or high >= num_train_timesteps:
        raise ValueError(
            f"timesteps must lie in [0, {num_train_timesteps}) (num_train_timesteps), got values in [{low}, {high}]."
        )


def check_generator(generator: Any) -> None:
    """Raise a `TypeError` unless `generator` is a `torch.Generator` or None."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__} {generator!r} (for a seed "
            "s, pass torch.Generator().manual_seed(s))."
        )


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (CPU for a CPU generator), then moved to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


class FourMDDPMScheduler(FourMNoiseScheduler):
    """Ancestral DDPM sampling ('fixed_small' posterior variance), the official DiVAE default. Draws one Gaussian
    per step except the last, from `generator`."""

    default_spacing = "leading"

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> FourMSchedulerOutput:
        timestep = self._check_step(model_output, timestep, sample, generator)
        ac_t, ac_prev = self._alphas(timestep)
        beta_t, beta_prev = 1 - ac_t, 1 - ac_prev
        alpha_t = ac_t / ac_prev
        x0, _ = self._predict(model_output, sample, ac_t)
        x0 = self._bound(x0)
        # posterior mean of q(x_{t-1} | x_t, x0)
        mean = (ac_prev**0.5 * (1 - alpha_t) / beta_t) * x0 + (alpha_t**0.5 * beta_prev / beta_t) * sample
        if timestep > 0:
            variance = torch.clamp(beta_prev / beta_t * (1 - alpha_t), min=1e-20)
            noise = _randn(tuple(model_output.shape), generator, model_output.device, model_output.dtype)
            mean = mean + variance**0.5 * noise
        return FourMSchedulerOutput(prev_sample=mean, pred_original_sample=x0)


class FourMDDIMScheduler(FourMNoiseScheduler):
    """DDIM sampling (deterministic for `eta=0`), final step to `alphas_cumprod = 1`; the official DiVAE decoding
    with `scheduler="ddim"` uses trailing spacing."""

    default_spacing = "trailing"

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
    ) -> FourMSchedulerOutput:
        timestep = self._check_step(model_output, timestep, sample, generator)
        check_number(eta, "eta", 0)
        ac_t, ac_prev = self._alphas(timestep)
        x0, eps = self._predict(model_output, sample, ac_t)
        x0 = self._bound(x0)
        std = eta * ((1 - ac_prev) / (1 - ac_t) * (1 - ac_t / ac_prev)) ** 0.5
        prev_sample = ac_prev**0.5 * x0 + (1 - ac_prev - std**2) ** 0.5 * eps
        if eta > 0:
            noise = _randn(tuple(model_output.shape), generator, model_output.device, model_output.dtype)
            prev_sample = prev_sample + std * noise
        return FourMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


SCHEDULER_CLASSES: dict[str, type[FourMNoiseScheduler]] = {"ddpm": FourMDDPMScheduler, "ddim": FourMDDIMScheduler}


__all__ = [
    "BETA_SCHEDULE_FUNCTIONS",
    "check_generator",
    "check_same_shape_floats",
    "check_timesteps",
    "SCHEDULER_CLASSES",
    "TIMESTEP_SPACINGS",
    "FourMDDIMScheduler",
    "FourMDDPMScheduler",
    "FourMNoiseScheduler",
    "FourMSchedulerOutput",
    "make_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "shifted_cosine_alphas_cumprod",
]
