"""One preset per released 4M modality tokenizer: its Hub id, model class, the 4M modalities it serves and how its
input must be prepared. `load_tokenizer(name)` loads one (converting the official checkpoint on the fly).

The preprocessing descriptions follow the official data pipeline (`fourm/data/modality_transforms.py`,
`save_vq_tokens.py`); image-like inputs are resized with `resample` and centre-cropped to a square of a size in
`[min_size, max_size]` that is a multiple of `size_multiple`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...modalities.registry import MODALITIES

HUB_PREFIX = "EPFL-VILAB/4M_tokenizers_"

# how `encode`'s input is made from the raw modality
NORMALIZATIONS = (
    "mean_std",  # image in [0, 1], then (x - mean) / std per channel
    "truncated_standardization",  # per image: drop the lowest and highest 10 %, standardise with the rest
    "class_ids",  # integer class map, shifted by `label_offset` (void / ignore becomes 0)
    "features",  # teacher-network features, used as produced
    "binary_mask",  # {0, 1} float mask
    "rotation_matrices",  # flattened SMPL body-pose rotation matrices
)


@dataclass(frozen=True)
class TokenizerPreset:
    """A released tokenizer and its input contract.

    Args:
        name (`str`): preset key, e.g. `"rgb"`.
        hub_id (`str`): Hub repository of the official checkpoint.
        model_class (`str`): `"FourMDiVAE"` or `"FourMVQVAE"`.
        modalities (`tuple[str]`): 4M modalities whose tokens it produces / decodes.
        codebook_size (`int`): token vocabulary.
        num_channels (`int`, *optional*): channels of `encode`'s input; None for class-id inputs `(B, H, W)`.
        normalization (`str`): one of `NORMALIZATIONS`.
        mean / std (`tuple[float]`, *optional*): per-channel statistics for `"mean_std"`.
        resample (`str`): `"bilinear"` or `"nearest"` (label maps).
        patch_size (`int`, *optional*): pixels per token side (feature maps: of the teacher's RGB input); None for
            global vectors.
        min_size / max_size / size_multiple (`int`, *optional*): (RGB) resolutions it was trained on.
        tokens_per_input (`str`): token count at the usual resolutions.
        num_classes (`int`, *optional*): classes of a class-id input (including the shifted void class 0).
        label_offset (`int`): added to raw labels (uint8 wrap-around: 255 -> 0).
        teacher (`str`, *optional*): network whose features are tokenized, and which of its outputs.
        decode_steps (`int`, *optional*): sampling steps 4M's own plotting uses (diffusion decoders).
        notes (`str`): anything else the preprocessing needs.
    """

    name: str
    hub_id: str
    model_class: str
    modalities: tuple[str, ...]
    codebook_size: int
    num_channels: int | None
    normalization: str
    patch_size: int | None
    min_size: int | None
    max_size: int | None
    size_multiple: int | None
    tokens_per_input: str
    resample: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None
    label_offset: int = 0
    teacher: str | None = None
    decode_steps: int | None = None
    notes: str = ""

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"Preset {self.name!r}: normalization must be one of {NORMALIZATIONS}.")

    def load(self, **kwargs: Any):
        """The tokenizer model (`FourMDiVAE` or `FourMVQVAE`), downloaded and converted on load."""
        from .modeling_fourm_vq import FourMVQPreTrainedModel

        return FourMVQPreTrainedModel.from_pretrained(self.hub_id, **kwargs)


_HALF = (0.5, 0.5, 0.5)
_PRESETS = [
    TokenizerPreset(
        name="rgb", hub_id=HUB_PREFIX + "rgb_16k_224-448", model_class="FourMDiVAE",
        modalities=("tok_rgb@224", "tok_rgb@448"), codebook_size=16384, num_channels=3, normalization="mean_std",
        mean=_HALF, std=_HALF, patch_size=16, min_size=224, max_size=448, size_multiple=32,
        tokens_per_input="14x14 at 224, 28x28 at 448", decode_steps=25,
        notes="RGB in [-1, 1] (mean = std = 0.5, not the ImageNet statistics); decoded images are in [-1, 1].",
    ),
    TokenizerPreset(
        name="depth", hub_id=HUB_PREFIX + "depth_8k_224-448", model_class="FourMDiVAE",
        modalities=("tok_depth@224", "tok_depth@448"), codebook_size=8192, num_channels=1,
        normalization="truncated_standardization", patch_size=16, min_size=224, max_size=448, size_multiple=32,
        tokens_per_input="14x14 at 224, 28x28 at 448", decode_steps=25,
        notes="Depth (16-bit PNG / 65535), one channel; per image, sort the values, keep the middle 80 % and "
        "standardise the whole map with their mean and unbiased variance: (d - mean) / sqrt(var + 1e-6). "
        "Decoding thresholds x0 to [-1, 1] at every step, so decoded depth is bounded.",
    ),
    TokenizerPreset(
        name="normal", hub_id=HUB_PREFIX + "normal_8k_224-448", model_class="FourMDiVAE",
        modalities=("tok_normal@224", "tok_normal@448"), codebook_size=8192, num_channels=3,
        normalization="mean_std", mean=_HALF, std=_HALF, patch_size=16, min_size=224, max_size=448,
        size_multiple=32, tokens_per_input="14x14 at 224, 28x28 at 448", decode_steps=25,
        notes="Surface normals stored as RGB, mapped to [-1, 1]; a horizontal flip must also negate the x channel.",
    ),
    TokenizerPreset(
        name="edge", hub_id=HUB_PREFIX + "edge_8k_224-512", model_class="FourMDiVAE",
        modalities=("tok_canny_edge@224", "tok_sam_edge@224"), codebook_size=8192, num_channels=1,
        normalization="mean_std", mean=(0.5,), std=(0.5,), patch_size=16, min_size=224, max_size=512,
        size_multiple=32, tokens_per_input="14x14 at 224, 32x32 at 512", decode_steps=10,
        notes="Canny or SAM edge maps, one channel, 0 -> -1 and 255 -> +1.",
    ),
    TokenizerPreset(
        name="semseg", hub_id=HUB_PREFIX + "semseg_4k_224-448", model_class="FourMVQVAE",
        modalities=("tok_semseg@224", "tok_semseg@448"), codebook_size=4096, num_channels=None,
        normalization="class_ids", resample="nearest", num_classes=134, label_offset=1, patch_size=16,
        min_size=224, max_size=448, size_multiple=16, tokens_per_input="14x14 at 224, 28x28 at 448",
        notes="COCO-panoptic semantic classes 0..132 (255 = void) shifted by +1 in uint8, so void -> 0 and classes "
        "-> 1..133; decode gives 134 logits per pixel (subtract 1 from the argmax for the 133 COCO classes).",
    ),
    TokenizerPreset(
        name="clip", hub_id=HUB_PREFIX + "CLIP-B16_8k_224-448", model_class="FourMVQVAE",
        modalities=("tok_clip@224", "tok_clip@448"), codebook_size=8192, num_channels=512,
        normalization="features", patch_size=16, min_size=224, max_size=448, size_multiple=16,
        tokens_per_input="14x14 at 224, 28x28 at 448",
        teacher="OpenAI CLIP ViT-B/16 visual tower: ln_post(patch tokens) @ proj, (B, 512, H/16, W/16)",
        notes="RGB fed to the teacher with the ImageNet mean / std; CLIP's position table bicubically resized for "
        "inputs other than 224.",
    ),
    TokenizerPreset(
        name="dinov2", hub_id=HUB_PREFIX + "DINOv2-B14_8k_224-448", model_class="FourMVQVAE",
        modalities=("tok_dinov2@224",), codebook_size=8192, num_channels=768, normalization="features",
        patch_size=14, min_size=224, max_size=448, size_multiple=14, tokens_per_input="16x16 at 224, 32x32 at 448",
        teacher="DINOv2 ViT-B/14: x_norm_patchtokens, (B, 768, H/14, W/14)",
        notes="RGB fed to the teacher with the ImageNet mean / std.",
    ),
    TokenizerPreset(
        name="imagebind", hub_id=HUB_PREFIX + "ImageBind-H14_8k_224-448", model_class="FourMVQVAE",
        modalities=("tok_imagebind@224",), codebook_size=8192, num_channels=1280, normalization="features",
        patch_size=14, min_size=224, max_size=448, size_multiple=14, tokens_per_input="16x16 at 224, 32x32 at 448",
        teacher="ImageBind-H/14 vision trunk: patch tokens (1:), (B, 1280, H/14, W/14)",
    ),
    TokenizerPreset(
        name="dinov2_global", hub_id=HUB_PREFIX + "DINOv2-B14-global_8k_16_224", model_class="FourMVQVAE",
        modalities=("tok_dinov2_global",), codebook_size=8192, num_channels=768, normalization="features",
        patch_size=None, min_size=224, max_size=224, size_multiple=14, tokens_per_input="16 (one per Memcodes head)",
        teacher="DINOv2 ViT-B/14: the normalised CLS token, as (B, 768, 1, 1) or (B, 768)",
        notes="Tokens have shape (B, 16, 1, 1); 4M flattens them to 16 ids.",
    ),
    TokenizerPreset(
        name="imagebind_global", hub_id=HUB_PREFIX + "ImageBind-H14-global_8k_16_224", model_class="FourMVQVAE",
        modalities=("tok_imagebind_global",), codebook_size=8192, num_channels=1280, normalization="features",
        patch_size=None, min_size=224, max_size=224, size_multiple=14, tokens_per_input="16 (one per Memcodes head)",
        teacher="ImageBind-H/14 vision trunk: token 0, as (B, 1280, 1, 1) or (B, 1280)",
        notes="Tokens have shape (B, 16, 1, 1); 4M flattens them to 16 ids.",
    ),
    TokenizerPreset(
        name="sam_instance", hub_id=HUB_PREFIX + "sam-instance_1k_64", model_class="FourMVQVAE",
        modalities=("sam_instance",), codebook_size=1024, num_channels=1, normalization="binary_mask",
        patch_size=16, min_size=64, max_size=64, size_multiple=16, tokens_per_input="4x4 = 16 per instance",
        notes="Each SAM instance polygon, cropped to its bounding box and filled into a 64x64 {0, 1} mask (B, 1, 64, "
        "64). Decoding gives one logit per pixel (apply a sigmoid). In the sam_instance text sequence each token n "
        "is written 'v0=n' if n < 512 else 'v1=n-512', after the four box coordinates.",
    ),
    TokenizerPreset(
        name="human_poses", hub_id=HUB_PREFIX + "human-poses_1k_8", model_class="FourMVQVAE",
        modalities=("human_poses",), codebook_size=1024, num_channels=207, normalization="rotation_matrices",
        patch_size=None, min_size=None, max_size=None, size_multiple=None, tokens_per_input="8 (one per Memcodes head)",
        notes="SMPL body pose (HMR2.0 pred_smpl_params.body_pose): 23 joints x 3x3 rotation matrices flattened to "
        "207 values, (B, 207, 1, 1) or (B, 207); zeros when there is no person. Decoding gives (B, 207, 1, 1); "
        "reshape to (B, 23, 3, 3). In the human_poses text sequence each token p is written 'v0=p' if p < 512 "
        "else 'v1=p-512'.",
    ),
]
TOKENIZER_PRESETS: dict[str, TokenizerPreset] = {preset.name: preset for preset in _PRESETS}


def get_tokenizer_preset(name: str) -> TokenizerPreset:
    """The preset named `name`, or the one serving 4M modality `name` (e.g. `"tok_depth@224"`), or the one whose Hub
    id is `name`."""
    if name in TOKENIZER_PRESETS:
        return TOKENIZER_PRESETS[name]
    for preset in _PRESETS:
        if name in preset.modalities or name == preset.hub_id:
            return preset
    if name in MODALITIES and MODALITIES[name].tokenizer:
        for preset in _PRESETS:
            if preset.hub_id == MODALITIES[name].tokenizer:
                return preset
    raise ValueError(
        f"No tokenizer preset for {name!r}; presets: {sorted(TOKENIZER_PRESETS)} (or a modality they serve)."
    )


def load_tokenizer(name_or_path: str, **kwargs: Any):
    """Load a tokenizer by preset / modality name, Hub id, local directory or bare official `.safetensors` file;
    returns a `FourMDiVAE` or `FourMVQVAE`."""
    from .modeling_fourm_vq import FourMVQPreTrainedModel

    try:
        preset = get_tokenizer_preset(name_or_path)
    except ValueError:
        return FourMVQPreTrainedModel.from_pretrained(name_or_path, **kwargs)
    return preset.load(**kwargs)


__all__ = ["NORMALIZATIONS", "TOKENIZER_PRESETS", "TokenizerPreset", "get_tokenizer_preset", "load_tokenizer"]
