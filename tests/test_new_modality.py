"""A modality family the package has never seen, end to end: registered once in this process, then pre-tokenised,
masked, trained, saved, and used by a fresh Python process that never registers it.

This is also the walkthrough "How to add a modality" of docs/ARCHITECTURE.md: the module below is what a user writes.
"""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMImageProcessor,
    FourMMaskingCollator,
    FourMProcessor,
    FourMTargetSchedule,
    FourMTokenizer,
    FourMVQVAE,
    FourMVQVAEConfig,
    MaskingMixture,
    ModalityFamily,
    get_modality,
    register_family,
    register_modality,
)
from fourm_hf.data.pretokenization import ImageColumn, TextColumn, pretokenize
from fourm_hf.modalities import FAMILIES

ROOT = Path(__file__).resolve().parents[1]

# What a user writes for a new family: a heat map in [0, 1], tokenised by a one-channel VQ-VAE.
HEAT_FAMILY_MODULE = '''
import numpy as np
from PIL import Image


def preprocess(image_processor, maps, spec):
    """Heat maps (a batch or list of (H, W) maps in [0, 1]) -> (B, 1, S, S) in [-1, 1] at the modality's size."""
    size, resized = spec.image_size, []
    for heat in maps:
        heat = np.asarray(heat, dtype=np.float32)
        if heat.ndim != 2 or heat.min() < 0 or heat.max() > 1:
            raise ValueError(f"{spec.name}: expected heat maps (H, W) in [0, 1], got shape {heat.shape}.")
        resized.append(np.asarray(Image.fromarray(heat).resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(resized)[:, None] * 2 - 1


def postprocess(image_processor, decoded, spec):
    """Decoded (B, 1, S, S) in [-1, 1] -> heat maps (B, S, S) in [0, 1]."""
    return np.clip(decoded[:, 0].float().numpy() * 0.5 + 0.5, 0, 1)


def render(value, background, size):
    """A heat map as a black-to-red tile."""
    red = (np.asarray(value) * 255).round().astype(np.uint8)
    tile = np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1)
    return Image.fromarray(tile).resize((size, size), Image.Resampling.NEAREST)
'''

FRESH_PROCESS = '''
import json, sys
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoProcessor
import fourm_hf
from fourm_hf import FourMGenerationConfig, plot_modalities
from fourm_hf.modalities import FAMILIES, MODALITIES

root = sys.argv[1]
report = {"known_before": "tok_heat@32" in MODALITIES or "tok_heat" in FAMILIES}
model = AutoModelForMaskedLM.from_pretrained(root + "/model").eval()
processor = AutoProcessor.from_pretrained(root + "/processor")
generation_config = FourMGenerationConfig.from_pretrained(root + "/generation")
image = (np.random.default_rng(1).random((1, 32, 32, 3)) * 255).astype(np.uint8)
batch = processor(images=list(image), targets=["tok_heat@32"])
with torch.no_grad():
    out = model.generate(batch, generation_config, seed=0)
decoded = processor.postprocess(out, names=["rgb@32", "tok_heat@32"])
grid = plot_modalities(decoded, tile_size=64, columns=2, save_path=root + "/heat.png")
heat = decoded["tok_heat@32"]
report.update(
    model_class=type(model).__name__, processor_class=type(processor).__name__,
    tokens=out["tok_heat@32"]["tensor"].tolist(), target_left=bool((~out["tok_heat@32"]["target_mask"]).any()),
    heat_shape=list(heat.shape), heat_range=[float(heat.min()), float(heat.max())], grid_size=list(grid.size),
    family_render=MODALITIES["tok_heat@32"].family.render,
)
json.dump(report, open(root + "/report.json", "w"))
'''


@pytest.fixture
def heat_family(tmp_path, monkeypatch):
    """Register the `tok_heat` family (from an importable module) and `tok_heat@32`, `rgb@32` (the conftest fixture
    restores the registry afterwards)."""
    module_dir = tmp_path / "user_code"
    module_dir.mkdir()
    (module_dir / "heat_family.py").write_text(HEAT_FAMILY_MODULE)
    monkeypatch.syspath_prepend(str(module_dir))
    import heat_family

    family = register_family(
        ModalityFamily(
            name="tok_heat", kind="image_tokens", defaults={"vocab_size": 32, "patch_size": 8},
            preprocess=heat_family.preprocess, postprocess=heat_family.postprocess, render=heat_family.render,
            generation={"from_rgb": {"scheme": "maskgit", "num_steps": 2}}, generation_order=0,
            description="a heat map in [0, 1]",
        )
    )
    register_modality("tok_heat@32")
    register_modality("rgb@32", overwrite=True)  # other test modules register rgb@32 with 8-pixel patches at import
    yield family, module_dir
    sys.modules.pop("heat_family", None)


def test_registering_a_resolution_or_a_family_is_one_call(heat_family):
    spec = get_modality("tok_heat@32")
    assert (spec.kind, spec.vocab_size, spec.image_size, spec.patch_size, spec.num_tokens) == ("image_tokens", 32, 32, 8, 16)
    assert spec.family is FAMILIES["tok_heat"]
    depth96 = register_modality("tok_depth@96", patch_size=8)
    assert (depth96.vocab_size, depth96.num_tokens, depth96.family.name) == (8192, 144, "tok_depth")
    assert depth96.family.function("render").__name__ == "render_depth"
    saved = spec.to_dict()
    assert saved["family"]["preprocess"] == "heat_family:preprocess"  # a custom family travels whole
    assert depth96.to_dict()["family"] == "tok_depth"  # a built-in one by name
    with pytest.raises(ValueError, match="Modality 'tok_heat@33': image_size \\(33\\) must be a positive multiple"):
        register_modality("tok_heat@33")
    with pytest.raises(ValueError, match="family 'tok_mystery' is not registered; give its kind"):
        register_modality("tok_mystery@32")
    with pytest.raises(ValueError, match="Only functions defined at module level|Cannot save"):
        ModalityFamily(name="tok_lambda", kind="image_tokens", render=lambda v, b, s: None).to_dict()
    bare = register_modality("tok_bare@32", "image_tokens", vocab_size=4, patch_size=8)
    with pytest.raises(ValueError, match="family 'tok_bare' \\(image_tokens\\) has no postprocess function"):
        bare.family.function("postprocess")


def _tiny_heat_vq() -> FourMVQVAE:
    torch.manual_seed(0)
    config = FourMVQVAEConfig(
        image_size=32, patch_size=8, num_channels=1, encoder_hidden_size=16, encoder_num_layers=1,
        encoder_num_heads=2, decoder_hidden_size=16, decoder_num_layers=1, decoder_num_heads=2, codebook_size=32,
        latent_dim=8,
    )
    return FourMVQVAE(config).eval()


def _scenes(count: int) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    images, heats, captions = [], [], []
    for i in range(count):
        heat = np.zeros((48, 48), np.float32)
        x, y = rng.integers(8, 40, 2)
        heat[y - 6 : y + 6, x - 6 : x + 6] = 1.0
        images.append(Image.fromarray((np.stack([heat] * 3, -1) * 200 + 20).astype(np.uint8)))
        heats.append(heat)
        captions.append(f"a hot square at {'left' if x < 24 else 'right'}")
    return datasets.Dataset.from_dict({"image": images, "heat": heats, "caption": captions})


def test_a_new_family_runs_end_to_end_and_reloads_in_a_fresh_process(heat_family, tmp_path):
    _, module_dir = heat_family
    dataset = _scenes(8)
    text_tokenizer = FourMTokenizer.train_new(list(dataset["caption"]) * 4, vocab_size=4400, object_classes=())
    vq_model = _tiny_heat_vq()

    # pre-tokenise: the family prepares the heat maps at 32 px, the VQ model encodes them
    pretokenized = pretokenize(
        dataset, [ImageColumn("heat", "tok_heat@32", tokenizer=vq_model), ImageColumn("image", "rgb@32")],
        [TextColumn("caption", "caption")], text_tokenizer=text_tokenizer, num_crops=2, seed=0,
    ).with_format("numpy")
    tokens = np.stack([row["tok_heat@32"] for row in pretokenized])
    assert tokens.shape == (8, 2, 16) and tokens.min() >= 0 and tokens.max() < 32

    # mask, forward, backward
    names = ["rgb@32", "tok_heat@32", "caption"]
    mixture = MaskingMixture.from_dict({
        "input_tokens": 24, "target_tokens": 16,
        "alphas_mixture": {m: {"input_alphas": [1.0], "target_alphas": [0.0 if m == "rgb@32" else 1.0]} for m in names},
    })  # fmt: skip
    batch = FourMMaskingCollator.from_tokenizer(mixture, text_tokenizer, seed=0)([pretokenized[i] for i in range(8)])
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=names, decoder_modalities=names[1:],
    )
    model = FourMForMaskedModeling(config)
    output = model(**batch)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert model.encoder.embeddings["tok_heat@32"].token_emb.weight.grad.abs().sum() > 0

    # save the model, the processor (with the family's VQ model) and a generation config
    model.save_pretrained(tmp_path / "model")
    processor = FourMProcessor(FourMImageProcessor(image_size=32, patch_size=8), text_tokenizer, vq_models={"tok_heat@32": vq_model})
    processor.save_pretrained(tmp_path / "processor")
    generation_config = FourMGenerationConfig(
        conditions=["rgb@32"], targets=[FourMTargetSchedule("tok_heat@32", scheme="maskgit", num_steps=2)]
    )
    generation_config.save_pretrained(tmp_path / "generation")

    # a fresh process: no registration, the saved objects carry their modalities and the family's functions
    env = {"PYTHONPATH": f"{module_dir}:{ROOT}", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["known_before"] is False
    assert (report["model_class"], report["processor_class"]) == ("FourMForMaskedModeling", "FourMProcessor")
    assert report["family_render"] == "heat_family:render"
    assert np.array(report["tokens"]).shape == (1, 16) and not report["target_left"]
    assert report["heat_shape"] == [1, 32, 32] and 0 <= report["heat_range"][0] <= report["heat_range"][1] <= 1
    assert report["grid_size"] == [128, 64 + 20]
    png = Image.open(tmp_path / "heat.png")
    assert png.size == (128, 84)
    heat_tile = np.asarray(png.convert("RGB"))[20:, 64:]
    assert heat_tile[..., 1:].max() == 0  # drawn by the family's own black-to-red renderer
