"""Pre-training: the official optimiser recipe, the schedule, resuming, and pre-tokenisation of datasets."""

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from conftest import case_modalities, official_case
from fourm_hf import FourMConfig, FourMForMaskedModeling, FourMImageProcessor, FourMTokenizer
from fourm_hf.data.synthetic import synthetic_scenes_dataset
from fourm_hf.data.masking import FourMMaskingCollator, MaskingMixture
from fourm_hf.conversion.official_fourm import rename_official_key
from fourm_hf.data import pretokenization
from fourm_hf.data.pretokenization import ImageColumn, TextColumn, crop_settings, pretokenize
from fourm_hf.data.serialization import text_to_boxes
from training.pretrain import FourMPretrainer, FourMPretrainingArguments, no_weight_decay_names, run_pretraining

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "training" / "accelerate_configs"


class StopAfter(TrainerCallback):
    """Ends training after `steps` optimizer steps, cleanly or by raising (a crash: nothing after the last
    checkpoint survives)."""

    def __init__(self, steps, crash=False):
        self.steps, self.crash = steps, crash

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.steps:
            if self.crash:
                raise KeyboardInterrupt("killed")
            control.should_training_stop = True


def official_no_decay(key):
    """The official parameter-group rule (fourm/utils/optim_factory.py) on an official parameter name."""
    return "norm." in key or ".norm" in key or key.endswith((".bias", ".lookup_table_weight", ".gamma"))


# ---------------------------------------------------------------------------------------------------------------------
# Optimiser, schedule, budgets


@pytest.mark.parametrize("case_name", ["fm_4m7_style", "fm_4m21_style"])
def test_decay_groups_follow_the_official_name_rule(official_checkpoints, case_name):
    case = official_case(case_name)
    model = FourMForMaskedModeling.from_pretrained(official_checkpoints[case_name])
    ours = {rename_official_key(k, model.config.gated_mlp): k for k in case["info"]["keys_shapes"]}
    params = dict(model.named_parameters())
    assert set(params) <= set(ours), f"parameters without an official name: {sorted(set(params) - set(ours))[:5]}"
    expected = {name for name in params if official_no_decay(ours[name])}
    assert no_weight_decay_names(model) == expected
    assert any("norm" in n for n in expected) and "decoder.mask_token" not in expected


def test_one_optimizer_step_matches_the_official_recipe(official_checkpoints, tmp_path):
    """The expected step is computed by hand from the recipe: AdamW's first step is
    p <- p (1 - lr wd) - lr g / (|g| + eps) (bias-corrected moments equal g and g^2), with wd = 0.05 except for the
    parameters the official name rule exempts, and lr = base_lr x batch / 256 at a step with no warm-up."""
    case = official_case("fm_4m7_style")
    info = case["info"]
    batch = case_modalities(case)
    path = official_checkpoints["fm_4m7_style"]
    base_lr, batch_size = 1.28, 2  # lr = 0.01, so that a decay or lr error shows far above the 1e-5 tolerance
    lr = base_lr * batch_size / 256

    # the expected step, from a second copy of the weights
    reference = FourMForMaskedModeling.from_pretrained(path)
    out = reference(batch, info["num_encoder_tokens"], info["num_decoder_tokens"])
    torch.testing.assert_close(out.loss, case["tensors"]["expected.loss_mod"].reshape(()), rtol=1e-5, atol=0)
    out.loss.backward()
    official_names = {rename_official_key(k, reference.config.gated_mlp): k for k in info["keys_shapes"]}
    expected = {}
    for name, p in reference.named_parameters():
        decay = 0.0 if official_no_decay(official_names[name]) else 0.05
        g = p.grad if p.grad is not None else None
        expected[name] = p.detach() if g is None else p.detach() * (1 - lr * decay) - lr * g / (g.abs() + 1e-8)

    # the step taken by the pre-training Trainer
    model = FourMForMaskedModeling.from_pretrained(path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    samples = [
        {"index": i, "modalities": {m: {k: v[i] for k, v in entry.items()} for m, entry in batch.items()}}
        for i in range(batch_size)
    ]

    def collate(items):  # stack the fixture's samples back in their order
        items = sorted(items, key=lambda item: item["index"])
        modalities = {
            m: {k: torch.stack([item["modalities"][m][k] for item in items]) for k in batch[m]} for m in batch
        }
        return {"modalities": modalities, "num_encoder_tokens": info["num_encoder_tokens"],
                "num_decoder_tokens": info["num_decoder_tokens"]}

    args = FourMPretrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch_size, base_learning_rate=base_lr,
        total_tokens=10 * 256 * batch_size, warmup_tokens=0, use_cpu=True, save_strategy="no", disable_tqdm=True,
    )
    assert args.learning_rate == pytest.approx(lr) and (args.adam_beta1, args.adam_beta2) == (0.9, 0.95)
    assert (args.weight_decay, args.adam_epsilon, args.max_grad_norm) == (0.05, 1e-8, 0.0)
    trainer = FourMPretrainer(model=model, args=args, train_dataset=samples, data_collator=collate,
                              callbacks=[StopAfter(1)])
    trainer.train()
    assert trainer.state.global_step == 1
    tokens = batch_size * (info["num_encoder_tokens"] + info["num_decoder_tokens"])  # 6 x tokens x weights per step
    assert trainer.state.total_flos == 6 * tokens * model.num_parameters(exclude_embeddings=True)
    moved = max((p - before[n]).abs().max().item() for n, p in model.named_parameters())
    assert moved > 1e-3
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], atol=1e-5, rtol=0, msg=f"{name} after one step")


def official_lr_schedule(base, final, total_steps, warmup_steps):
    """apple/ml-4m `cosine_scheduler` (per step), written out from its definition."""
    warmup = np.linspace(0, base, warmup_steps) if warmup_steps > 0 else np.array([])
    steps = np.arange(total_steps - warmup_steps)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / len(steps)))
    return np.concatenate([warmup, cosine])


def scheduled_lrs(args, config):
    """The learning rate of each of the run's steps, as the pretrainer's optimizer and scheduler set it."""
    trainer = FourMPretrainer(model=FourMForMaskedModeling(config), args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    lrs = []
    for _ in range(args.max_steps):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


@pytest.mark.parametrize("warmup_tokens, total_tokens, min_blr", [(0, 7, 0.0), (1, 3, 0.0), (5, 20, 2.5e-5)])
def test_lr_schedule_and_token_budgets_follow_the_recipe(tmp_path, tiny_config, warmup_tokens, total_tokens, min_blr):
    tokens_per_step = (64 + 32) * 8 * 4  # (input + target budget) x per-device batch x accumulation
    args = FourMPretrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=4,
        base_learning_rate=1e-4, min_base_learning_rate=min_blr, input_tokens="16,64", target_tokens="32",
        total_tokens=total_tokens * tokens_per_step - 1, warmup_tokens=warmup_tokens * tokens_per_step, use_cpu=True,
    )
    assert args.learning_rate == pytest.approx(1e-4 * 32 / 256)
    assert (args.tokens_per_step, args.max_steps, args.warmup_steps) == (tokens_per_step, total_tokens, warmup_tokens)
    lrs = scheduled_lrs(args, tiny_config)
    expected = official_lr_schedule(args.learning_rate, min_blr * 32 / 256, total_tokens, warmup_tokens)
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="warmup_tokens"):
        FourMPretrainingArguments(output_dir=str(tmp_path), total_tokens=10, warmup_tokens=10, use_cpu=True)


@pytest.mark.parametrize("min_blr", [0.0, 2.5e-5])
def test_linear_lr_decay_falls_in_equal_steps_to_the_minimum(tmp_path, tiny_config, min_blr):
    tokens_per_step = (64 + 32) * 8
    args = FourMPretrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, base_learning_rate=1e-4, min_base_learning_rate=min_blr,
        input_tokens="64", target_tokens="32", total_tokens=12 * tokens_per_step, warmup_tokens=3 * tokens_per_step,
        lr_decay="linear", use_cpu=True,
    )
    lrs = scheduled_lrs(args, tiny_config)
    peak, final = 1e-4 * 8 / 256, min_blr * 8 / 256
    expected = [0.0, peak / 2, peak] + [final + (peak - final) * (1 - i / 9) for i in range(9)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match=r"--lr_decay must be one of \['cosine', 'linear'\], got 'step'"):
        FourMPretrainingArguments(output_dir=str(tmp_path), lr_decay="step", use_cpu=True)


# ---------------------------------------------------------------------------------------------------------------------
# Training runs on a tiny model


def tiny_run(tmp_path, name, max_steps=6, **overrides):
    """Arguments, model, dataset for a few CPU steps: 12 samples, batch 4, masks of a 2-component mixture."""
    rng = np.random.default_rng(0)
    rows = {
        "tok_semseg@224": [rng.integers(0, 4096, 196) for _ in range(12)],
        "tok_dinov2_global": [rng.integers(0, 8192, 16) for _ in range(12)],
        "caption": [rng.integers(300, 3000, int(rng.integers(5, 30))).tolist() + [3] for _ in range(12)],
    }
    mixture = tmp_path / "mixture.json"
    mixture.write_text(json.dumps({
        "input_tokens": [16, 24], "target_tokens": 24,
        "alphas_mixture": {m: {"input_alphas": [1.0, 0.2], "target_alphas": [1.0, 0.5]} for m in rows},
    }))
    tokens_per_step = (24 + 24) * 4
    args = FourMPretrainingArguments(
        output_dir=str(tmp_path / name), mixture=str(mixture), per_device_train_batch_size=4, base_learning_rate=1.0,
        total_tokens=max_steps * tokens_per_step, warmup_tokens=2 * tokens_per_step, logging_steps=1, save_steps=2,
        use_cpu=True, seed=0, disable_tqdm=True, **overrides,
    )
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=list(rows), decoder_modalities=list(rows),
    )
    torch.manual_seed(0)
    return args, FourMForMaskedModeling(config), datasets.Dataset.from_dict(rows).with_format("numpy")


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    args, model, dataset = tiny_run(tmp_path, "straight")
    straight = run_pretraining(args, model, dataset)
    args, model, dataset = tiny_run(tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):  # dies after step 5; checkpoint-4 is the last one on disk
        run_pretraining(args, model, dataset, callbacks=[StopAfter(5, crash=True)])
    assert sorted(p.name for p in Path(args.output_dir).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    args, fresh_model, dataset = tiny_run(tmp_path, "killed")
    resumed = run_pretraining(args, fresh_model, dataset)  # picks up checkpoint-4 (mid-epoch: 3 steps per epoch)
    assert resumed.state.global_step == straight.state.global_step == 6

    def last_log(trainer):
        return [entry for entry in trainer.state.log_history if "loss" in entry][-1]

    final, final_resumed = last_log(straight), last_log(resumed)
    assert final["step"] == final_resumed["step"] == 6
    assert final_resumed["loss"] == pytest.approx(final["loss"], rel=1e-6, abs=0)
    for name in ("tok_semseg@224_loss", "tok_dinov2_global_loss", "caption_loss"):
        assert final_resumed[name] == pytest.approx(final[name], rel=1e-6, abs=0)
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    losses = [entry["loss"] for entry in straight.state.log_history if "loss" in entry]
    assert len(set(losses)) == len(losses)  # the steps saw different data and masks


def test_the_text_tokenizers_special_tokens_are_saved_for_generation(tmp_path):
    """A tokenizer with its own reserved layout (10 sentinels): the trained model generates with its ids."""
    corpus = ["a red cube on a gray floor", "two blue spheres near a wall"] * 8
    tokenizer = FourMTokenizer.train_new(corpus, vocab_size=120, num_sentinels=10, num_value_bins=8, object_classes=())
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    args, model, dataset = tiny_run(tmp_path, "run", max_steps=3, save_strategy="no",
                                    text_tokenizer=str(tmp_path / "tokenizer"))
    assert model.generation_config.special_tokens != tokenizer.special_tokens  # the released ids before training
    trainer = run_pretraining(args, model, dataset)
    assert trainer.data_collator.sentinel_ids == tokenizer.special_tokens.sentinel_ids
    trainer.model.save_pretrained(tmp_path / "model")
    loaded = FourMForMaskedModeling.from_pretrained(tmp_path / "model").generation_config
    assert loaded.special_tokens == tokenizer.special_tokens and loaded.sentinel_token_ids == list(range(4, 14))


def test_gradient_checkpointing_and_bf16(tmp_path):
    runs = {}
    for name, options in (("plain", {}), ("checkpointed", {"gradient_checkpointing": True}), ("bf16", {"bf16": True})):
        args, model, dataset = tiny_run(tmp_path, name, max_steps=3, save_strategy="no", **options)
        trainer = run_pretraining(args, model, dataset)
        runs[name] = trainer
        assert all(np.isfinite(e["loss"]) and "caption_loss" in e for e in trainer.state.log_history if "loss" in e)
    assert runs["checkpointed"].model.encoder.layers[0].gradient_checkpointing
    for p, q in zip(runs["plain"].model.parameters(), runs["checkpointed"].model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    plain = [e["loss"] for e in runs["plain"].state.log_history if "loss" in e]
    bf16 = [e["loss"] for e in runs["bf16"].state.log_history if "loss" in e]
    np.testing.assert_allclose(bf16, plain, rtol=0.02)


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {path.stem: load_config_from_file(str(path)) for path in ACCELERATE_CONFIGS.glob("*.yaml")}
    names = ("one_gpu", "multi_gpu", "fsdp", "multi_gpu_multinode", "fsdp_multinode")
    assert set(configs) == set(names)
    assert [configs[n].distributed_type.value for n in names] == ["NO", "MULTI_GPU", "FSDP", "MULTI_GPU", "FSDP"]
    assert all(c.mixed_precision == "bf16" for c in configs.values())
    assert [(configs[n].num_machines, configs[n].num_processes) for n in names[3:]] == [(2, 16), (2, 16)]
    for name in ("fsdp", "fsdp_multinode"):
        fsdp = configs[name].fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_cpu_ram_efficient_loading"] is False
        assert set(fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")) == set(FourMForMaskedModeling._no_split_modules)


# ---------------------------------------------------------------------------------------------------------------------
# Pre-tokenisation


class PatchMeanTokenizer(torch.nn.Module):
    """Stand-in modality tokenizer: the mean of channel 0 over each 16x16 patch, binned into `vocab_size` ids."""

    def __init__(self, vocab_size=64, calls=None, fail_after=None):
        super().__init__()
        self.vocab_size, self.calls, self.fail_after = vocab_size, calls, fail_after

    def encode(self, x):
        if self.calls is not None:
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise RuntimeError("tokenizer crashed")
            self.calls.append(len(x))
        x = x[:, None].float() if x.dim() == 3 else x  # class maps (B, S, S)
        means = F.avg_pool2d(x[:, :1].float(), 16)[:, 0]  # (B, 14, 14)
        return ((means.clamp(-3, 3) + 3) / 6 * (self.vocab_size - 1)).round().long()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    dataset = synthetic_scenes_dataset(6, height=64, width=80, cache_dir=str(root / "scenes"))
    text_tokenizer = FourMTokenizer.train_new(
        [row["caption"] for row in dataset], vocab_size=4400, object_classes=("sphere", "cube", "cylinder")
    )
    return dataset, text_tokenizer, root


def scene_columns(tokenizer):
    return [
        ImageColumn("rgb", "tok_rgb@224", tokenizer),
        ImageColumn("depth", "tok_depth@224", tokenizer),
        ImageColumn("normal", "tok_normal@224", tokenizer),
        ImageColumn("semseg", "tok_semseg@224", tokenizer),
        ImageColumn("rgb", "rgb@224"),
    ]


def test_pretokenized_crops_are_aligned_across_modalities(scenes, tmp_path):
    dataset, text_tokenizer, _ = scenes
    tokenizer = PatchMeanTokenizer()
    out = pretokenize(
        dataset, scene_columns(tokenizer), [TextColumn("caption", "caption"), TextColumn("det", "det")],
        text_tokenizer=text_tokenizer, num_crops=4, seed=3, batch_size=4, cache_dir=str(tmp_path),
    ).with_format("numpy")
    assert set(out.column_names) == {"scene_id", "objects", "crop_settings", "tok_rgb@224", "tok_depth@224",
                                     "tok_normal@224", "tok_semseg@224", "rgb@224", "caption", "det"}
    processor = FourMImageProcessor(do_center_crop=False)
    flipped_seen = 0
    for i in range(len(dataset)):
        row, source = out[i], dataset[i]
        settings = row["crop_settings"]
        assert settings.shape == (4, 5) and settings[0].tolist() == [0, 8, 64, 64, 0]  # centre square, no flip
        for top, left, h, w, flip in settings[1:]:
            assert 0 <= top <= 64 - h and 0 <= left <= 80 - w and 0.78 <= h * w / (64 * 80) <= 1.0
            assert 0.72 <= w / h <= 1.4
        assert row["caption"].tolist() == text_tokenizer(source["caption"])["input_ids"] + [text_tokenizer.eos_token_id]
        arrays = {
            "tok_rgb@224": (np.asarray(source["rgb"]), lambda a: processor.preprocess_rgb(a, "tokenizer")),
            "tok_depth@224": (np.asarray(source["depth"], dtype=np.float32), processor.preprocess_depth),
            "tok_normal@224": (np.asarray(source["normal"], dtype=np.float32), processor.preprocess_normals),
            "tok_semseg@224": (np.asarray(source["semseg"], dtype=np.uint8), processor.preprocess_semseg),
        }
        for c, (top, left, h, w, flip) in enumerate(settings):
            for modality, (array, preprocess) in arrays.items():
                x = preprocess([array[top : top + h, left : left + w]])
                if flip:  # mirrored crop; normals also mirror their x component
                    x = x[..., ::-1].copy()
                    if modality == "tok_normal@224":
                        x[:, 0] *= -1
                expected = tokenizer.encode(torch.from_numpy(x)).reshape(-1).numpy()
                np.testing.assert_array_equal(row[modality][c], expected, err_msg=f"{modality} crop {c}")
            pixels = np.asarray(source["rgb"])[top : top + h, left : left + w]
            expected = np.asarray(processor.preprocess_rgb([pixels], "imagenet"))[0].transpose(1, 2, 0)
            got = (row["rgb@224"][c] / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
            np.testing.assert_allclose(got[:, ::-1] if flip else got, expected, atol=0.02)
            flipped_seen += int(flip)
            # boxes: clipped to the crop, renormalised, mirrored with it, sorted by distance to the origin
            boxes = []
            for instance in source["det"]["instances"]:
                x0, y0, x1, y1 = instance["boxes"]
                x0, x1 = (np.clip((v * 80 - left) / w, 0, 1) for v in (x0, x1))
                y0, y1 = (np.clip((v * 64 - top) / h, 0, 1) for v in (y0, y1))
                if x1 > x0 and y1 > y0:
                    boxes.append((1 - x1, y0, 1 - x0, y1) if flip else (x0, y0, x1, y1))
            boxes.sort(key=lambda b: b[0] ** 2 + b[1] ** 2)
            decoded, labels = text_to_boxes(text_tokenizer.decode(row["det"][c]))
            assert row["det"][c][-1] == text_tokenizer.eos_token_id and len(labels) == len(boxes)
            np.testing.assert_allclose(decoded, np.array(boxes).reshape(-1, 4), atol=1 / 999 + 1e-6)
    assert flipped_seen > 0


def test_fixed_shape_array_columns_are_read_from_arrow_as_arrays(scenes, tmp_path, monkeypatch):
    """depth, normal and semseg (Array2D / Array3D columns) reach the map function as one array per batch read from
    Arrow, not as nested lists; the rows equal those of the nested-list path."""
    dataset, text_tokenizer, _ = scenes
    read, arrow_arrays = [], pretokenization._arrow_arrays

    def recorded(batch, column):
        arrays = arrow_arrays(batch, column)
        read.append((column, None if arrays is None else (arrays.shape, arrays.dtype.name)))
        return arrays

    options = {"text_columns": [TextColumn("det", "det")], "text_tokenizer": text_tokenizer, "num_crops": 2,
               "seed": 1, "batch_size": 4, "num_shards": 2}  # fmt: skip
    monkeypatch.setattr(pretokenization, "_arrow_arrays", recorded)
    fast = pretokenize(dataset, scene_columns(PatchMeanTokenizer()), cache_dir=str(tmp_path / "a"), **options)
    assert sorted(set(read)) == [
        ("depth", ((3, 64, 80), "float32")), ("normal", ((3, 64, 80, 3), "float32")),
        ("semseg", ((3, 64, 80), "uint8")),
    ]  # fmt: skip
    monkeypatch.setattr(pretokenization, "_arrow_arrays", lambda batch, column: None)
    lists = pretokenize(dataset, scene_columns(PatchMeanTokenizer()), cache_dir=str(tmp_path / "b"), **options)
    assert fast.to_dict() == lists.to_dict()


def test_pretokenization_resumes_from_finished_shards(scenes, tmp_path):
    dataset, text_tokenizer, _ = scenes
    columns = lambda tokenizer: [ImageColumn("depth", "tok_depth@224", tokenizer)]  # noqa: E731
    options = {"num_crops": 2, "batch_size": 1, "num_shards": 3, "fingerprint": "scenes-depth-v1"}
    calls = []
    with pytest.raises(RuntimeError, match="tokenizer crashed"):  # dies in the second shard
        pretokenize(dataset, columns(PatchMeanTokenizer(calls=calls, fail_after=3)), cache_dir=str(tmp_path / "a"),
                    **options)
    assert calls == [2, 2, 2]  # shard 1 (rows 0, 1) done, row 2 of shard 2 encoded, then the crash
    calls.clear()
    resumed = pretokenize(dataset, columns(PatchMeanTokenizer(calls=calls)), cache_dir=str(tmp_path / "a"), **options)
    assert calls == [2, 2, 2, 2]  # shards 2 and 3 only
    straight = pretokenize(dataset, columns(PatchMeanTokenizer()), cache_dir=str(tmp_path / "b"), **options)
    assert resumed["tok_depth@224"] == straight["tok_depth@224"]
    assert resumed["crop_settings"] == straight["crop_settings"]
    calls.clear()
    pretokenize(dataset, columns(PatchMeanTokenizer(calls=calls)), cache_dir=str(tmp_path / "a"), **options)
    assert calls == []  # everything cached


def test_pretokenized_scenes_train_through_the_collator(scenes, tmp_path):
    dataset, text_tokenizer, _ = scenes
    out = pretokenize(
        dataset, scene_columns(PatchMeanTokenizer()), [TextColumn("caption", "caption"), TextColumn("det", "det")],
        text_tokenizer=text_tokenizer, num_crops=2, cache_dir=str(tmp_path),
    ).with_format("numpy")
    names = ["rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "caption", "det"]
    mixture = MaskingMixture.from_dict({
        "input_tokens": 64, "target_tokens": 64,
        "alphas_mixture": {m: {"input_alphas": [1.0], "target_alphas": [0.0 if m == "rgb@224" else 1.0]} for m in names},
    })
    collator = FourMMaskingCollator.from_tokenizer(mixture, text_tokenizer, seed=0)
    batch = collator([out[i] for i in range(len(out))])
    det = batch["modalities"]["det"]
    assert int((~det["input_mask"]).sum() + (~det["target_mask"]).sum()) > 0
    config = FourMConfig(hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
                         encoder_modalities=names, decoder_modalities=names[1:])
    loss = FourMForMaskedModeling(config)(**batch).loss
    assert torch.isfinite(loss)


def test_crop_settings_and_pretokenization_errors(scenes):
    dataset, text_tokenizer, _ = scenes
    rng = np.random.default_rng(0)
    settings = crop_settings(rng, 100, 60, 50, min_scale=0.5)
    assert settings[0].tolist() == [20, 0, 60, 60, 0]
    areas = settings[1:, 2] * settings[1:, 3] / 6000
    assert areas.min() >= 0.48 and areas.max() <= 1.0 and 0 < settings[1:, 4].sum() < 49
    tokenizer = PatchMeanTokenizer()
    with pytest.raises(ValueError, match=r"Columns \['nope'\] are not in the dataset"):
        pretokenize(dataset, [ImageColumn("nope", "tok_rgb@224", tokenizer)])
    with pytest.raises(ValueError, match="caption: an image column makes a pixel or image-token modality, not sequence"):
        ImageColumn("rgb", "caption", tokenizer)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        ImageColumn("rgb", "tok_rgb@224")
    with pytest.raises(ValueError, match="rgb@224: a pixels column needs no tokenizer"):
        ImageColumn("rgb", "rgb@224", tokenizer)
    with pytest.raises(ValueError, match=r"image_size=64, but the image columns' modalities have the resolutions"):
        pretokenize(dataset, [ImageColumn("rgb", "tok_rgb@224", tokenizer)], image_size=64)
    with pytest.raises(ValueError, match="det: a text column makes a sequence modality|tok_depth@224: a text column"):
        TextColumn("depth", "tok_depth@224")
    with pytest.raises(ValueError, match="Text columns need a `text_tokenizer`"):
        pretokenize(dataset, text_columns=[TextColumn("caption", "caption")])
    with pytest.raises(ValueError, match="tok_dinov2@224: the tokenizer gave 196 tokens per image, the modality has 256"):
        pretokenize(dataset, [ImageColumn("depth", "tok_dinov2@224", tokenizer, preprocess_as="tok_depth")])
    misaligned = dataset.select(range(2)).map(lambda row: {"semseg": np.zeros((32, 32), np.uint8)},
                                              features=None).cast_column("semseg", datasets.Array2D((32, 32), "uint8"))
    with pytest.raises(ValueError, match=re.escape("image columns differ in size")):
        pretokenize(misaligned, [ImageColumn("rgb", "tok_rgb@224", tokenizer),
                                 ImageColumn("semseg", "tok_semseg@224", tokenizer)])
