"""Parity of the modality tokenizers with the official apple/ml-4m implementation (../shared/fixtures/
official_tokenizers): every case is loaded through `from_pretrained` of its materialised official layout."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_materializer

from fourm_hf import FourMDDPMScheduler, FourMDiVAE, FourMVQVAE, load_vq_model

OFFICIAL_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official_tokenizers"
CASES = ("semseg_vqvae", "rgb_divae", "global_memcodes")
ROOT = Path(__file__).resolve().parents[1]


def _require_fixtures() -> None:
    if not (OFFICIAL_TOKENIZERS / "materialize.py").exists():
        pytest.skip(f"official tokenizer fixtures not found at {OFFICIAL_TOKENIZERS}")


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory):
    """`official_dir(case)`: the case's official Hub-layout directory (config.json + model.safetensors), built on
    first use."""
    materialize = load_materializer(OFFICIAL_TOKENIZERS)
    root = tmp_path_factory.mktemp("official_tokenizers")
    return functools.cache(lambda name: materialize(name, root / name))


def _case(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(OFFICIAL_TOKENIZERS / name / "case.safetensors"))


def _info(name: str) -> dict:
    return json.loads((OFFICIAL_TOKENIZERS / name / "case.json").read_text())


def test_semseg_vqvae(official_dir):
    case = _case("semseg_vqvae")
    model = FourMVQVAE.from_pretrained(official_dir("semseg_vqvae"))
    assert not model.training and model.config.num_classes == 134 and model.config.image_size == 128
    with torch.no_grad():
        encoded = model.encode_latents(case["input.labels"])  # 64x64 labels: the 8x8 tables resized to 4x4
        logits = model.decode(encoded.tokens)
    assert torch.equal(encoded.tokens, case["expected.tokens"])
    torch.testing.assert_close(encoded.quantized_latents, case["expected.quant"], atol=1e-4, rtol=0)
    assert logits.shape == (2, 134, 64, 64)
    torch.testing.assert_close(logits[:, :8], case["expected.logits_first8"], atol=1e-4, rtol=0)
    assert torch.equal(logits.argmax(1), case["expected.argmax"])


def test_global_memcodes(official_dir):
    case = _case("global_memcodes")
    model = FourMVQVAE.from_pretrained(official_dir("global_memcodes"))
    assert model.config.quantizer_type == "memcodes" and model.config.num_codebooks == 16
    with torch.no_grad():
        encoded = model.encode_latents(case["input.features"])
        decoded = model.decode(encoded.tokens)
        decoded_flat = model.decode(encoded.tokens.flatten(1))  # (B, 16) ids as 4M stores them
    assert torch.equal(encoded.tokens, case["expected.tokens"])
    torch.testing.assert_close(encoded.quantized_latents, case["expected.quant"], atol=1e-4, rtol=0)
    torch.testing.assert_close(decoded, case["expected.decoded"], atol=1e-4, rtol=0)
    torch.testing.assert_close(decoded_flat, decoded, atol=0, rtol=0)


def test_rgb_divae(official_dir):
    case = _case("rgb_divae")
    model = load_vq_model(official_dir("rgb_divae"))  # dispatches on the checkpoint
    assert isinstance(model, FourMDiVAE)
    config = model.config
    assert (config.prediction_type, config.beta_schedule, config.scheduler) == ("sample", "linear", "ddpm")
    with torch.no_grad():
        encoded = model.encode_latents(case["input.rgb"])
        denoised = model.denoise(case["input.denoiser_x_t"], case["input.denoiser_t"], case["expected.quant"])
        tokens = case["expected.tokens"]
        ddpm = model.decode(tokens, num_steps=4, scheduler="ddpm", generator=torch.Generator().manual_seed(0))
        ddim = model.decode(tokens, num_steps=4, scheduler="ddim", generator=torch.Generator().manual_seed(0))
    assert torch.equal(encoded.tokens, case["expected.tokens"])
    torch.testing.assert_close(encoded.quantized_latents, case["expected.quant"], atol=1e-4, rtol=0)
    torch.testing.assert_close(denoised, case["expected.denoiser_out"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ddpm, case["expected.decode_ddpm_4steps_seed0"], atol=1e-3, rtol=0)
    torch.testing.assert_close(ddim, case["expected.decode_ddim_trailing_4steps_seed0"], atol=1e-3, rtol=0)
    assert isinstance(model.get_scheduler(), FourMDDPMScheduler)  # decode's default sampler is the config's DDPM


def test_bare_safetensors_file_loads_with_config_from_metadata(official_dir):
    case = _case("semseg_vqvae")
    model = FourMVQVAE.from_pretrained(official_dir("semseg_vqvae") / "model.safetensors")
    assert torch.equal(model.encode(case["input.labels"]), case["expected.tokens"])


def test_wrong_class_for_checkpoint_is_refused(official_dir):
    with pytest.raises(ValueError, match="holds a FourMVQVAE VQ model; load it with FourMVQVAE"):
        FourMDiVAE.from_pretrained(official_dir("global_memcodes"))


def test_every_official_key_is_mapped(official_dir):
    from fourm_hf.conversion.official_vq import rename_official_tokenizer_key

    for name in CASES:
        official_keys = set(_info(name)["keys_shapes"]) - {"quantize._codebook.initted"}
        renamed = {rename_official_tokenizer_key(k) for k in official_keys}
        assert len(renamed) == len(official_keys), name  # the mapping is injective
        assert not any(".blocks." in k or "_codebook" in k or "input_blocks" in k for k in renamed), name


def test_conversion_script_round_trip(official_dir, tmp_path):
    case = _case("global_memcodes")
    destination = tmp_path / "converted"
    result = subprocess.run(
        [sys.executable, str(ROOT / "modeling" / "convert_official_vq_model.py"), str(official_dir("global_memcodes")),
         str(destination)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((destination / "config.json").read_text())
    assert saved["model_type"] == "fourm_vqvae" and saved["quantizer_type"] == "memcodes"
    card = (destination / "README.md").read_text()
    assert "library_name: fourm_hf" in card and "license_name: sample-code-license-1.1" in card
    assert "`FourMVQVAE`" in card and "codebook: " in card and "(memcodes)" in card
    from transformers import AutoModel

    native = AutoModel.from_pretrained(destination)
    assert isinstance(native, FourMVQVAE)
    with torch.no_grad():
        assert torch.equal(native.encode(case["input.features"]), case["expected.tokens"])
        torch.testing.assert_close(native.decode(case["expected.tokens"]), case["expected.decoded"], atol=1e-4, rtol=0)


def test_conversion_names_missing_and_mis_shaped_tensors():
    from fourm_hf.conversion.official_vq import (
        config_from_official,
        convert_official_vq_model_state_dict,
    )
    from fourm_hf.models.modeling_utils import meta_state_shapes

    _require_fixtures()
    info = _info("global_memcodes")
    state = {key: torch.ones(shape) for key, shape in info["keys_shapes"].items()}
    config = config_from_official(info["official_config"], {k: tuple(v.shape) for k, v in state.items()})
    assert (config.num_channels, config.num_codebooks, config.encoder_type) == (768, 16, "bottleneck_mlp")
    del state["decoder.linear_out.bias"]
    state["quant_proj.weight"] = torch.ones(1000, 1024, 1, 1)
    message = r"missing: \['decoder.linear_out.bias'\][\s\S]*quant_proj.weight: checkpoint \(1000, 1024, 1, 1\)"
    with pytest.raises(ValueError, match=message):
        convert_official_vq_model_state_dict(state, config, meta_state_shapes(FourMVQVAE, config))


def test_preset_loads_the_official_hub_repo(official_dir, tmp_path):
    """`load_vq_model("semseg")` fetches the preset's Hub repo (a loopback mock serving the official layout) and
    converts it on load."""
    import textwrap

    from hub_server import MockHub, hub_env

    case = _case("semseg_vqvae")
    source = official_dir("semseg_vqvae")
    code = f"""
        import torch
        from safetensors.torch import load_file, save_file
        from fourm_hf import load_vq_model
        model = load_vq_model("semseg")
        labels = load_file({str(OFFICIAL_TOKENIZERS / "semseg_vqvae" / "case.safetensors")!r})["input.labels"]
        save_file({{"tokens": model.encode(labels)}}, {str(tmp_path / "tokens.safetensors")!r})
    """
    with MockHub() as hub:
        hub.repos["EPFL-VILAB/4M_tokenizers_semseg_4k_224-448"] = {p.name: p.read_bytes() for p in source.iterdir()}
        env = {**hub_env(hub.endpoint, str(tmp_path / "home")), "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors.torch import load_file

    assert torch.equal(load_file(tmp_path / "tokens.safetensors")["tokens"], case["expected.tokens"])
