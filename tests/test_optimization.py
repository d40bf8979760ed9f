"""`fourm_hf.optimization.MuonAdamW` and pre-training with `--muon`: the AdamW part is torch's AdamW, the Muon part
an orthogonalised momentum at AdamW's RMS, the groups hold the Transformer layers' matrices only, and a killed run
resumes exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pretrain import tiny_run
from transformers import TrainerCallback

from fourm_hf import optimization
from fourm_hf.distributed import run_forked_ranks
from fourm_hf.models.fourm.modeling_fourm import FourMDecoderLayer, FourMEncoderLayer
from fourm_hf.optimization import MuonAdamW, orthogonalize, transformer_matrix_names
from training.pretrain import run_pretraining


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_orthogonalize_pushes_singular_values_near_one_and_batches(shape):
    generator = torch.Generator().manual_seed(0)
    stack = torch.randn(3, *shape, generator=generator) * torch.tensor([1e-3, 1.0, 50.0]).view(3, 1, 1)
    out = orthogonalize(stack)
    assert out.shape == stack.shape
    singular, given = torch.linalg.svdvals(out), torch.linalg.svdvals(stack)
    resolved = given > 0.05 * given[:, :1]  # five iterations lift singular values above ~1/20 of the largest
    assert singular[resolved].min() > 0.65 and singular.max() < 1.25, singular  # the quintic's band, at any scale
    for matrix, batched in zip(stack, out):  # the same matrix alone
        torch.testing.assert_close(orthogonalize(matrix), batched, rtol=1e-4, atol=1e-5)
    # the direction is U V^T of the input: its correlation with the exact polar factor is high
    u, _, vh = torch.linalg.svd(stack[1], full_matrices=False)
    cosine = (out[1] * (u @ vh)).sum() / (out[1].norm() * (u @ vh).norm())
    assert cosine > 0.95


def _toy_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))


def _train(model, optimizer, steps=4):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 6, generator=generator)
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()


def test_adamw_groups_update_exactly_as_torch_adamw():
    ours, reference = _toy_model(), _toy_model()
    options = {"lr": 3e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.05}
    _train(ours, MuonAdamW(ours.parameters(), **options))
    _train(reference, torch.optim.AdamW(reference.parameters(), fused=True, **options))
    for p, q in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("update_rms", [0.2, 0.35])
def test_muon_step_is_the_orthogonalised_momentum_at_the_given_rms(update_rms):
    model = _toy_model()
    weight = model[0].weight
    before = weight.detach().clone()
    lr, decay = 1e-2, 0.1
    optimizer = MuonAdamW(
        [{"params": [weight], "use_muon": True}, {"params": [p for p in model.parameters() if p is not weight]}],
        lr=lr, weight_decay=decay, update_rms=update_rms,
    )  # fmt: skip
    model(torch.randn(8, 6)).square().mean().backward()
    grad = weight.grad.clone()
    optimizer.step()
    # first step from zero momentum: the Nesterov mix is a multiple of the gradient, and orthogonalize is scale-free
    expected = before * (1 - lr * decay) - lr * update_rms * 16**0.5 * orthogonalize(grad)
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-5, atol=1e-6)
    rms = ((before * (1 - lr * decay) - weight.detach()) / lr).square().mean().sqrt()
    assert 0.6 * update_rms < rms < 1.3 * update_rms  # the RMS asked for, whatever the gradient's size
    assert optimizer.state[weight]["momentum_buffer"].abs().sum() > 0 and "exp_avg" not in optimizer.state[weight]


def _muon_matrices_model():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(6, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 32),
              torch.nn.Linear(32, 16), torch.nn.Linear(16, 3)]  # fmt: skip
    return torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.Tanh())][:-1])


def _muon_training(rank: int | None = None, split: bool = False) -> dict:
    """Four MuonAdamW steps on `_muon_matrices_model` with the same data on every rank (as after DDP's all-reduce),
    in a process group when a rank is given; returns the weights and how many matrices this process orthogonalised
    per step."""
    if rank is not None:
        torch.distributed.init_process_group("gloo")
    model, counted = _muon_matrices_model(), []
    matrices = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    others = [p for p in model.parameters() if all(p is not m for m in matrices)]
    optimizer = MuonAdamW(
        [{"params": matrices, "use_muon": True}, {"params": others}], lr=1e-2, weight_decay=0.1, update_rms=0.3,
        split_across_ranks=split,
    )  # fmt: skip
    orthogonalize_stack = optimization.orthogonalize

    def counting(stack, steps):
        counted.append(len(stack))
        return orthogonalize_stack(stack, steps)

    optimization.orthogonalize = counting
    try:
        generator = torch.Generator().manual_seed(1)
        for _ in range(4):
            model(torch.randn(8, 6, generator=generator)).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        optimization.orthogonalize = orthogonalize_stack
    return {"weights": [p.detach().clone() for p in model.parameters()], "orthogonalised": sum(counted) / 4}


@pytest.mark.parametrize("world", [2, 3])
def test_muon_split_across_ranks_matches_one_process_with_a_share_of_the_work_each(world):
    alone = _muon_training()
    ranks = run_forked_ranks(lambda rank: _muon_training(rank, split=True), world)
    assert alone["orthogonalised"] == 6
    # 32x16 (x2), 16x16 (x2), 16x6, 3x16: costliest first, each to the least loaded rank
    assert [r["orthogonalised"] for r in ranks] == {2: [3, 3], 3: [2, 2, 2]}[world]
    for result in ranks:
        for got, expected in zip(result["weights"], alone["weights"]):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if world == 2:  # the shares summed in shared memory (run_forked_ranks' default) or by gloo: the same bits
        gloo = run_forked_ranks(lambda rank: _muon_training(rank, split=True), 2, shared_memory=False)
        for ours, theirs in zip(ranks, gloo):
            assert all(torch.equal(a, b) for a, b in zip(ours["weights"], theirs["weights"]))
    unsplit = run_forked_ranks(lambda rank: _muon_training(rank, split=False), 2)
    assert [r["orthogonalised"] for r in unsplit] == [6, 6]  # the default: every rank computes every update
    assert _muon_training(split=True)["orthogonalised"] == 6  # no process group: nothing to split


def test_muon_adamw_rejects_bad_groups_and_hyperparameters():
    model = _toy_model()
    with pytest.raises(ValueError, match=r"2-D weights only; a use_muon group holds shapes \[\(16,\)\]"):
        MuonAdamW([{"params": [model[0].bias], "use_muon": True}])
    for bad in ({"lr": -1.0}, {"momentum": 1.0}, {"betas": (0.9, 1.5)}, {"weight_decay": True}, {"eps": "1e-8"},
                {"update_rms": -0.2}):
        with pytest.raises(ValueError, match=f"MuonAdamW {next(iter(bad))} must be in"):
            MuonAdamW(model.parameters(), **bad)
    with pytest.raises(ValueError, match="newton_schulz_steps must be a positive int"):
        MuonAdamW(model.parameters(), newton_schulz_steps=0)
    with pytest.raises(ValueError, match="split_across_ranks must be a bool, got 'yes'"):
        MuonAdamW(model.parameters(), split_across_ranks="yes")


def test_adamw_lr_scale_sets_the_adamw_groups_lr_and_the_schedule_keeps_the_ratio(tmp_path):
    args, model, dataset = tiny_run(tmp_path, "scaled", muon=True, adamw_lr_scale=3.0)
    trainer = run_pretraining(args, model, dataset)
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    scheduler = trainer.lr_scheduler
    assert [g["use_muon"] for g in optimizer.param_groups].count(True) >= 1
    for group, initial in zip(optimizer.param_groups, scheduler.base_lrs):
        assert initial == pytest.approx(args.learning_rate * (1.0 if group["use_muon"] else 3.0))
        assert group["lr"] == pytest.approx(initial * scheduler.lr_lambdas[0](trainer.state.global_step))
    model = _toy_model()
    groups = optimization.muon_adamw(model, {"0.weight"}, set(), 0.05, adamw_lr_scale=0.5, lr=0.02).param_groups
    assert sorted((g["use_muon"], g["lr"]) for g in groups) == [(False, 0.01), (True, 0.02)]
    with pytest.raises(ValueError, match=r"adamw_lr_scale must be > 0, got 0"):
        optimization.muon_adamw(model, {"0.weight"}, set(), 0.05, adamw_lr_scale=0)
    with pytest.raises(ValueError, match="--adamw_lr_scale 3 scales the AdamW parameters' lr .* needs --muon"):
        tiny_run(tmp_path, "no_muon", adamw_lr_scale=3.0)


class StopAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_pretraining_with_muon_groups_the_layer_matrices_and_resumes_exactly(tmp_path):
    args, model, dataset = tiny_run(tmp_path, "straight", muon=True)
    straight = run_pretraining(args, model, dataset)
    optimizer = straight.optimizer.optimizer if hasattr(straight.optimizer, "optimizer") else straight.optimizer
    assert isinstance(optimizer, MuonAdamW)
    named = dict(straight.model.named_parameters())
    muon = {id(p) for g in optimizer.param_groups if g["use_muon"] for p in g["params"]}
    expected = transformer_matrix_names(straight.model, (FourMEncoderLayer, FourMDecoderLayer))
    assert {name for name, p in named.items() if id(p) in muon} == expected
    assert "encoder.layers.0.self_attn.qkv.weight" in expected and "decoder.layers.0.mlp.down_proj.weight" in expected
    assert not any("embed" in name or "norm" in name or name.endswith("bias") for name in expected)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, args.weight_decay}
    losses = [e["loss"] for e in straight.state.log_history if "loss" in e]
    assert len(losses) == 6 and all(np.isfinite(losses)) and losses[-1] < losses[0]

    args, model, dataset = tiny_run(tmp_path, "killed", muon=True)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining(args, model, dataset, callbacks=[StopAfter(5)])
    assert sorted(p.name for p in Path(args.output_dir).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    args, fresh, dataset = tiny_run(tmp_path, "killed", muon=True)
    resumed = run_pretraining(args, fresh, dataset)  # from checkpoint-4: Muon's momentum buffers come back too
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
