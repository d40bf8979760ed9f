"""Shared test fixtures: tiny configs and the official parity cases under ../shared (skipped when absent)."""

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
# Tiny configs shared by the model and VQ model tests.
TINY_FOURM = dict(
    hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
    encoder_modalities=["rgb@224", "caption"], decoder_modalities=["caption"],
)
TINY_VIT = dict(
    image_size=32, patch_size=8, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
    codebook_size=16, latent_dim=8,
)
TINY_DECODER = dict(decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2)
TINY_UNET = dict(
    unet_channels=16, unet_channel_mult=(1, 2), unet_num_res_blocks=1, unet_attention_resolutions=(2,),
    unet_norm_groups=8,
)



@contextmanager
def restored_registry() -> Iterator[None]:
    """On exit, the modality registry is as it was on entry, whatever was registered in between."""
    from fourm_hf.modalities import FAMILIES, MODALITIES

    modalities, families = dict(MODALITIES), dict(FAMILIES)
    try:
        yield
    finally:
        MODALITIES.clear()
        MODALITIES.update(modalities)
        FAMILIES.clear()
        FAMILIES.update(families)


@pytest.fixture(autouse=True)
def isolated_modality_registry() -> Iterator[None]:
    """Each test starts from the registry as it was and leaves it so: a modality or family that one test registers
    (e.g. `rgb@64` with 8-pixel patches in the demo) never leaks into the next."""
    with restored_registry():
        yield


def tiny_any_to_any(size: int = 32, token_families: tuple[str, ...] = ("tok_depth",),
                    sequences: tuple[str, ...] = ("caption", "det"), codebook_size: int = 32, tokenizer=None):
    """A tiny untrained 4M over `rgb@{size}` pixels and `tok_*@{size}` token grids (8-pixel patches; a tiny VQ-VAE
    for each in the processor) and the text `sequences` (12 tokens at most), with its FourMProcessor, both in eval
    mode. Registers the modalities (wrap module-scoped uses in `restored_registry`); the saved configs carry them."""
    from fourm_hf import (
        FourMConfig, FourMForMaskedModeling, FourMImageProcessor, FourMProcessor, FourMTokenizer, FourMVQVAE,
        FourMVQVAEConfig, register_modality,
    )  # fmt: skip

    channels = {"tok_rgb": 3, "tok_depth": 1}
    pixels, grids = f"rgb@{size}", [f"{family}@{size}" for family in token_families]
    register_modality(pixels, patch_size=8, overwrite=True)
    for name in grids:
        register_modality(name, vocab_size=codebook_size, patch_size=8, overwrite=True)
    torch.manual_seed(0)
    if tokenizer is None:
        tokenizer = FourMTokenizer.train_new(["a red cube on a gray floor", "a blue sphere near a wall"] * 8,
                                             vocab_size=4 + 200 + 4 * 1000 + 80 + 64)  # fmt: skip
    vq_models = {
        name: FourMVQVAE(FourMVQVAEConfig(
            image_size=size, patch_size=8, num_channels=channels[family], codebook_size=codebook_size, latent_dim=8,
            encoder_hidden_size=16, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=16,
            decoder_num_layers=1, decoder_num_heads=2,
        )).eval()  # fmt: skip
        for name, family in zip(grids, token_families)
    }
    processor = FourMProcessor(FourMImageProcessor(image_size=size, patch_size=8), tokenizer, vq_models=vq_models)
    sequence = {"kind": "sequence", "vocab_size": len(tokenizer), "max_length": 12, "max_tokens": 12}
    model = FourMForMaskedModeling(FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
        encoder_modalities=[pixels, *grids, *sequences], decoder_modalities=[*grids, *sequences],
        modality_specs={name: sequence for name in sequences},
    )).eval()  # fmt: skip
    return model, processor


OFFICIAL_4M = FIXTURES / "official_4m"
PARITY_CASES = ("fm_4m7_style", "fm_4m21_style")


def official_case(name: str) -> dict:
    """The parity case `name`: its case.json, tensors, and the materialised official checkpoint directory."""
    if not (OFFICIAL_4M / name / "case.json").exists():
        pytest.skip(f"official parity fixtures not found at {OFFICIAL_4M}")
    from safetensors.torch import load_file

    return {
        "info": json.loads((OFFICIAL_4M / name / "case.json").read_text()),
        "tensors": load_file(str(OFFICIAL_4M / name / "case.safetensors")),
    }


@contextmanager
def imported_script(path: Path, name: str) -> Iterator[ModuleType]:
    """A script (examples/, training/) imported by path as module `name`, registered in `sys.modules` while in use:
    dataclasses resolve their annotations through it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def load_materializer(folder: Path):
    """The `materialize(case, out_dir)` function of a fixture folder, imported by path under a unique module name
    (both fixture folders ship a `materialize.py`)."""
    script = folder / "materialize.py"
    if not script.exists():
        pytest.skip(f"official fixtures not found at {folder}")
    spec = importlib.util.spec_from_file_location(f"materialize_{folder.name}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.materialize


@pytest.fixture(scope="session")
def official_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Official-layout checkpoint directories (config.json + model.safetensors) of both parity cases."""
    materialize = load_materializer(OFFICIAL_4M)
    root = tmp_path_factory.mktemp("official_4m")
    return {name: materialize(name, root / name) for name in PARITY_CASES}


def case_modalities(case: dict) -> dict:
    """The case's input batch in the forward contract's format, in the fixture's modality order."""
    tensors = case["tensors"]
    modalities = {}
    for name in case["info"]["modality_order"]:
        keys = ("tensor", "input_mask", "target_mask", "decoder_attention_mask")
        modalities[name] = {k: tensors[f"input.{name}.{k}"] for k in keys if f"input.{name}.{k}" in tensors}
    return modalities


@pytest.fixture
def tiny_config():
    from fourm_hf import FourMConfig

    torch.manual_seed(0)
    return FourMConfig(
        hidden_size=32,
        num_encoder_layers=2,
        num_decoder_layers=2,
        num_attention_heads=4,
        encoder_modalities=["rgb@224", "tok_depth@224", "caption"],
        decoder_modalities=["tok_depth@224", "caption"],
    )
