"""Task heads on the 4M encoder: outputs, losses, label checks, loading from official checkpoints, fine-tuning
options (freezing, layer decay, drop path, checkpointing, bf16), Trainer runs, LoRA and training/finetune.py."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import imported_script
from datasets import ClassLabel, Dataset, Features, Image
from safetensors.torch import load_file
from transformers import (
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    Trainer,
    TrainingArguments,
)
from transformers.modeling_outputs import DepthEstimatorOutput, ImageClassifierOutput, SemanticSegmenterOutput

from fourm_hf import (
    LORA_TARGET_MODULES,
    FourMConfig,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    layer_decay_param_groups,
    register_modality,
)
from fourm_hf.evaluation.metrics import argmax_logits_for_metrics, depth_compute_metrics, segmentation_compute_metrics
from fourm_hf.models.fourm.modeling_fourm_tasks import encoder_layer_id
from fourm_hf.conversion.official_fourm import rename_official_key

FINETUNE_SCRIPT = Path(__file__).resolve().parents[1] / "training" / "finetune.py"

# The pixel modality of examples/finetune_digits.py: 32x32 RGB, 8x8 patches (a 4x4 token grid).
register_modality("rgb@32", "pixels", num_channels=3, image_size=32, patch_size=8)
HEADS = (FourMForImageClassification, FourMForSemanticSegmentation, FourMForDepthEstimation)
NUM_CLASSES = 3
# Mean colour of each synthetic class (background, red, blue), in normalised pixel units.
CLASS_COLOURS = torch.tensor([[-1.0, -1.0, -1.0], [1.5, -0.5, -0.5], [-0.5, -0.5, 1.5]])


def make_config(**kwargs) -> FourMConfig:
    torch.manual_seed(0)
    defaults = {
        "hidden_size": 32,
        "num_encoder_layers": 2,
        "num_decoder_layers": 0,
        "num_attention_heads": 4,
        "encoder_modalities": ["rgb@32", "tok_depth@224"],
        "decoder_modalities": [],
        "num_labels": NUM_CLASSES,
        "head_hidden_size": 16,
    }
    return FourMConfig(**{**defaults, **kwargs})


def synthetic_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images made of 8x8 cells of random class; each class has its own colour plus noise. Returns
    (pixels (n, 3, 32, 32), class maps (n, 32, 32))."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, NUM_CLASSES, (n, 4, 4), generator=g)
    maps = cells.repeat_interleave(8, 1).repeat_interleave(8, 2)
    pixels = CLASS_COLOURS[maps].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    return pixels, maps


def labels_for(model, maps: torch.Tensor) -> torch.Tensor:
    if isinstance(model, FourMForImageClassification):
        return maps[:, 0, 0]
    if isinstance(model, FourMForSemanticSegmentation):
        return maps
    return 1.0 + 1.5 * maps.float()  # depth in [1, 4] per class


@pytest.fixture
def batch():
    return synthetic_scenes(2, seed=0)


@pytest.mark.parametrize("head", HEADS)
def test_outputs_and_backward(head, batch):
    model = head(make_config())
    pixels, maps = batch
    out = model(pixels, labels=labels_for(model, maps))
    expected_type, field, shape = {
        FourMForImageClassification: (ImageClassifierOutput, "logits", (2, NUM_CLASSES)),
        FourMForSemanticSegmentation: (SemanticSegmenterOutput, "logits", (2, NUM_CLASSES, 32, 32)),
        FourMForDepthEstimation: (DepthEstimatorOutput, "predicted_depth", (2, 32, 32)),
    }[head]
    assert isinstance(out, expected_type) and out[field].shape == shape
    assert next(iter(out.keys())) == "loss" and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.encoder.embeddings["rgb@32"].proj.weight.grad.abs().sum() > 0
    if head is FourMForDepthEstimation:
        assert (out.predicted_depth > 0).all()


def test_losses_match_independent_computation(batch):
    pixels, maps = batch
    classifier = FourMForImageClassification(make_config())
    labels = torch.tensor([2, 0])
    out = classifier(pixels, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))

    segmenter = FourMForSemanticSegmentation(make_config())
    seg_labels = maps.clone()
    seg_labels[:, :4] = 255  # ignored rows
    out = segmenter(pixels, labels=seg_labels)
    keep = seg_labels != 255
    log_probs = out.logits.log_softmax(1).permute(0, 2, 3, 1)[keep]
    torch.testing.assert_close(out.loss, -log_probs.gather(1, seg_labels[keep][:, None]).mean())

    depth = 1.0 + 1.5 * maps.float()
    depth[0, 0, :5] = 0.0  # missing depth
    depth[1, 3, 3] = float("nan")
    for loss_type in ("silog", "l1"):
        model = FourMForDepthEstimation(make_config(depth_loss=loss_type))
        out = model(pixels, labels=depth)
        valid = torch.isfinite(depth) & (depth > 0)
        pred, ref = out.predicted_depth[valid], depth[valid]
        if loss_type == "l1":
            expected = (pred - ref).abs().mean()
        else:
            d = pred.log() - ref.log()
            expected = torch.sqrt((d**2).mean() - 0.85 * d.mean() ** 2)
        torch.testing.assert_close(out.loss, expected)


def test_multi_label_and_regression_losses(batch):
    pixels, _ = batch
    model = FourMForImageClassification(make_config())
    multi_hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(pixels, labels=multi_hot)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, multi_hot))
    regressor = FourMForImageClassification(make_config(num_labels=1))
    targets = torch.tensor([0.5, -1.0])
    out = regressor(pixels, labels=targets)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits[:, 0], targets))


@pytest.mark.parametrize(
    "head, labels, message",
    [
        (FourMForImageClassification, torch.tensor([0, 5]), r"class ids in \[0, 2\], got values in \[0, 5\]"),
        (FourMForImageClassification, torch.tensor([[0], [1]]), r"shape \(batch,\) = \(2,\).*shape \(2, 1\)"),
        (
            FourMForImageClassification,
            torch.ones(2, 4),
            r"multi-label labels must have shape .* \(2, 3\), got \(2, 4\)",
        ),
        (
            FourMForSemanticSegmentation,
            torch.zeros(2, 16, 16, dtype=torch.long),
            r"\(2, 32, 32\), got torch.int64 of shape \(2, 16, 16\)",
        ),
        (
            FourMForSemanticSegmentation,
            torch.full((2, 32, 32), 7),
            r"class ids in \[0, 2\] or the ignore index 255, got values in \[7, 7\]",
        ),
        (FourMForSemanticSegmentation, torch.zeros(2, 32, 32), r"integer class maps"),
        (
            FourMForDepthEstimation,
            torch.ones(2, 32, 32, dtype=torch.long),
            r"floating-point depth maps .* got torch.int64",
        ),
        (
            FourMForDepthEstimation,
            torch.ones(2, 1, 32, 32),
            r"\(2, 32, 32\), got torch.float32 of shape \(2, 1, 32, 32\)",
        ),
    ],
)
def test_label_errors(head, labels, message, batch):
    with pytest.raises(ValueError, match=message):
        head(make_config())(batch[0], labels=labels)


def test_input_errors(batch):
    model = FourMForImageClassification(make_config())
    with pytest.raises(ValueError, match=r"\(2, 3, 64, 64\) match no pixel modality.*'rgb@32': \(3, 32, 32\)"):
        model(torch.zeros(2, 3, 64, 64))
    with pytest.raises(TypeError, match="rgb@32 expects floating-point pixels, got torch.uint8"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="pixel_values must be a torch.Tensor"):
        model(np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="do not repeat it"):
        model(batch[0], modalities={"rgb@32": {"tensor": batch[0]}})
    with pytest.raises(ValueError, match="keep all 16 patch tokens"):
        model(batch[0], num_encoder_tokens=8)
    with pytest.raises(ValueError, match="tok_depth@224 token ids must lie in"):
        model(batch[0], modalities={"tok_depth@224": {"tensor": torch.full((2, 196), 9000)}})
    with pytest.raises(ValueError, match="depth_loss must be one of"):
        FourMForDepthEstimation(make_config(depth_loss="l2"))


@pytest.mark.parametrize("head", [FourMForImageClassification, FourMForSemanticSegmentation])
def test_extra_modalities_condition_the_output(head, batch):
    model = head(make_config()).eval()
    pixels = batch[0]
    ids = torch.randint(0, 8192, (2, 196), generator=torch.Generator().manual_seed(1))
    hidden = torch.ones(2, 196, dtype=torch.bool)
    partly = hidden.clone()
    partly[:, :20] = False
    with torch.no_grad():
        alone = model(pixels).logits
        all_hidden = model(pixels, modalities={"tok_depth@224": {"tensor": ids, "input_mask": hidden}}).logits
        with_depth = model(pixels, modalities={"tok_depth@224": {"tensor": ids, "input_mask": partly}}).logits
    torch.testing.assert_close(all_hidden, alone)  # nothing visible: same as pixels alone
    assert (with_depth - alone).abs().max() > 1e-3


@pytest.mark.parametrize("case", ["fm_4m7_style", "fm_4m21_style"])
def test_official_checkpoint_fills_the_encoder_bit_for_bit(official_checkpoints, case):
    directory = official_checkpoints[case]
    official = load_file(str(directory / "model.safetensors"))
    model, info = FourMForSemanticSegmentation.from_pretrained(
        directory, num_labels=5, head_hidden_size=8, output_loading_info=True
    )
    state = model.state_dict()
    compared = set()
    for key, tensor in official.items():
        if not key.startswith("encoder"):
            continue
        ours = rename_official_key(key, model.config.gated_mlp)
        if ours not in state:  # bias-free LayerNorms store zero biases that the model does not have
            assert key.endswith(".bias") and "norm" in key and not tensor.any(), key
            continue
        assert torch.equal(state[ours], tensor.reshape(state[ours].shape)), key
        compared.add(ours)
    assert compared == {k for k in state if k.startswith("encoder.")}
    head_keys = {k for k in state if k.startswith("decode_head.")}
    assert set(info["missing_keys"]) == head_keys and not info["unexpected_keys"]
    assert model.config.num_labels == 5 and model.decode_head.out.weight.shape == (5, 8, 1, 1)
    for key in head_keys:  # freshly initialised, not leftover memory
        assert torch.isfinite(state[key]).all() and state[key].abs().max() < 10
    out = model(torch.randn(1, 3, 224, 224))
    assert out.logits.shape == (1, 5, 224, 224)

    # a bare official .safetensors file (config in its metadata) works too
    classifier = FourMForImageClassification.from_pretrained(directory / "model.safetensors", num_labels=7)
    assert classifier.classifier.out_features == 7
    for key, value in classifier.encoder.state_dict().items():
        assert torch.equal(value, state[f"encoder.{key}"]), key


def test_native_round_trip_and_auto_classes(tmp_path, batch):
    config = make_config()
    assert type(AutoModelForImageClassification.from_config(config)) is FourMForImageClassification
    full = FourMForMaskedModeling(make_config(decoder_modalities=["tok_depth@224"], num_decoder_layers=1))
    full.save_pretrained(tmp_path / "full")
    depth = FourMForDepthEstimation.from_pretrained(tmp_path / "full", head_hidden_size=8)
    for key, value in full.encoder.state_dict().items():
        assert torch.equal(depth.encoder.state_dict()[key], value), key
    assert depth.head.proj.out_channels == 8

    depth.save_pretrained(tmp_path / "depth")
    reloaded = AutoModelForDepthEstimation.from_pretrained(tmp_path / "depth")
    assert type(reloaded) is FourMForDepthEstimation and reloaded.config.head_hidden_size == 8
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch[0]).predicted_depth, depth(batch[0]).predicted_depth, rtol=0, atol=0)

    segmenter = FourMForSemanticSegmentation(config)
    segmenter.save_pretrained(tmp_path / "seg")
    assert type(AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "seg")) is FourMForSemanticSegmentation
    labels = {0: "sky", 1: "road", 2: "car", 3: "tree"}
    relabelled = FourMForSemanticSegmentation.from_pretrained(
        tmp_path / "seg", id2label=labels, ignore_mismatched_sizes=True
    )
    assert relabelled.config.label2id == {"sky": 0, "road": 1, "car": 2, "tree": 3}
    assert relabelled.decode_head.out.out_channels == 4


def test_freeze_encoder_trains_the_head_only(batch):
    model = FourMForSemanticSegmentation(make_config())
    model.freeze_encoder()
    model(batch[0], labels=batch[1]).loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decode_head.parameters())
    model.freeze_encoder(False)
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_layer_decay_param_groups():
    model = FourMForImageClassification(make_config())  # 2 layers: depths 0 (embeddings), 1, 2, 3 (norm, head)
    groups = layer_decay_param_groups(model, learning_rate=1.0, weight_decay=0.1, layer_decay=0.5)
    lr_of, decay_of = {}, {}
    for group in groups:
        for p in group["params"]:
            lr_of[id(p)], decay_of[id(p)] = group["lr"], group["weight_decay"]
    names = dict(model.named_parameters())
    assert set(lr_of) == {id(p) for p in names.values()}  # every parameter exactly once
    expected_lr = {
        "encoder.embeddings.rgb@32.proj.weight": 0.125,
        "encoder.embeddings.rgb@32.mod_emb": 0.125,
        "encoder.layers.0.self_attn.qkv.weight": 0.25,
        "encoder.layers.1.mlp.down_proj.weight": 0.5,
        "encoder.norm.weight": 1.0,
        "classifier.weight": 1.0,
    }
    for name, lr in expected_lr.items():
        assert lr_of[id(names[name])] == lr, name
    assert decay_of[id(names["encoder.layers.0.self_attn.qkv.weight"])] == 0.1
    for name in ("encoder.embeddings.rgb@32.mod_emb", "encoder.layers.0.norm1.weight", "classifier.bias"):
        assert decay_of[id(names[name])] == 0.0, name
    assert encoder_layer_id("base_model.model.encoder.layers.1.self_attn.qkv.lora_A.default.weight", 2) == 2

    model.freeze_encoder()
    frozen_groups = layer_decay_param_groups(model, 1.0)
    assert {id(p) for g in frozen_groups for p in g["params"]} == {id(p) for p in model.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="layer_decay must be in"):
        layer_decay_param_groups(model, 1.0, layer_decay=1.5)


def test_layer_decay_through_trainer(tmp_path):
    model = FourMForImageClassification(make_config())
    groups = layer_decay_param_groups(model, learning_rate=1e-3, layer_decay=0.5)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, learning_rate=5.0)
    trainer = Trainer(model=model, args=args, optimizer_cls_and_kwargs=(torch.optim.AdamW, {"params": groups}))
    optimizer = trainer.create_optimizer()
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [1.25e-4, 2.5e-4, 5e-4, 1e-3]


def test_drop_path_override_is_stochastic_in_training_only(tmp_path, batch):
    FourMForImageClassification(make_config()).save_pretrained(tmp_path)
    model = FourMForImageClassification.from_pretrained(tmp_path, encoder_drop_path_rate=0.5)
    assert [layer.drop_path.rate for layer in model.encoder.layers] == [0.0, 0.5]
    model.train()
    torch.manual_seed(0)
    outputs = [model(batch[0].repeat(8, 1, 1, 1)).logits for _ in range(2)]
    assert not torch.allclose(outputs[0], outputs[1])
    model.eval()
    torch.testing.assert_close(model(batch[0]).logits, model(batch[0]).logits, rtol=0, atol=0)


def test_gradient_checkpointing_gives_the_same_gradients(batch):
    model = FourMForSemanticSegmentation(make_config(encoder_modalities=["rgb@32"]))
    model.train()
    model(batch[0], labels=batch[1]).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.encoder.layers)
    model(batch[0], labels=batch[1]).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, reference[name], msg=name)


def test_bf16(batch):
    model = FourMForSemanticSegmentation(make_config()).to(torch.bfloat16)
    out = model(batch[0], labels=batch[1])  # float32 pixels are cast to the model's dtype
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    classifier = FourMForImageClassification(make_config())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = classifier(batch[0], labels=torch.tensor([0, 1]))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


@pytest.mark.parametrize("head", [FourMForSemanticSegmentation, FourMForDepthEstimation])
def test_dense_heads_train_with_trainer(head, tmp_path):
    """100 steps on 64 synthetic scenes: segmentation loss falls at least 5x (mIoU above 0.8), depth loss at
    least 2.5x (delta1 above 0.6)."""
    model = head(make_config(encoder_modalities=["rgb@32"]))
    pixels, maps = synthetic_scenes(64, seed=0)
    dataset = Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": labels_for(model, maps).numpy()})
    if head is FourMForSemanticSegmentation:
        metrics = {
            "compute_metrics": segmentation_compute_metrics(NUM_CLASSES),
            "preprocess_logits_for_metrics": argmax_logits_for_metrics,
        }
    else:
        metrics = {"compute_metrics": depth_compute_metrics}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=100,
        learning_rate=1e-2,
        per_device_train_batch_size=16,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    dataset = dataset.with_format("torch")
    trainer = Trainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, **metrics)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    if head is FourMForSemanticSegmentation:
        assert after["eval_loss"] < before["eval_loss"] / 5
        assert after["eval_mean_iou"] > 0.8 > before["eval_mean_iou"]
    else:
        assert after["eval_loss"] < before["eval_loss"] / 2.5
        assert after["eval_delta1"] > 0.6 > before["eval_delta1"]


def test_lora_wraps_and_trains_only_adapters_and_head(batch):
    peft = pytest.importorskip("peft")
    model = FourMForImageClassification(make_config(encoder_modalities=["rgb@32"]))
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES, modules_to_save=list(model.head_module_names)
    )
    wrapped = peft.get_peft_model(model, lora)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or ("modules_to_save" in n) for n in trainable)
    adapted = {n.split(".lora_")[0] for n in trainable if "lora_" in n}
    assert any(n.endswith("self_attn.qkv") for n in adapted) and any(n.endswith("mlp.down_proj") for n in adapted)
    assert not any("embeddings" in n for n in adapted)  # the patch projection named `proj` is left alone

    before = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    optimizer = torch.optim.AdamW(layer_decay_param_groups(wrapped, 1e-2), lr=1e-2)
    labels = torch.tensor([1, 2])
    losses = []
    for _ in range(5):
        loss = wrapped(pixel_values=batch[0], labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, parameter in wrapped.named_parameters():
        changed = not torch.equal(parameter, before[name])
        if name in trainable and "lora_B" in name:
            assert changed, name  # lora_B starts at zero and must have moved
        if name not in trainable:
            assert not changed, name


def _run_finetune(task: str, tmp_path: Path, extra_args: list[str]) -> dict:
    """training/finetune.py on 8 synthetic images saved with `save_to_disk` and a tiny native 4M checkpoint."""
    pixels, maps = synthetic_scenes(8, seed=1)
    images = [(p.permute(1, 2, 0).clamp(-2, 2).add(2).mul(60)).byte().numpy() for p in pixels]
    if task == "image-classification":
        label_feature, labels = ClassLabel(names=["bg", "red", "blue"]), maps[:, 0, 0].tolist()
    elif task == "semantic-segmentation":
        label_feature, labels = Image(), [m.byte().numpy() for m in maps]
    else:  # depth in millimetres, as NYUv2 PNGs store it
        label_feature, labels = Image(), [(1000 + 1500 * m).to(torch.int32).numpy() for m in maps]
    features = Features({"image": Image(), "label": label_feature})
    Dataset.from_dict({"image": images, "label": labels}, features=features).save_to_disk(tmp_path / "data")
    config = make_config(encoder_modalities=["rgb@32"], decoder_modalities=["tok_depth@224"], num_decoder_layers=1)
    FourMForMaskedModeling(config).save_pretrained(tmp_path / "model")
    args = [
        "--model_name_or_path",
        str(tmp_path / "model"),
        "--task",
        task,
        "--dataset_name",
        str(tmp_path / "data"),
        "--output_dir",
        str(tmp_path / "out"),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--train_val_split",
        "0.25",
        "--use_cpu",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
    ]
    with imported_script(FINETUNE_SCRIPT, "fourm_finetune_script") as module:
        return module.main(args + extra_args)


@pytest.mark.parametrize(
    "task, extra_args, metric",
    [
        ("image-classification", ["--layer_decay", "0.75", "--drop_path_rate", "0.1"], "eval_accuracy"),
        # class 0 becomes ignored; classes 1, 2 -> 0, 1
        ("semantic-segmentation", ["--do_reduce_labels", "--num_labels", "2", "--freeze_encoder"], "eval_mean_iou"),
        ("depth-estimation", ["--depth_scale", "1000", "--bf16", "--activation_checkpointing"], "eval_delta1"),
    ],
)
def test_finetune_script(task, extra_args, metric, tmp_path):
    metrics = _run_finetune(task, tmp_path, extra_args + ["--head_hidden_size", "8"])
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["eval_loss"])
    assert 0.0 <= metrics[metric] <= 1.0
    saved = FourMConfig.from_pretrained(tmp_path / "out")
    assert saved.head_hidden_size == 8
    if task == "image-classification":
        assert saved.encoder_drop_path_rate == 0.1 and saved.id2label == {0: "bg", 1: "red", 2: "blue"}
    if task == "semantic-segmentation":
        assert saved.num_labels == 2
        # the encoder was frozen: its saved weights are those of the starting checkpoint
        start = load_file(str(tmp_path / "model" / "model.safetensors"))
        end = load_file(str(tmp_path / "out" / "model.safetensors"))
        assert all(torch.equal(end[k], start[k]) for k in end if k.startswith("encoder."))


def test_finetune_script_with_lora(tmp_path):
    pytest.importorskip("peft")
    metrics = _run_finetune("image-classification", tmp_path, ["--lora_r", "4", "--layer_decay", "0.75"])
    assert math.isfinite(metrics["train_loss"]) and 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert (tmp_path / "out" / "adapter_config.json").exists()
