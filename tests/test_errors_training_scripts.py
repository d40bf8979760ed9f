"""Bad arguments to the training scripts (pretrain, finetune, train_vq_model) and the demo: each is refused with an
error naming the flag, before any model or dataset is loaded (or, for dataset columns, right after the dataset is)."""

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import imported_script

from training.pretrain import FourMPretrainingArguments, run_pretraining

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finetune():
    with imported_script(ROOT / "training" / "finetune.py", "finetune_errors_script") as module:
        yield module


@pytest.fixture(scope="module")
def train_vq_model():
    with imported_script(ROOT / "training" / "train_vq_model.py", "train_vq_model_errors_script") as module:
        yield module


@pytest.fixture(scope="module")
def demo():
    with imported_script(ROOT / "examples" / "demo.py", "demo_errors_script") as module:
        yield module


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four 32x32 images with class labels, saved with save_to_disk."""
    path = tmp_path_factory.mktemp("images") / "dataset"
    pictures = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    datasets.Dataset.from_dict({"image": pictures, "label": [0, 1, 0, 1]}, features=features).save_to_disk(str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------------
# training/pretrain.py


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"base_learning_rate": 0.0}, ValueError, "--base_learning_rate must be > 0, got 0.0"),
        ({"base_learning_rate": -1e-4}, ValueError, "--base_learning_rate must be > 0"),
        ({"base_learning_rate": float("nan")}, ValueError, "--base_learning_rate must be a finite number"),
        ({"min_base_learning_rate": 1.0}, ValueError, r"--min_base_learning_rate must be in \[0, 0.0001\], got 1.0"),
        ({"total_tokens": 0}, ValueError, "--total_tokens must be > 0, got 0"),
        ({"warmup_tokens": -1}, ValueError, "--warmup_tokens must be >= 0, got -1"),
        ({"warmup_tokens": 2e6, "total_tokens": 1e6}, ValueError,
         r"warmup_tokens \(2e\+06\) must be less than total_tokens"),
        ({"per_device_train_batch_size": 0}, ValueError, "--per_device_train_batch_size must be >= 1, got 0"),
        ({"gradient_accumulation_steps": 0}, ValueError, "--gradient_accumulation_steps must be >= 1, got 0"),
        ({"weight_decay": -0.05}, ValueError, "--weight_decay must be >= 0"),
        ({"masking_seed": -3}, ValueError, "--masking_seed must be >= 0, got -3"),
        ({"input_tokens": "abc"}, ValueError,
         r"--input_tokens must be 'n' or 'min,max' with positive integers, got 'abc'"),
        ({"target_tokens": "64,32"}, ValueError, "--target_tokens: min must not exceed max, got '64,32'"),
        ({"input_tokens": "0"}, ValueError, "--input_tokens must be 'n' or 'min,max'"),
        ({"input_tokens": "1,2,3"}, ValueError, "--input_tokens must be 'n' or 'min,max'"),
        ({"mixture": "4m7_all2all_rgb2al"}, ValueError, "No mixture preset or file '4m7_all2all_rgb2al'"),
        ({"train_dataset": "/nonexistent/pretokenized"}, FileNotFoundError,
         "--train_dataset '/nonexistent/pretokenized' is not a directory"),
        ({"config_name": "./configs/fourm.json"}, FileNotFoundError,
         "--config_name './configs/fourm.json': no such FourMConfig file or directory"),
        ({"text_tokenizer": "~/no-tokenizer"}, FileNotFoundError, "--text_tokenizer '~/no-tokenizer': no such"),
        ({"model_name_or_path": "/no/checkpoint"}, FileNotFoundError, "--model_name_or_path '/no/checkpoint': no such"),
        ({"model_name_or_path": "owner/model", "config_name": "owner/config"}, ValueError,
         "Give --model_name_or_path .* or --config_name .*, not both"),
    ],
)  # fmt: skip
def test_pretrain_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMPretrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, **kwargs)


def test_pretrain_dataset_checks(tmp_path):
    args = FourMPretrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, input_tokens="8", target_tokens="8",
        total_tokens=1e4, warmup_tokens=0,
    )  # fmt: skip
    rows = datasets.Dataset.from_dict({"rgb@224": [[0]], "tok_dpeth@224": [[0]]})
    with pytest.raises(
        ValueError, match=r"The mixture '4m7_all2all_rgb2all' masks \[.*\], which the dataset has no column"
    ):
        run_pretraining(args, train_dataset=rows)
    with pytest.raises(ValueError, match="The training dataset has no rows"):
        run_pretraining(args, train_dataset=rows.select([]))
    with pytest.raises(
        ValueError, match=r"--train_dataset holds the splits \['train'\]; give the directory of one split"
    ):
        run_pretraining(args, train_dataset=datasets.DatasetDict({"train": rows}))


# ---------------------------------------------------------------------------------------------------------------------
# training/finetune.py


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (
            ["--task", "image-clasification"],
            ValueError,
            r"--task must be one of .*Did you mean 'image-classification'\?",
        ),
        (["--task", "detection"], ValueError, r"--task must be one of \['depth-estimation', 'image-classification'"),
        (["--layer_decay", "0"], ValueError, r"--layer_decay must be in \(0, 1\], got 0.0"),
        (["--layer_decay", "1.5"], ValueError, r"--layer_decay must be in \(0, 1\]"),
        (["--drop_path_rate", "1"], ValueError, r"--drop_path_rate must be in \[0, 1\), got 1.0"),
        (["--head_hidden_size", "0"], ValueError, "--head_hidden_size must be >= 1, got 0"),
        (["--num_labels", "-2"], ValueError, "--num_labels must be >= 1, got -2"),
        (["--lora_r", "-1"], ValueError, "--lora_r must be >= 0, got -1"),
        (["--lora_alpha", "0"], ValueError, "--lora_alpha must be > 0"),
        (["--lora_dropout", "1.0"], ValueError, r"--lora_dropout must be in \[0, 1\)"),
        (["--train_val_split", "0"], ValueError, r"--train_val_split must be in \(0, 1\), got 0.0"),
        (["--train_val_split", "1"], ValueError, r"--train_val_split must be in \(0, 1\)"),
        (["--max_train_samples", "0"], ValueError, "--max_train_samples must be >= 1, got 0"),
        (["--image_size", "-32"], ValueError, "--image_size must be >= 1, got -32"),
        (["--depth_scale", "0"], ValueError, "--depth_scale must be > 0"),
        (["--learning_rate", "-0.001"], ValueError, "--learning_rate must be > 0, got -0.001"),
        (["--learning_rate", "0"], ValueError, "--learning_rate must be > 0, got 0.0"),
        (["--per_device_train_batch_size", "0"], ValueError, "--per_device_train_batch_size must be >= 1, got 0"),
        (["--max_steps", "0"], ValueError, r"--max_steps must be a positive number of steps \(or -1"),
        (["--num_train_epochs", "0"], ValueError, "--num_train_epochs must be > 0"),
        (
            ["--image_column_name", "img"],
            ValueError,
            r"--image_column_name 'img' is not a column of the train split; it has \['image', 'label'\]",
        ),
        (["--label_column_name", "lable"], ValueError, r"--label_column_name 'lable' .*Did you mean 'label'\?"),
        (["--label_column_name", "image"], ValueError,
         r"--label_column_name 'image' holds Image\(.*\); image-classification needs class ids"),
        (["--task", "semantic-segmentation"], ValueError,
         r"--label_column_name 'label' holds ClassLabel\(.*\); semantic-segmentation needs label maps"),
    ],
)
def test_finetune_arguments(finetune, images, tmp_path, extra, error, message):
    argv = ["--model_name_or_path", "owner/never-loaded", "--dataset_name", str(images),
            "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu", *extra]  # fmt: skip
    with pytest.raises(error, match=message):
        finetune.main(argv)


def test_finetune_missing_paths(finetune, images, tmp_path):
    argv = ["--model_name_or_path", "m", "--dataset_name", str(tmp_path / "missing"), "--output_dir", str(tmp_path)]
    with pytest.raises(FileNotFoundError, match=r"--dataset_name '.*missing': no such local dataset directory"):
        finetune.main(argv)
    argv = ["--model_name_or_path", "./no/model", "--dataset_name", str(images), "--output_dir", str(tmp_path)]
    with pytest.raises(FileNotFoundError, match=r"--model_name_or_path './no/model': no such checkpoint directory"):
        finetune.main(argv)


# ---------------------------------------------------------------------------------------------------------------------
# training/train_vq_model.py

TINY_VQ = dict(
    image_size=32,
    patch_size=8,
    encoder_hidden_size=32,
    encoder_num_layers=1,
    encoder_num_heads=2,
    codebook_size=16,
    latent_dim=8,
)


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["--model", "vqgan"], ValueError, r"--model must be one of \['divae', 'vqvae'\], got 'vqgan'"),
        (["--model", "vq_vae"], ValueError, r"Did you mean 'vqvae'\?"),
        (["--input_kind", "class_id"], ValueError, r"--input_kind must be one of .*Did you mean 'class_ids'\?"),
        (["--min_size", "0"], ValueError, "--min_size must be >= 1, got 0"),
        (["--size_step", "0"], ValueError, "--size_step must be >= 1, got 0"),
        (["--min_size", "64", "--max_size", "32"], ValueError, r"--min_size \(64\) must not exceed --max_size \(32\)"),
        (["--label_offset", "-1"], ValueError, r"--label_offset must be in \[0, 255\], got -1"),
        (["--coef_ema_dead_code", "0"], ValueError, "--coef_ema_dead_code must be > 0"),
        (["--weight_ema_decay", "1"], ValueError, r"--weight_ema_decay must be in \[0, 1\), got 1.0"),
        (["--max_train_samples", "0"], ValueError, "--max_train_samples must be >= 1"),
        (["--learning_rate", "-1"], ValueError, "--learning_rate must be > 0"),
        (["--per_device_train_batch_size", "0"], ValueError, "--per_device_train_batch_size must be >= 1"),
        (["--max_steps", "-7"], ValueError, "--max_steps must be a positive number of steps"),
        (
            ["--min_size", "24", "--max_size", "40", "--size_step", "8"],
            ValueError,
            r"Training resolutions \[24, 40\] are not multiples of the model's patch size 16",
        ),
        (["--image_column", "imag"], ValueError, r"No column 'imag' in the dataset; .*Did you mean 'image'\?"),
    ],
)
def test_train_vq_model_arguments(train_vq_model, images, tmp_path, extra, error, message):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY_VQ, "patch_size": 16}))
    argv = ["--dataset", str(images), "--config", str(config), "--output_dir", str(tmp_path / "out"),
            "--min_size", "32", "--max_size", "32", "--report_to", "none", "--use_cpu", *extra]  # fmt: skip
    with pytest.raises(error, match=message):
        train_vq_model.main(argv)


def test_train_vq_model_files(train_vq_model, images, tmp_path):
    base = ["--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu"]
    with pytest.raises(FileNotFoundError, match=r"--config '.*nope.json': no such JSON file"):
        train_vq_model.main(["--dataset", str(images), "--config", str(tmp_path / "nope.json"), *base])
    with pytest.raises(FileNotFoundError, match=r"--dataset 'imagefolder:/nonexistent': no such image folder"):
        train_vq_model.main(["--dataset", "imagefolder:/nonexistent", *base])
    with pytest.raises(FileNotFoundError, match=r"--dataset '\./nowhere': no such dataset directory"):
        train_vq_model.main(["--dataset", "./nowhere", *base])
    with pytest.raises(FileNotFoundError, match=r"--init_from '/no/vq': no such VQ model directory or checkpoint"):
        train_vq_model.main(["--dataset", str(images), "--init_from", "/no/vq", *base])
    broken = tmp_path / "broken.json"
    broken.write_text("{patch_size: 8")
    with pytest.raises(ValueError, match=r"--config '.*broken.json' is not valid JSON"):
        train_vq_model.main(["--dataset", str(images), "--config", str(broken), *base])
    broken.write_text("[8]")
    with pytest.raises(ValueError, match="must hold a JSON object of config fields, got list"):
        train_vq_model.main(["--dataset", str(images), "--config", str(broken), *base])


# ---------------------------------------------------------------------------------------------------------------------
# examples/demo.py


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["--steps", "0"], ValueError, "--steps must be >= 1, got 0"),
        (["--steps", "1"], ValueError, r"--steps \(1\) must leave steps after the warm-up"),
        (["--batch_size", "-4"], ValueError, "--batch_size must be >= 1, got -4"),
        (["--learning_rate", "0"], ValueError, "--learning_rate must be > 0, got 0.0"),
        (["--tokenizer_learning_rate=-1e-3"], ValueError, "--tokenizer_learning_rate must be > 0"),
        (["--warmup_fraction", "1"], ValueError, r"--warmup_fraction must be in \[0, 1\), got 1.0"),
        (["--caption_to_rgb_temperature", "0"], ValueError, "--caption_to_rgb_temperature must be > 0"),
        (["--caption_to_rgb_guidance", "-1"], ValueError, "--caption_to_rgb_guidance must be >= 0"),
        (["--patch_size", "7"], ValueError, r"--image_size \(64\) must be a multiple of --patch_size \(7\)"),
        (["--num_eval", "0"], ValueError, "--num_eval must be >= 1, got 0"),
        (["--seed", "-1"], ValueError, "--seed must be >= 0, got -1"),
        (["--threads", "0"], ValueError, "--threads must be >= 1, got 0"),
    ],
)
def test_demo_flags(demo, argv, error, message):
    with pytest.raises(error, match=message):
        demo.parse_args(argv)


def test_valid_flags_still_parse(demo):
    settings, args = demo.parse_args(["--long", "--steps", "7", "--seed", "0", "--threads", "2"])
    assert settings.steps == 7 and settings.seed == 0 and args.threads == 2
