"""The official parity cases reproduce through every loading path: official directory, bare .safetensors file,
and a converted native checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PARITY_CASES, case_modalities, official_case
from fourm_hf import FourMEncoderModel, FourMForMaskedModeling

ROOT = Path(__file__).resolve().parents[1]


def check_case(model: FourMForMaskedModeling, name: str) -> None:
    case = official_case(name)
    info, expected = case["info"], case["tensors"]
    with torch.no_grad():
        out = model.eval()(
            case_modalities(case), info["num_encoder_tokens"], info["num_decoder_tokens"], return_logits=True
        )
    torch.testing.assert_close(
        out.encoder_last_hidden_state, expected["expected.encoder_output"], atol=1e-4, rtol=0
    )
    padding = out.encoder_padding_mask
    assert torch.equal(padding, expected["expected.encoder_mask"].reshape(padding.shape))
    torch.testing.assert_close(out.loss, expected["expected.loss_mod"].reshape(()), rtol=1e-5, atol=0)
    decoder_modalities = [m for m in info["modality_order"] if f"expected.mod_loss.{m}" in expected]
    assert sorted(out.logits) == sorted(decoder_modalities)
    for mod in decoder_modalities:
        logits = out.logits[mod]
        assert torch.equal(out.target_ids[mod], expected[f"expected.{mod}.target_ids"].long())
        assert torch.equal(logits.argmax(-1), expected[f"expected.{mod}.argmax"].long())
        torch.testing.assert_close(logits[:, :64], expected[f"expected.{mod}.logits_first64"], atol=1e-4, rtol=0)
        torch.testing.assert_close(logits.logsumexp(-1), expected[f"expected.{mod}.logsumexp"], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            out.modality_losses[mod], expected[f"expected.mod_loss.{mod}"].reshape(()), rtol=1e-5, atol=0
        )


@pytest.mark.parametrize("name", PARITY_CASES)
def test_official_directory(official_checkpoints, name):
    check_case(FourMForMaskedModeling.from_pretrained(official_checkpoints[name]), name)


@pytest.mark.parametrize("name", PARITY_CASES)
def test_bare_safetensors_file(official_checkpoints, name):
    check_case(FourMForMaskedModeling.from_pretrained(official_checkpoints[name] / "model.safetensors"), name)


@pytest.mark.parametrize("name", PARITY_CASES)
def test_converted_native_checkpoint(official_checkpoints, name, tmp_path):
    script = ROOT / "modeling" / "convert_official_checkpoint.py"
    subprocess.run(
        [sys.executable, str(script), str(official_checkpoints[name]), str(tmp_path / "native")], check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    card = (tmp_path / "native" / "README.md").read_text()
    assert "fourm_hf" in card and "licen" in card.lower()
    check_case(FourMForMaskedModeling.from_pretrained(tmp_path / "native"), name)


def test_encoder_model_from_official_checkpoint(official_checkpoints):
    name = "fm_4m7_style"
    full = FourMForMaskedModeling.from_pretrained(official_checkpoints[name])
    encoder = FourMEncoderModel.from_pretrained(official_checkpoints[name]).eval()
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key
    case = official_case(name)
    with torch.no_grad():
        out = encoder(case_modalities(case), case["info"]["num_encoder_tokens"])
    torch.testing.assert_close(out.last_hidden_state, case["tensors"]["expected.encoder_output"], atol=1e-4, rtol=0)


def test_shared_modality_embeddings_are_one_tensor(official_checkpoints):
    """4M-7 shares mod_emb between encoder and decoder: the decoder reads the encoder's parameter."""
    model = FourMForMaskedModeling.from_pretrained(official_checkpoints["fm_4m7_style"])
    assert model.decoder.embeddings["caption"].mod_emb is None
    assert model.modality_embedding("caption") is model.encoder.embeddings["caption"].mod_emb
    model21 = FourMForMaskedModeling.from_pretrained(official_checkpoints["fm_4m21_style"])
    assert model21.modality_embedding("caption") is model21.decoder.embeddings["caption"].mod_emb
