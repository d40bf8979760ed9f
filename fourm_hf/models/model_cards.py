"""Model cards (the Hub's `README.md`) of fourm_hf models: metadata, a usage snippet that runs, the weights' licence.

`save_pretrained` writes one next to the weights, `push_to_hub` writes one naming the repo it pushes to, and the
converters in `modeling/` write one for converted official checkpoints. A card whose marker line was deleted is the
user's and is never overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from huggingface_hub import ModelCard, ModelCardData

MARKER = "<!-- fourm_hf model card: save_pretrained / push_to_hub rewrite it; delete this line to keep your edits -->"
RELEASE_NAMESPACE = "EPFL-VILAB/"
RELEASE_LICENSE = {
    "license": "other",
    "license_name": "sample-code-license-1.1",
    "license_link": "https://github.com/apple/ml-4m/blob/main/LICENSE_WEIGHTS",
}
RELEASE_NOTE = (
    "These weights derive from the 4M weights released by EPFL and Apple, which carry the Sample Code License 1.1 "
    "(non-commercial use; see `license_link`). The fourm_hf code is Apache-2.0; that does not change the licence "
    "of the weights."
)
OWN_NOTE = (
    "These weights were trained with fourm_hf (Apache-2.0) and do not derive from the released 4M weights; this "
    "card states Apache-2.0. Change `license` above if you publish them under other terms."
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Per model class (looked up along the MRO): the Hub task, the Auto class that loads it and a snippet body.
USAGE = {
    "FourMForMaskedModeling": (
        "any-to-any", "AutoModelForMaskedLM",
        "print(model.config.encoder_modalities, '->', model.config.decoder_modalities)",
    ),
    "FourMEncoderModel": (
        "image-feature-extraction", "AutoModel",
        "print(model.config.encoder_modalities, model.config.hidden_size)",
    ),
    "FourMForImageClassification": (
        "image-classification", "AutoModelForImageClassification", "print(model.config.id2label)",
    ),
    "FourMForSemanticSegmentation": (
        "image-segmentation", "AutoModelForSemanticSegmentation", "print(model.config.id2label)",
    ),
    "FourMForDepthEstimation": (
        "depth-estimation", "AutoModelForDepthEstimation", "print(model.config.encoder_modalities)",
    ),
    "FourMVQPreTrainedModel": (
        "image-to-image", "AutoModel",
        "x = {example}\n"
        "ids = model.encode(x)  # token ids\n"
        "print(tuple(ids.shape), tuple(model.decode(ids{decode_kwargs}).shape))",
    ),
}


def _usage(model: torch.nn.Module) -> tuple[str, str, str]:
    for cls in type(model).__mro__:
        if cls.__name__ in USAGE:
            return USAGE[cls.__name__]
    raise TypeError(f"No model card template for {type(model).__name__}.")


def hub_base_model(model: torch.nn.Module) -> str | None:
    """The Hub repo the model's weights came from (its `name_or_path` when that is a repo id, not a local path)."""
    source = str(getattr(model, "name_or_path", "") or "")
    return source if HUB_ID.match(source) and not os.path.exists(source) else None


def _vq_example(model: torch.nn.Module) -> dict[str, str]:
    """An input of the VQ model's format (random) and the keyword arguments of a quick `decode`."""
    config = model.config
    size = config.encoder_image_size or config.image_size
    if config.num_classes:  # class-index maps (segmentation)
        example = f"torch.randint(0, {config.num_classes}, (1, {size}, {size}))"
    elif config.encoder_type == "vit":
        example = f"torch.randn(1, {config.num_channels}, {size}, {size})"
    else:  # vectors (global features, poses)
        example = f"torch.randn(1, {config.num_channels}, 1, 1)"
    is_diffusion = type(model).__name__ == "FourMDiVAE"
    return {"example": example, "decode_kwargs": ", num_steps=2, progress_bar=False" if is_diffusion else ""}


def build_model_card(
    model: torch.nn.Module,
    repo_id: str,
    *,
    base_model: str | None = None,
    derived_from_release: bool | None = None,
    description: str = "",
    tags: list[str] | None = None,
) -> ModelCard:
    """The card of `model` as loaded from `repo_id` (a Hub id or a directory).

    Args:
        base_model: the Hub repo the weights derive from (default: the model's `name_or_path` when it is a repo id).
        derived_from_release: whether the weights derive from the released 4M weights (default: whether
            `base_model` is under `EPFL-VILAB/`); sets the licence metadata and note.
        description: extra Markdown after the title (the converters list what they converted).
        tags: extra Hub tags.
    """
    base_model = base_model or hub_base_model(model)
    if derived_from_release is None:
        derived_from_release = bool(base_model and base_model.startswith(RELEASE_NAMESPACE))
    pipeline_tag, auto_class, body = _usage(model)
    if "{example}" in body:
        body = body.format(**_vq_example(model))
    data = ModelCardData(
        library_name="fourm_hf",
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        tags=["fourm_hf", "4M", *(tags or [])],
        **(RELEASE_LICENSE if derived_from_release else {"license": "apache-2.0"}),
    )
    config = model.config
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    name = Path(str(repo_id)).name
    imports = "import torch\n" if "torch." in body else ""
    text = f"""---
{data.to_yaml()}
---
{MARKER}

# {name}

A fourm_hf `{type(model).__name__}` ({parameters:.1f}M parameters, `model_type` `{config.model_type}`) of 4M,
the any-to-any multimodal masked model (Mizrahi et al., NeurIPS 2023; Bachmann et al., NeurIPS 2024), native to
Hugging Face `transformers`.
{description}
## Usage

With the fourm_hf package installed (importing it registers the 4M classes with transformers' Auto classes):

```python
{imports}import fourm_hf
from transformers import {auto_class}

model = {auto_class}.from_pretrained("{repo_id}")
{body}
```

## Licence

{RELEASE_NOTE if derived_from_release else OWN_NOTE}
"""
    return ModelCard(text)


def is_replaceable(card_path: Path) -> bool:
    """Whether `card_path` may be (re)written: absent, written by fourm_hf (marker kept) or transformers' template."""
    if not card_path.exists():
        return True
    text = card_path.read_text(encoding="utf-8", errors="replace")
    return MARKER in text or "This model card has been automatically generated." in text


__all__ = ["build_model_card", "hub_base_model", "is_replaceable"]
