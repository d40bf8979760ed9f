"""training/train_vq_model.py: Trainer runs of tiny VQ-VAE / DiVAE / class-id tokenizers on an in-memory image
dataset, plus its data transform, multi-resolution collator and weight-EMA callback."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import imported_script
from PIL import Image

from fourm_hf import FourMDiVAE, FourMVQVAE, load_vq_model

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_vq_model.py"
TINY_VIT = dict(
    image_size=32, patch_size=8, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, codebook_size=16,
    latent_dim=8,
)


@pytest.fixture(scope="module")
def script():
    with imported_script(SCRIPT, "train_vq_model") as module:
        yield module


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory) -> Path:
    """Eight 40x36 RGB images (colour gradients) and a label-map column, saved with save_to_disk."""
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(8):
        ramp = np.linspace(0, 255, 40, dtype=np.float32)[None, :, None]
        colour = rng.uniform(0, 1, size=(1, 1, 3))
        images.append(Image.fromarray((np.broadcast_to(ramp, (36, 40, 3)) * colour).astype(np.uint8)))
        label = np.full((36, 40), 255, dtype=np.uint8)
        label[:, : 10 + 2 * i] = i % 4
        labels.append(Image.fromarray(label))
    dataset = Dataset.from_dict(
        {"picture": images, "mask": labels}, features=Features({"picture": ImageFeature(), "mask": ImageFeature()})
    )
    path = tmp_path_factory.mktemp("images") / "dataset"
    dataset.save_to_disk(str(path))
    return path


def _run(script, tmp_path, dataset, config: dict, *extra: str):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    argv = [
        "--dataset", str(dataset), "--config", str(config_file), "--output_dir", str(tmp_path / "out"),
        "--per_device_train_batch_size", "4", "--save_strategy", "no", "--logging_steps", "1", "--use_cpu",
        "--dataloader_num_workers", "0", "--seed", "0", *extra,
    ]
    return script.main(argv)


def test_vqvae_training_reduces_the_loss_and_saves_a_loadable_tokenizer(script, image_dataset, tmp_path):
    config = {**TINY_VIT, "decoder_hidden_size": 32, "decoder_num_layers": 1, "decoder_num_heads": 2, "post_mlp": True}
    trainer = _run(
        script, tmp_path, image_dataset, config, "--image_column", "picture", "--model", "vqvae",
        "--min_size", "16", "--max_size", "32", "--size_step", "16", "--max_steps", "30", "--learning_rate", "3e-3",
        "--warmup_steps", "2",
    )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    model = trainer.model
    # the dead-code threshold follows the official formula: batch 4 x 9 tokens (24 px) / 16 codes / 32
    assert model.config.dead_code_threshold == pytest.approx(4 * 9 / 16 / 32)
    assert model.quantize.cluster_size.sum() > 0  # usage EMA was updated by the training forwards
    reloaded = load_vq_model(tmp_path / "out")
    assert isinstance(reloaded, FourMVQVAE)
    torch.testing.assert_close(reloaded.quantize.codebook, model.quantize.codebook.cpu())
    assert reloaded.encode(torch.rand(1, 3, 32, 32) * 2 - 1).shape == (1, 4, 4)


def test_divae_training_runs_and_saves(script, image_dataset, tmp_path):
    config = {
        **TINY_VIT, "unet_channels": 16, "unet_channel_mult": [1, 2], "unet_num_res_blocks": 1,
        "unet_attention_resolutions": [2], "unet_norm_groups": 8,
    }
    trainer = _run(
        script, tmp_path, image_dataset, config, "--image_column", "picture", "--model", "divae",
        "--min_size", "32", "--max_size", "32", "--max_steps", "3", "--weight_ema_decay", "0.9",
    )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(np.isfinite(losses))
    reloaded = load_vq_model(tmp_path / "out")
    assert isinstance(reloaded, FourMDiVAE)
    assert reloaded.decode(torch.zeros(1, 4, 4, dtype=torch.long), num_steps=1).shape == (1, 3, 32, 32)


def test_class_id_training(script, image_dataset, tmp_path):
    config = {
        **TINY_VIT, "num_classes": 5, "num_channels": 4, "reconstruction_loss": "cross_entropy",
        "decoder_hidden_size": 32, "decoder_num_layers": 1, "decoder_num_heads": 2,
    }
    trainer = _run(
        script, tmp_path, image_dataset, config, "--image_column", "mask", "--input_kind", "class_ids",
        "--label_offset", "1", "--min_size", "32", "--max_size", "32", "--max_steps", "2",
    )
    assert trainer.state.global_step == 2
    with pytest.raises(ValueError, match="--input_kind class_ids needs a tokenizer with num_classes"):
        _run(script, tmp_path, image_dataset, config, "--image_column", "mask", "--max_steps", "1")


def test_transform_and_collator(script):
    labels = np.full((20, 30), 255, dtype=np.uint8)
    labels[:, :15] = 4
    transform = script.ImageTransform("x", 16, num_channels=0, input_kind="class_ids", label_offset=1)
    ids = transform({"x": [Image.fromarray(labels)]})["pixel_values"][0]
    assert ids.shape == (16, 16) and ids.dtype == torch.long
    assert set(ids.unique().tolist()) == {0, 5}  # 255 wraps to the void class 0, 4 -> 5

    image = Image.fromarray(np.full((10, 20, 3), 255, dtype=np.uint8))
    pixels = script.ImageTransform("x", 8, num_channels=3, input_kind="image")({"x": [image]})["pixel_values"][0]
    assert pixels.shape == (3, 8, 8) and torch.all(pixels == 1.0)

    collator = script.MultiResolutionCollator([8, 16], seed=0)
    sizes = {collator([{"pixel_values": torch.rand(3, 16, 16)}] * 2)["pixel_values"].shape[-1] for _ in range(20)}
    assert sizes == {8, 16}
    batch = collator([{"pixel_values": ids}, {"pixel_values": ids}])["pixel_values"]
    assert batch.dtype == torch.long and set(batch.unique().tolist()) <= {0, 5}


def test_weight_ema_callback(script):
    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(layer.weight, 1.0)
    callback = script.WeightEMACallback(decay=0.5)
    callback.on_train_begin(None, None, None, model=layer)
    for value in (3.0, 5.0):
        torch.nn.init.constant_(layer.weight, value)
        callback.on_step_end(None, None, None, model=layer)
    callback.on_train_end(None, None, None, model=layer)
    assert layer.weight.item() == pytest.approx(0.5 * (0.5 * 1.0 + 0.5 * 3.0) + 0.5 * 5.0)
