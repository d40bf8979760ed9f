"""push_to_hub / from_pretrained(repo_id) over HTTP against a loopback mock of the Hub (never the real Hub)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hub_server import MockHub, hub_env

ROOT = Path(__file__).resolve().parents[1]


def run_client(code: str, hub: MockHub, home: Path) -> str:
    """Run `code` in a fresh interpreter whose huggingface_hub talks to `hub`."""
    env = hub_env(hub.endpoint, str(home))
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"client failed:\n{result.stderr[-3000:]}")
    return result.stdout


def test_push_then_pull_native_model(tmp_path):
    with MockHub() as hub:
        run_client(
            f"""
            import torch
            from fourm_hf import FourMConfig, FourMForMaskedModeling
            torch.manual_seed(0)
            config = FourMConfig(hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
                                 encoder_modalities=["caption"], decoder_modalities=["caption"])
            model = FourMForMaskedModeling(config)
            model.save_pretrained({str(tmp_path / "local")!r})
            model.push_to_hub("me/tiny-fourm", token="dummy")
            """,
            hub, tmp_path / "home_push",
        )
        assert "model.safetensors" in hub.repos["me/tiny-fourm"]
        # the pushed card is fourm_hf's (not transformers' template) and its snippet names the repo
        card = ModelCard(hub.repos["me/tiny-fourm"]["README.md"].decode())
        assert card.data.library_name == "fourm_hf" and card.data.pipeline_tag == "any-to-any"
        assert 'AutoModelForMaskedLM.from_pretrained("me/tiny-fourm")' in card.content
        assert "automatically generated" not in card.content
        run_client(
            f"""
            import fourm_hf
            from transformers import AutoModelForMaskedLM
            model = AutoModelForMaskedLM.from_pretrained("me/tiny-fourm")
            assert type(model).__name__ == "FourMForMaskedModeling", type(model)
            model.save_pretrained({str(tmp_path / "pulled")!r})
            """,
            hub, tmp_path / "home_pull",
        )
    pushed = load_file(tmp_path / "local" / "model.safetensors")
    pulled = load_file(tmp_path / "pulled" / "model.safetensors")
    assert pushed.keys() == pulled.keys()
    assert all(torch.equal(pushed[k], pulled[k]) for k in pushed)


def test_official_layout_repo_id_is_converted_on_load(tmp_path, official_checkpoints):
    source = official_checkpoints["fm_4m21_style"]
    with MockHub() as hub:
        hub.repos["me/official-layout-4m21"] = {p.name: p.read_bytes() for p in source.iterdir()}
        run_client(
            f"""
            from fourm_hf import FourMForMaskedModeling
            model = FourMForMaskedModeling.from_pretrained("me/official-layout-4m21")
            assert model.name_or_path == model.config.name_or_path == "me/official-layout-4m21", model.name_or_path
            model.save_pretrained({str(tmp_path / "hub")!r})
            FourMForMaskedModeling.from_pretrained({str(source)!r}).save_pretrained({str(tmp_path / "local")!r})
            """,
            hub, tmp_path / "home",
        )
    from_hub = load_file(tmp_path / "hub" / "model.safetensors")
    local = load_file(tmp_path / "local" / "model.safetensors")
    assert from_hub.keys() == local.keys()
    assert all(torch.equal(from_hub[k], local[k]) for k in local)
