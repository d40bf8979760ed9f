"""Model cards written by `save_pretrained`, `push_to_hub` and the converters: metadata, licence, a snippet that runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from conftest import TINY_DECODER, TINY_FOURM, TINY_UNET, TINY_VIT
from fourm_hf import (
    FourMConfig,
    FourMDiVAE,
    FourMDiVAEConfig,
    FourMEncoderModel,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    FourMVQVAE,
    FourMVQVAEConfig,
)
from fourm_hf.models.model_cards import MARKER, build_model_card

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "masked": (lambda: FourMForMaskedModeling(FourMConfig(**TINY_FOURM)), "any-to-any"),
    "encoder": (lambda: FourMEncoderModel(FourMConfig(**TINY_FOURM)), "image-feature-extraction"),
    "classification": (
        lambda: FourMForImageClassification(FourMConfig(**TINY_FOURM, num_labels=3, head_hidden_size=8)),
        "image-classification",
    ),
    "segmentation": (
        lambda: FourMForSemanticSegmentation(FourMConfig(**TINY_FOURM, num_labels=3, head_hidden_size=8)),
        "image-segmentation",
    ),
    "depth": (lambda: FourMForDepthEstimation(FourMConfig(**TINY_FOURM, head_hidden_size=8)), "depth-estimation"),
    "vqvae": (lambda: FourMVQVAE(FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER)), "image-to-image"),
    "semseg_vqvae": (
        lambda: FourMVQVAE(FourMVQVAEConfig(**TINY_VIT, **TINY_DECODER, num_classes=5)), "image-to-image"
    ),
    "divae": (lambda: FourMDiVAE(FourMDiVAEConfig(**TINY_VIT, **TINY_UNET)), "image-to-image"),
}


def snippet(card_text: str) -> str:
    """The card's one Python block."""
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.S)
    assert len(blocks) == 1, card_text
    return blocks[0]


def run_snippet(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("name", MODELS)
def test_save_pretrained_writes_a_card_whose_snippet_runs(name, tmp_path):
    build, pipeline_tag = MODELS[name]
    torch.manual_seed(0)
    model = build()
    model.save_pretrained(tmp_path / "saved")
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.library_name == "fourm_hf"
    assert card.data.pipeline_tag == pipeline_tag
    assert card.data.license == "apache-2.0" and card.data.base_model is None
    assert "do not derive from the released 4M weights" in card.text
    code = snippet(card.content)
    assert f'from_pretrained("{tmp_path / "saved"}")' in code
    out = run_snippet(code, tmp_path)
    if name == "masked":
        assert out.strip() == f"{model.config.encoder_modalities} -> {model.config.decoder_modalities}"
    if name.endswith("vae"):  # token ids on the patch grid, then a decoded map of the input's size
        size, grid = TINY_VIT["image_size"], TINY_VIT["image_size"] // TINY_VIT["patch_size"]
        channels = 5 if name == "semseg_vqvae" else 3  # segmentation decodes to one logit per class
        assert out.strip() == f"(1, {grid}, {grid}) (1, {channels}, {size}, {size})"


def test_card_of_weights_from_a_4m_release_carries_its_licence(tmp_path):
    model = FourMForMaskedModeling(FourMConfig(**TINY_FOURM))
    model.name_or_path = "EPFL-VILAB/4M-7_B_CC12M"
    card = build_model_card(model, "me/my-4m")
    assert card.data.base_model == "EPFL-VILAB/4M-7_B_CC12M"
    assert card.data.license == "other" and card.data.license_name == "sample-code-license-1.1"
    assert card.data.license_link.endswith("apple/ml-4m/blob/main/LICENSE_WEIGHTS")
    assert "Sample Code License 1.1" in card.text and "non-commercial" in card.text
    assert 'from_pretrained("me/my-4m")' in snippet(card.content)


def test_a_card_of_the_users_is_kept(tmp_path):
    model = FourMForMaskedModeling(FourMConfig(**TINY_FOURM))
    model.save_pretrained(tmp_path)
    assert MARKER in (tmp_path / "README.md").read_text()
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# Mine\n")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "---\nlicense: mit\n---\n# Mine\n"


def test_converter_card(official_checkpoints, tmp_path):
    """The converted official checkpoint's card: release licence, no local paths or placeholders, a runnable
    snippet (run from the directory holding the output, as `DST` was given relative to it)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "modeling" / "convert_official_checkpoint.py"),
         str(official_checkpoints["fm_4m7_style"]), "converted"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = ModelCard.load(tmp_path / "converted" / "README.md")
    assert card.data.library_name == "fourm_hf" and card.data.pipeline_tag == "any-to-any"
    assert card.data.license == "other" and card.data.license_name == "sample-code-license-1.1"
    assert "https://github.com/)" not in card.content and str(tmp_path) not in snippet(card.content)
    config = FourMConfig.from_pretrained(tmp_path / "converted")
    assert f"Encoder modalities: {', '.join(config.encoder_modalities)}" in card.text
    out = run_snippet(snippet(card.content), tmp_path)
    assert out.strip() == f"{config.encoder_modalities} -> {config.decoder_modalities}"
