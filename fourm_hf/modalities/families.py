"""The modality families of 4M-7, 4M-21 and 4M-SR: one description per family, shared by all its resolutions.

Each description gathers what the package knows about the family: default sizes, how raw data is prepared for its
VQ model (or the 4M pixel input) and read back (`FourMImageProcessor` does the pixel work), how sequence samples are
written as text and parsed back (`fourm_hf.data.serialization`), how a sample is drawn (`fourm_hf.evaluation.rendering`),
how a horizontal flip acts on it, its released VQ model, and its default generation settings (the official demo
sampler's tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..data.serialization import (
    NUM_BINS,
    boxes_to_text,
    metadata_to_text,
    palette_to_text,
    poses_to_text,
    sam_instances_to_text,
    text_to_boxes,
    text_to_metadata,
    text_to_palette,
    text_to_poses,
    text_to_sam_instances,
)
from ..evaluation import rendering
from .spec import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, ModalityFamily, ModalitySpec, VQModelPreset

TEXT_VOCAB_SIZE = 30_000
VQ_HUB_PREFIX = "EPFL-VILAB/4M_tokenizers_"

# ---------------------------------------------------------------------------------------------------------------------
# Codecs: raw data <-> the input of the VQ model (or of 4M for pixels), through FourMImageProcessor


def preprocess_rgb(processor, images: Any, spec: ModalitySpec, normalization: str = "imagenet") -> np.ndarray:
    """RGB images -> `(B, 3, S, S)`, ImageNet-normalised (the 4M pixel input)."""
    return processor.preprocess_rgb(images, normalization, spec.image_size)


def postprocess_rgb(processor, pixels: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    return processor.postprocess_rgb(pixels)


def preprocess_rgb_for_vq(processor, images: Any, spec: ModalitySpec, normalization: str = "tokenizer") -> np.ndarray:
    """RGB images -> `(B, 3, S, S)` in [-1, 1] (the RGB VQ model's input)."""
    return processor.preprocess_rgb(images, normalization, spec.image_size)


def postprocess_rgb_from_vq(processor, decoded: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    return processor.postprocess_rgb(decoded, "tokenizer")


def preprocess_depth(processor, depths: Any, spec: ModalitySpec) -> np.ndarray:
    return processor.preprocess_depth(depths, spec.image_size)


def postprocess_depth(processor, decoded: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Standardised depth `(B, H, W)`."""
    return decoded[:, 0].float().numpy()


def preprocess_normals(processor, normals: Any, spec: ModalitySpec) -> np.ndarray:
    return processor.preprocess_normals(normals, spec.image_size)


def postprocess_signed(processor, decoded: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Values in [-1, 1] -> uint8 `(B, H, W, C)`."""
    return processor.postprocess_signed(decoded)


def preprocess_edges(processor, edges: Any, spec: ModalitySpec) -> np.ndarray:
    return processor.preprocess_edges(edges, spec.image_size)


def postprocess_edges(processor, decoded: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Edge maps -> uint8 `(B, H, W)`."""
    return processor.postprocess_signed(decoded)[..., 0]


def preprocess_semseg(processor, maps: Any, spec: ModalitySpec, shifted: bool = False) -> np.ndarray:
    return processor.preprocess_semseg(maps, spec.image_size, shifted=shifted)


def postprocess_semseg(processor, logits: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Per-class logits `(B, K, H, W)` -> raw class ids `(B, H, W)`, void as the processor's void label."""
    return processor.postprocess_semseg(logits.argmax(1))


def preprocess_features(processor, features: Any, spec: ModalitySpec) -> np.ndarray:
    return processor.preprocess_features(features)


def postprocess_features(processor, decoded: torch.Tensor, spec: ModalitySpec) -> np.ndarray:
    """Feature maps `(B, C, h, w)` as float32."""
    return decoded.float().numpy()


# ---------------------------------------------------------------------------------------------------------------------
# Flips and sequence (de)serialisers


def hflip_image(batch: np.ndarray) -> np.ndarray:
    """Mirror a batch `(N, C, H, W)` or `(N, H, W)` left to right."""
    return batch[..., ::-1]


def hflip_normals(batch: np.ndarray) -> np.ndarray:
    """Mirror surface normals `(N, 3, H, W)`: a horizontal flip also negates their x component."""
    flipped = batch[..., ::-1].copy()
    flipped[:, 0] *= -1
    return flipped


def serialize_det(sample: Mapping[str, Any], num_bins: int = NUM_BINS) -> str:
    """`{"boxes": [(xmin, ymin, xmax, ymax), ...], "labels": [...]}` (normalised) -> det text with `num_bins`
    coordinate bins."""
    if not isinstance(sample, Mapping) or set(sample) != {"boxes", "labels"}:
        raise ValueError(f"det: a sample is a dict with 'boxes' and 'labels' (or a serialised string), got {sample!r}.")
    return boxes_to_text(sample["boxes"], sample["labels"], num_bins=num_bins)


def parse_det(text: str, num_bins: int = NUM_BINS) -> dict[str, list]:
    boxes, labels = text_to_boxes(text, num_bins)
    return {"boxes": boxes, "labels": labels}


# ---------------------------------------------------------------------------------------------------------------------
# The official demo sampler's settings (`Demo4MSampler` in apple/ml-4m)

_ONEX = {"temperature": 3.0, "temperature_schedule": "onex:0.5:0.5", "guidance_scale": 2.0}
_IMAGE_FROM_RGB = {"scheme": "roar", "num_steps": 1, "temperature": 0.01, "guidance_scale": 2.0}
_IMAGE_TO_RGB = {"scheme": "roar", "num_steps": 8, **_ONEX}
_SUPER_RESOLUTION = {"scheme": "maskgit", "num_steps": 8, "token_schedule": "cosine", "temperature": 1.0, "guidance_scale": 2.0}
_DEMO_ORDER = (
    "tok_clip", "tok_dinov2", "tok_imagebind", "tok_depth", "tok_normal", "tok_semseg", "tok_canny_edge",
    "tok_sam_edge", "tok_rgb", "caption", "det", "human_poses", "sam_instance", "color_palette", "metadata",
)  # fmt: skip


def _image_generation(to_rgb: Mapping[str, Any] = _IMAGE_TO_RGB, super_resolution: bool = False) -> dict:
    settings = {"from_rgb": dict(_IMAGE_FROM_RGB), "to_rgb": dict(to_rgb)}
    if super_resolution:
        settings["super_resolution"] = dict(_SUPER_RESOLUTION)
    return settings


def _sequence_generation(**settings: Any) -> dict:
    return {"from_rgb": dict(settings), "to_rgb": dict(settings)}


def _family(name: str, kind: str, **fields: Any) -> ModalityFamily:
    order = _DEMO_ORDER.index(name) if name in _DEMO_ORDER else None
    return ModalityFamily(name=name, kind=kind, generation_order=order, builtin=True, **fields)


def _vq(repo: str, model_class: str, decode_steps: int | None = None, notes: str = "") -> VQModelPreset:
    return VQModelPreset(VQ_HUB_PREFIX + repo, model_class, decode_steps, notes)


def _feature_family(name: str, patch_size: int, repo: str, notes: str, to_rgb: Mapping, sr: bool = False):
    return _family(
        name, IMAGE_TOKENS, defaults={"vocab_size": 8192, "patch_size": patch_size},
        preprocess=preprocess_features, postprocess=postprocess_features, render=rendering.render_feature_map,
        hflip=hflip_image, vq_model=_vq(repo, "FourMVQVAE", notes=notes),
        generation=_image_generation(to_rgb, sr), description=f"{name[4:]} feature map tokens",
    )


def _global_family(name: str, repo: str, notes: str) -> ModalityFamily:
    return _family(
        name, IMAGE_TOKENS,
        defaults={"vocab_size": 8192, "image_size": 224, "patch_size": 56, "learned_position_embedding": True},
        preprocess=preprocess_features, postprocess=postprocess_features, render=rendering.render_global_embedding,
        vq_model=_vq(repo, "FourMVQVAE", notes=notes), description="16 tokens of a global embedding",
    )


def _edge_family(name: str) -> ModalityFamily:
    return _family(
        name, IMAGE_TOKENS, defaults={"vocab_size": 8192, "patch_size": 16},
        preprocess=preprocess_edges, postprocess=postprocess_edges, render=rendering.render_image, hflip=hflip_image,
        vq_model=_vq("edge_8k_224-512", "FourMDiVAE", 10, "Edge maps, one channel, 0 -> -1 and 255 -> +1."),
        generation=_image_generation(), description="edge map tokens",
    )


def _text_family(name: str, max_length: int, temperature: float, max_tokens: int | None = None, **fields: Any):
    generation = _sequence_generation(temperature=temperature, **fields.pop("generation", {}))
    return _family(
        name, SEQUENCE, defaults={"vocab_size": TEXT_VOCAB_SIZE, "max_length": max_length, "max_tokens": max_tokens or max_length},
        generation=generation, **fields,
    )


_DINO_TEACHER = "DINOv2 ViT-B/14 features of ImageNet-normalised RGB"
BUILTIN_FAMILIES: tuple[ModalityFamily, ...] = (
    _family(
        "rgb", PIXELS, defaults={"num_channels": 3, "patch_size": 16}, preprocess=preprocess_rgb,
        postprocess=postprocess_rgb, render=rendering.render_image, hflip=hflip_image,
        description="RGB pixels, ImageNet mean / std (the 4M pixel input)",
    ),
    _family(
        "tok_rgb", IMAGE_TOKENS, defaults={"vocab_size": 16384, "patch_size": 16}, preprocess=preprocess_rgb_for_vq,
        postprocess=postprocess_rgb_from_vq, render=rendering.render_image, hflip=hflip_image,
        vq_model=_vq("rgb_16k_224-448", "FourMDiVAE", 25, "RGB in [-1, 1] (mean = std = 0.5, not ImageNet's)."),
        generation=_image_generation({"scheme": "roar", "num_steps": 25, **_ONEX}, super_resolution=True),
        description="RGB tokens",
    ),
    _family(
        "tok_depth", IMAGE_TOKENS, defaults={"vocab_size": 8192, "patch_size": 16}, preprocess=preprocess_depth,
        postprocess=postprocess_depth, render=rendering.render_depth, hflip=hflip_image,
        vq_model=_vq(
            "depth_8k_224-448", "FourMDiVAE", 25,
            "Depth (16-bit PNG / 65535), standardised per image with the mean and variance of its middle 80 % of "
            "values; decoding clips x0 to [-1, 1] at every step.",
        ),
        generation=_image_generation(super_resolution=True), description="depth tokens",
    ),
    _family(
        "tok_normal", IMAGE_TOKENS, defaults={"vocab_size": 8192, "patch_size": 16}, preprocess=preprocess_normals,
        postprocess=postprocess_signed, render=rendering.render_image, hflip=hflip_normals,
        vq_model=_vq("normal_8k_224-448", "FourMDiVAE", 25, "Surface normals stored as RGB, mapped to [-1, 1]."),
        generation=_image_generation(super_resolution=True), description="surface normal tokens",
    ),
    _family(
        "tok_semseg", IMAGE_TOKENS, defaults={"vocab_size": 4096, "patch_size": 16}, preprocess=preprocess_semseg,
        postprocess=postprocess_semseg, render=rendering.render_semseg, hflip=hflip_image,
        vq_model=_vq(
            "semseg_4k_224-448", "FourMVQVAE",
            notes="COCO-panoptic classes 0..132 (255 = void) shifted by +1 (void -> 0); decoding gives 134 logits.",
        ),
        generation=_image_generation(super_resolution=True), description="semantic segmentation tokens",
    ),
    _feature_family(
        "tok_clip", 16, "CLIP-B16_8k_224-448", "CLIP ViT-B/16 patch features (B, 512, H/16, W/16) of "
        "ImageNet-normalised RGB.",
        {"scheme": "roar", "num_steps": 50, "temperature": 5.0, "temperature_schedule": "onex:0.5:0.5", "guidance_scale": 3.0},
        sr=True,
    ),
    _feature_family(
        "tok_dinov2", 14, "DINOv2-B14_8k_224-448", _DINO_TEACHER + ", (B, 768, H/14, W/14).",
        {"scheme": "roar", "num_steps": 8, "temperature": 0.01, "guidance_scale": 2.0},
    ),
    _feature_family(
        "tok_imagebind", 14, "ImageBind-H14_8k_224-448", "ImageBind-H/14 patch features, (B, 1280, H/14, W/14).",
        {"scheme": "roar", "num_steps": 8, "temperature": 0.01, "guidance_scale": 2.0},
    ),
    _global_family("tok_dinov2_global", "DINOv2-B14-global_8k_16_224", "The normalised DINOv2 CLS token, (B, 768)."),
    _global_family("tok_imagebind_global", "ImageBind-H14-global_8k_16_224", "ImageBind-H/14 token 0, (B, 1280)."),
    _edge_family("tok_canny_edge"),
    _edge_family("tok_sam_edge"),
    _text_family("caption", 256, 0.3, render=rendering.render_text, description="a caption"),
    _text_family(
        "det", 256, 0.3, serialize=serialize_det, parse=parse_det, render=rendering.render_boxes,
        boxes_follow_crops=True, description="bounding boxes with class names, normalised to the image",
    ),
    _text_family(
        "metadata", 40, 0.1, serialize=metadata_to_text, parse=text_to_metadata, render=rendering.render_metadata,
        description="image metadata (brightness, colourfulness, crowdedness...)",
    ),
    _text_family(
        "human_poses", 263, 0.1, max_tokens=275, serialize=poses_to_text, parse=text_to_poses,
        render=rendering.render_human_poses,
        vq_model=_vq("human-poses_1k_8", "FourMVQVAE", notes="SMPL body pose, 23 x 3x3 rotations, (B, 207)."),
        description="human poses (boxes, SMPL pose tokens, shape, camera)",
    ),
    _text_family(
        "color_palette", 23, 0.1, serialize=palette_to_text, parse=text_to_palette, render=rendering.render_palette,
        description="a colour palette",
    ),
    _text_family(
        "sam_instance", 290, 0.01, generation={"num_tokens": 256}, serialize=sam_instances_to_text,
        parse=text_to_sam_instances, render=rendering.render_sam_instances,
        vq_model=_vq("sam-instance_1k_64", "FourMVQVAE", notes="64x64 {0, 1} instance masks, (B, 1, 64, 64)."),
        description="SAM instances (query point, boxes, mask tokens)",
    ),
    _family(
        "t5_caption", SEQUENCE_EMBEDDING, defaults={"embedding_dim": 4096, "max_length": 77},
        description="T5-XXL encoder embeddings of the caption (input only)",
    ),
)

# Resolutions of the released models: (family, resolutions).
BUILTIN_RESOLUTIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("rgb", (224, 448)),
    ("tok_rgb", (224, 448)),
    ("tok_depth", (224, 448)),
    ("tok_normal", (224, 448)),
    ("tok_semseg", (224, 448)),
    ("tok_clip", (224, 448)),
    ("tok_canny_edge", (224,)),
    ("tok_sam_edge", (224,)),
    ("tok_dinov2", (224,)),
    ("tok_imagebind", (224,)),
)

__all__ = ["BUILTIN_FAMILIES", "BUILTIN_RESOLUTIONS", "TEXT_VOCAB_SIZE", "hflip_image", "hflip_normals"]
