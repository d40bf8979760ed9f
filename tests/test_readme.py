"""Docs that run: every script's `--help` documents every option with its default, and every Python block of
README.md executes (Hub ids replaced by small local models, see `HUB_SUBSTITUTES`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import restored_registry, tiny_any_to_any
from fourm_hf import (
    MODALITIES,
    FourMConfig,
    FourMDiVAE,
    FourMDiVAEConfig,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    FourMImageProcessor,
    FourMTokenizer,
    FourMVQVAE,
    FourMVQVAEConfig,
    load_vq_model,
)
from fourm_hf.data.synthetic import synthetic_scenes_dataset

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "examples/app.py",
    "examples/demo.py",
    "examples/finetune_digits.py",
    "training/pretrain.py",
    "training/finetune.py",
    "training/train_vq_model.py",
    "training/export_checkpoint.py",
    "modeling/convert_official_checkpoint.py",
    "modeling/convert_official_vq_model.py",
    *sorted(f"benchmarks/{path.name}" for path in (REPO / "benchmarks").glob("*.py")),
]


def help_entries(text: str) -> dict[str, str]:
    """`--help` output -> {invocation: help text}, one entry per argument listed after the usage and description."""
    entries: dict[str, str] = {}
    invocation = None
    in_section = False
    for line in text.splitlines():
        if line and not line[0].isspace():
            in_section = line.endswith(":") and not line.startswith("usage:")
            invocation = None
        elif in_section and re.match(r"  \S", line):
            invocation, _, help_text = line.strip().partition("  ")
            entries[invocation] = help_text.strip()
        elif in_section and invocation is not None and line.strip():
            entries[invocation] = f"{entries[invocation]} {line.strip()}".strip()
    return entries


@pytest.fixture(scope="module")
def help_outputs() -> dict[str, subprocess.CompletedProcess]:
    """Every script's `--help`, run side by side (each start imports torch and transformers)."""
    env = {**os.environ, "COLUMNS": "1000", "HF_HUB_OFFLINE": "1"}
    processes = {
        script: subprocess.Popen(
            [sys.executable, script, "--help"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for script in SCRIPTS
    }
    outputs = {}
    for script, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        outputs[script] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return outputs


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_of_every_script_has_help_and_its_default(script, help_outputs):
    result = help_outputs[script]
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    assert len(entries) >= 2, f"{script} --help lists no arguments:\n{result.stdout}"
    missing_help = [name for name, text in entries.items() if not text]
    assert not missing_help, f"{script}: options without help text: {missing_help}"
    optional = {name: text for name, text in entries.items() if name.startswith("-") and name != "-h, --help"}
    missing_default = [name for name, text in optional.items() if "default" not in text]
    assert not missing_default, f"{script}: options whose help does not show the default: {missing_default}"


# ----------------------------------------------------------------------------------------------------------------
# README.md's Python blocks

# What the README names -> what the test runs instead. `{name}` is a path from `local_models`; the other entries
# shrink data sizes so each block runs in seconds on a CPU.
HUB_SUBSTITUTES = {
    '"EPFL-VILAB/4M-21_B"': '"{fourm}"',
    '"EPFL-VILAB/4M-7_B_CC12M"': '"{fourm}"',
    '"path/to/model.safetensors"': '"{fourm}"',  # a native folder stands in for a bare official file
    'load_vq_model("tok_rgb")': 'load_vq_model("{tok_rgb}")',
    'load_vq_model("tok_depth")': 'load_vq_model("{tok_depth}")',
    '"text_tokenizer_4m_wordpiece_30k.json"': '"{text_tokenizer}"',
    "synthetic_scenes_dataset(1000,": "synthetic_scenes_dataset(4,",
    "num_crops=4, num_shards=8": "num_crops=2, num_shards=2",
    "num_steps=49": "num_steps=4",
    "num_steps=25": "num_steps=3",
    '"outputs/classification"': '"{classification}"',  # training/finetune.py outputs: heads + image processor
    '"outputs/segmentation"': '"{segmentation}"',
    '"outputs/depth"': '"{depth}"',
    '"outputs/demo/fourm"': '"{demo_fourm}"',  # examples/demo.py outputs: an untrained 4M of the demo's layout
    '"outputs/demo/processor"': '"{demo_processor}"',
}
SKIP_MARKER = re.compile(r"<!--\s*test:\s*skip\b[^>]*-->\s*$")
IMAGE_SIZE = 224


def readme_python_blocks() -> list[tuple[str, str, bool]]:
    """(heading, code, skipped) of every ```python block of README.md, in order; a block is skipped when the line
    before it is a `<!-- test: skip (reason) -->` comment."""
    blocks, heading, previous = [], "", ""
    lines = (REPO / "README.md").read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```python":
            end = lines.index("```", index + 1)
            blocks.append((heading, "\n".join(lines[index + 1 : end]), bool(SKIP_MARKER.match(previous))))
            index = end
        if line.strip():
            previous = line
        index += 1
    return blocks


def substitute(code: str, paths: dict[str, Path]) -> str:
    for readme_text, replacement in HUB_SUBSTITUTES.items():
        code = code.replace(readme_text, replacement.format(**{k: str(v) for k, v in paths.items()}))
    return code


@pytest.fixture(scope="module")
def local_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny stand-ins, saved like their Hub counterparts: a 4M with the modalities the README uses, a diffusion RGB
    VQ model, a depth VQ-VAE and a text tokenizer file."""
    root = tmp_path_factory.mktemp("readme_models")
    torch.manual_seed(0)
    image_like = ["tok_rgb@224", "tok_depth@224", "tok_clip@224"]
    FourMForMaskedModeling(
        FourMConfig(
            hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
            encoder_modalities=["rgb@224", *image_like, "caption", "det"],
            decoder_modalities=[*image_like, "caption", "det"],
        )
    ).save_pretrained(root / "fourm")
    vit = dict(image_size=IMAGE_SIZE, patch_size=16, encoder_hidden_size=32, encoder_num_layers=1,
               encoder_num_heads=2, latent_dim=8)
    FourMDiVAE(
        FourMDiVAEConfig(
            **vit, codebook_size=MODALITIES["tok_rgb@224"].vocab_size, unet_channels=8, unet_channel_mult=(1, 2),
            unet_num_res_blocks=1, unet_attention_resolutions=(), unet_norm_groups=4,
        )
    ).save_pretrained(root / "tok_rgb")
    FourMVQVAE(
        FourMVQVAEConfig(**vit, num_channels=1, codebook_size=MODALITIES["tok_depth@224"].vocab_size,
                         decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2)
    ).save_pretrained(root / "tok_depth")
    captions = synthetic_scenes_dataset(32, height=32, width=32)["caption"]
    tokenizer = FourMTokenizer.train_new(captions, vocab_size=5000)
    # padded to the released vocabulary size, so every id the 4M samples decodes
    tokenizer.add_tokens([f"unused{i}" for i in range(len(tokenizer), MODALITIES["caption"].vocab_size)])
    tokenizer.backend_tokenizer.save(str(root / "text_tokenizer.json"))
    torch.manual_seed(0)
    heads = save_heads(root)
    demo = save_demo_stand_in(root / "demo", tokenizer)
    return {"fourm": root / "fourm", "tok_rgb": root / "tok_rgb", "tok_depth": root / "tok_depth",
            "text_tokenizer": root / "text_tokenizer.json", **heads, **demo}


def save_heads(root: Path) -> dict[str, Path]:
    """What `training/finetune.py` writes for each task: a tiny head and its FourMImageProcessor, side by side."""
    config = dict(hidden_size=32, num_encoder_layers=1, num_decoder_layers=0, num_attention_heads=2,
                  encoder_modalities=["rgb@224"], decoder_modalities=[], head_hidden_size=8)  # fmt: skip
    labels = {0: "background", 1: "cat", 2: "dog"}
    heads = {
        "classification": FourMForImageClassification(FourMConfig(**config, id2label=labels)),
        "segmentation": FourMForSemanticSegmentation(FourMConfig(**config, id2label=labels)),
        "depth": FourMForDepthEstimation(FourMConfig(**config)),
    }
    for name, head in heads.items():
        head.save_pretrained(root / name)
        FourMImageProcessor().save_pretrained(root / name)
    return {name: root / name for name in heads}


def save_demo_stand_in(root: Path, tokenizer: FourMTokenizer) -> dict[str, Path]:
    """An untrained 4M and processor with the layout `examples/demo.py` saves: 64-pixel RGB in 8-pixel patches,
    RGB and depth token grids with their VQ-VAEs, captions and boxes. The saved configs carry the 64-pixel specs;
    the registry is left as it was, as a fresh process would find it."""
    with restored_registry():
        model, processor = tiny_any_to_any(64, ("tok_rgb", "tok_depth"), codebook_size=64, tokenizer=tokenizer)
        model.save_pretrained(root / "fourm")
        processor.save_pretrained(root / "processor")
    return {"demo_fourm": root / "fourm", "demo_processor": root / "processor"}


def block_inputs(paths: dict[str, Path]) -> dict:
    """The names README blocks use without defining them (the user's own data)."""
    generator = torch.Generator().manual_seed(0)
    text_tokenizer = FourMTokenizer(tokenizer_file=str(paths["text_tokenizer"]))
    caption = text_tokenizer("a red cube on a gray floor [EOS]", return_tensors="pt", add_special_tokens=False)
    caption_length = caption["input_ids"].shape[1]
    seg_item = {"pixel_values": torch.randn(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
                "labels": torch.randint(0, 150, (IMAGE_SIZE, IMAGE_SIZE), generator=generator)}
    return {
        "pixels": torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "rgb": torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) * 2 - 1,
        "image": Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (120, 90, 60)),
        "caption_ids": caption["input_ids"],
        "text_tokenizer": text_tokenizer,
        "rgb_vq": load_vq_model(str(paths["tok_rgb"])),
        "train": [seg_item] * 2,
        "val": [seg_item],
        # the forward contract's batch: depth tokens all targets, the caption's first half given, the rest targets
        "model": FourMForMaskedModeling.from_pretrained(paths["fourm"]),
        "depth_ids": torch.randint(0, MODALITIES["tok_depth@224"].vocab_size, (1, 196), generator=generator),
        "depth_input_mask": torch.ones(1, 196, dtype=torch.bool),
        "depth_target_mask": torch.zeros(1, 196, dtype=torch.bool),
        "caption_input_mask": (torch.arange(caption_length) >= caption_length // 2)[None],
        "caption_target_mask": (torch.arange(caption_length) < caption_length // 2)[None],
    }


def readme_sections() -> dict[str, list[tuple[str, bool]]]:
    """README.md's Python blocks grouped by section: a section's blocks continue one another."""
    sections: dict[str, list[tuple[str, bool]]] = {}
    for heading, code, skipped in readme_python_blocks():
        sections.setdefault(heading, []).append((code, skipped))
    return sections


README_SECTIONS = readme_sections()


@pytest.mark.parametrize("heading", list(README_SECTIONS))
def test_readme_python_blocks_run(heading, local_models, tmp_path, monkeypatch):
    blocks = [code for code, skipped in README_SECTIONS[heading] if not skipped]
    if not blocks:
        pytest.skip("every block of this section is marked `<!-- test: skip -->` in README.md")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme", **block_inputs(local_models)}
    namespace["image"].save(tmp_path / "scene.png")  # the user's picture the Pipelines section opens
    for code in blocks:
        exec(compile(substitute(code, local_models), f"README.md ({heading})", "exec"), namespace)  # noqa: S102
