"""`MuonAdamW`: Muon for the Transformer blocks' weight matrices and AdamW for every other parameter, in one
optimizer under one learning rate and schedule.

Muon (Jordan et al. 2024) replaces a matrix's momentum by its nearest semi-orthogonal matrix (a quintic Newton-Schulz
iteration), so that every direction of the update moves at the same rate. Scaled by `0.2 x sqrt(max(rows, columns))`
its update has the RMS of a typical AdamW update (Liu et al. 2025, "Muon is Scalable for LLM Training"), so AdamW's
learning rate, warm-up and decay apply to it unchanged (`update_rms` sets another RMS). The demo's 4M beats 3,000
AdamW steps with 2,000 such steps (`benchmarks/README.md`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam

from .checks import check_number
from .shared_memory import all_reduce_sum_

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan et al.: fast growth near zero
ADAMW_RMS = 0.2  # the RMS of a typical AdamW update per unit learning rate: Muon's default `update_rms`


def orthogonalize(matrices: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately `U V^T` for each matrix `U S V^T` of a (..., rows, columns) stack, in the input's dtype: singular
    values above ~1/20 of the largest end in ~[0.7, 1.2] rather than at exactly 1 (which trains as well), smaller ones
    grow but less."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrices / (matrices.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:  # iterate on the smaller Gram matrix
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.mT


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the parameter groups with `use_muon=True` (2-D weights), AdamW on the others.

    Args:
        params: parameter groups (dicts with `params` and optionally `use_muon`, `weight_decay`, `lr`...) or
            parameters (all AdamW).
        lr: the learning rate of both (Muon's update is scaled to AdamW's RMS, see the module docstring).
        betas, eps: AdamW's.
        weight_decay: decoupled weight decay of both (`p -= lr x weight_decay x p`).
        momentum: Muon's (Nesterov) momentum.
        update_rms: the RMS of Muon's update per unit learning rate (0.2: AdamW's, so one learning rate suits both;
            larger values move the matrices faster than the rest).
        newton_schulz_steps: iterations of the orthogonalisation.
        fused: AdamW's fused kernel (CPU and CUDA).
        split_across_ranks: under data parallelism (DDP: the same gradients and state on every rank of the
            initialised process group), each rank orthogonalises a share of the matrices and one all-reduce gathers
            the updates: the same step for 1/world of the orthogonalisation (1.8x faster steps for the 12.5M-parameter
            4M of the demo's --long preset on two CPU processes). Between the ranks of `run_forked_ranks` the
            all-reduce goes through shared memory, which makes the split pay for small matrices too (the demo's 4M:
            1.7x); through gloo it costs them what it saves. Ignored without a process group of two ranks or more.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        update_rms: float = ADAMW_RMS,
        newton_schulz_steps: int = 5,
        fused: bool = True,
        split_across_ranks: bool = False,
    ):
        ranges = (
            {"lr": lr, "eps": eps, "weight_decay": weight_decay, "update_rms": update_rms},
            {"momentum": momentum, "betas": betas},
        )
        for high, values in zip((math.inf, 1), ranges):
            for name, value in values.items():
                for number in value if isinstance(value, tuple) else (value,):
                    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number < high:
                        raise ValueError(f"MuonAdamW {name} must be in [0, {high}), got {value!r}.")
        if not isinstance(newton_schulz_steps, int) or newton_schulz_steps < 1:
            raise ValueError(f"MuonAdamW newton_schulz_steps must be a positive int, got {newton_schulz_steps!r}.")
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
            "update_rms": update_rms, "newton_schulz_steps": newton_schulz_steps, "fused": fused, "use_muon": False,
        }  # fmt: skip
        if not isinstance(split_across_ranks, bool):
            raise ValueError(f"MuonAdamW split_across_ranks must be a bool, got {split_across_ranks!r}.")
        self.split_across_ranks = split_across_ranks
        super().__init__(params, defaults)
        for group in self.param_groups:
            bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2] if group["use_muon"] else []
            if bad:
                raise ValueError(f"MuonAdamW orthogonalises 2-D weights only; a use_muon group holds shapes {bad}.")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["use_muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        momentum, lr = group["momentum"], group["lr"]
        buffers = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
        grads = [p.grad for p in params]
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        rank, world = _data_parallel_rank() if self.split_across_ranks else (0, 1)
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)  # tall matrices go as their transposes
        for index, p in enumerate(params):
            by_shape[min(p.shape), max(p.shape)].append(index)
        owners = _balanced_owners([min(p.shape) ** 2 * max(p.shape) for p in params], world)  # ~FLOPs each
        updates: list[torch.Tensor | None] = [None] * len(params)  # scaled, in each parameter's orientation
        for shape, indices in by_shape.items():  # one batched iteration per shape, over this rank's share
            share = [i for i in indices if owners[i] == rank]
            if not share:
                continue
            wide = [params[i].shape[0] == shape[0] for i in share]
            mixed = [grads[i].lerp(buffers[i], momentum) for i in share]  # Nesterov
            stack = torch.stack([m if w else m.T for m, w in zip(mixed, wide)])
            stack = orthogonalize(stack, group["newton_schulz_steps"])
            scale = lr * group["update_rms"] * math.sqrt(shape[1])  # an orthogonal update's RMS is 1/sqrt(columns)
            for i, update, w in zip(share, stack * scale, wide):
                updates[i] = update if w else update.T
        if world > 1:  # every rank's share into one buffer, summed over the ranks (each entry comes from one rank)
            flat = params[0].new_zeros(sum(p.numel() for p in params))
            views = flat.split([p.numel() for p in params])
            for view, update in zip(views, updates):
                if update is not None:
                    view.copy_(update.reshape(-1))
            all_reduce_sum_(flat)
            updates = [view.view_as(p) for view, p in zip(views, params)]
        for p, update in zip(params, updates):
            p.mul_(1 - lr * group["weight_decay"]).sub_(update)

    def _adamw_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        adam(
            params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
            [s["step"] for s in states], fused=group["fused"], decoupled_weight_decay=True, amsgrad=False,
            beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=False,
        )  # fmt: skip


def _balanced_owners(costs: list[int], world: int) -> list[int]:
    """The rank that computes each item: the costliest first, each to the least loaded rank (the lowest on ties)."""
    loads, owners = [0] * world, [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        owners[index] = min(range(world), key=loads.__getitem__)
        loads[owners[index]] += costs[index]
    return owners


def _data_parallel_rank() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def transformer_matrix_names(model: nn.Module, block_types: tuple[type[nn.Module], ...]) -> set[str]:
    """Names of the 2-D weights of the `nn.Linear` layers inside `block_types` modules: what Muon trains.
    Embeddings, output heads, norms and biases stay with AdamW."""
    names = set()
    for block_name, block in model.named_modules():
        if isinstance(block, block_types):
            for layer_name, layer in block.named_modules():
                if isinstance(layer, nn.Linear):
                    names.add(".".join(n for n in (block_name, layer_name, "weight") if n))
    return names


def muon_adamw(
    model: nn.Module, muon_names: set[str], no_decay_names: set[str], weight_decay: float, adamw_lr_scale: float = 1.0,
    **options: Any,
) -> MuonAdamW:
    """A `MuonAdamW` over `model`'s trainable parameters: those in `muon_names` in a Muon group, the others in AdamW
    groups at `adamw_lr_scale` times the learning rate; every parameter decayed by `weight_decay` except those in
    `no_decay_names`. `options` go to `MuonAdamW`."""
    check_number(adamw_lr_scale, "adamw_lr_scale", 0, open_minimum=True)
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = defaultdict(list)  # (Muon, decayed) -> parameters
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups[name in muon_names, name not in no_decay_names].append(parameter)
    optimizer = MuonAdamW(
        [{"params": params, "use_muon": use_muon, "weight_decay": weight_decay if decayed else 0.0}
         for (use_muon, decayed), params in sorted(groups.items(), reverse=True)],
        **options,
    )  # fmt: skip
    for group in optimizer.param_groups:
        if not group["use_muon"]:
            group["lr"] *= adamw_lr_scale
    return optimizer
