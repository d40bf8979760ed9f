"""Text serialisation of 4M's sequence modalities, both ways.

4M writes every sequence modality as space-separated text that `FourMTokenizer` turns into ids: bounding boxes as
`v0=<xmin> v1=<ymin> v2=<xmax> v3=<ymax> <class name>`, metadata as `v1=<field> v0=<value>` pairs, colour palettes
as `v1=<n>` followed by `3n` channel values, human poses and SAM instances as keyword-led groups of value tokens.
Each `*_to_text` function here has a `text_to_*` inverse; parsers skip special tokens (`[EOS]`, `[PAD]`,
sentinels) and drop malformed groups, since they also read model outputs. Serialisers refuse what they cannot write
(wrong types, lengths or ranges) with an error naming the item. Span masking with sentinels (how
captions and all other sequences are split into an encoder input and a decoder target) lives in
`fourm_hf.data.sequences`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from transformers.utils import logging

from ..checks import check_bool, check_int, check_number, close_match

logger = logging.get_logger(__name__)

NUM_BINS = 1000
# Discrete codes (pose and SAM-mask tokenizers, codebooks of 1024) are split over two value axes: c < 512 -> v0=c,
# otherwise v1=c-512.
CODE_SPLIT = 512
_VALUE_TOKEN = re.compile(r"^v(\d)=(\d+)$")


# ---------------------------------------------------------------------------------------------------------------------
# Tokens


def _words(text: str) -> list[str]:
    """Whitespace-split `text`, dropping bracketed special tokens such as `[EOS]`, `[PAD]`, `[S_3]`."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (a decoded sequence), got {type(text).__name__} {text!r}.")
    return [w for w in text.split() if not (w.startswith("[") and w.endswith("]"))]


def _check_bins(num_bins: int) -> int:
    return check_int(num_bins, "num_bins", minimum=2)


def _check_list(value: Any, what: str) -> list:
    """`value` as a list when it is a list, tuple or array of items (not a string or a mapping)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{what} must be a list, got {type(value).__name__} {value!r}.")
    return list(value)


def _check_numbers(values: Any, what: str) -> list[float]:
    """A list of finite real numbers (not strings, not bools) as floats."""
    return [float(check_number(v, f"{what}[{i}]")) for i, v in enumerate(_check_list(values, what))]


def _parse_value(word: str) -> tuple[int, int] | None:
    """`"v2=540"` -> `(2, 540)`; None for any other word."""
    match = _VALUE_TOKEN.match(word)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _quantize(value: float, num_bins: int) -> int:
    """A coordinate in [0, 1] to its bin, as the official serialiser does (round(value * (bins - 1)))."""
    return round(value * (num_bins - 1))


def _codes_to_words(codes: Sequence[int], codebook_size: int, what: str) -> list[str]:
    words = []
    for index, code in enumerate(_check_list(codes, what)):
        if isinstance(code, bool) or not isinstance(code, (int, np.integer)):
            raise TypeError(f"{what}: codes must be integers, got {type(code).__name__} {code!r} at {index}.")
        code = int(code)
        if not 0 <= code < codebook_size:
            raise ValueError(f"{what}: codes must be in [0, {codebook_size}), got {code}.")
        words.append(f"v0={code}" if code < CODE_SPLIT else f"v1={code - CODE_SPLIT}")
    return words


def _word_to_code(word: str) -> int | None:
    parsed = _parse_value(word)
    if parsed is None or parsed[0] > 1:
        return None
    return parsed[1] + CODE_SPLIT * parsed[0]


def _check_box(box: Sequence[float], what: str) -> tuple[float, float, float, float]:
    """Validate a normalised (xmin, ymin, xmax, ymax) box."""
    if isinstance(box, (str, bytes, Mapping)) or not isinstance(box, (Sequence, np.ndarray)):
        raise TypeError(f"{what}: a box is 4 numbers (xmin, ymin, xmax, ymax), got {type(box).__name__} {box!r}.")
    if len(box) != 4:
        raise ValueError(f"{what}: a box is 4 numbers (xmin, ymin, xmax, ymax), got {len(box)}: {list(box)}.")
    xmin, ymin, xmax, ymax = _check_numbers(box, what)
    if not all(0.0 <= v <= 1.0 for v in (xmin, ymin, xmax, ymax)):
        hint = ""
        if max(xmin, ymin, xmax, ymax) > 1 and min(xmin, ymin, xmax, ymax) >= 0:
            hint = (
                f"; they look like pixel coordinates (max {max(xmin, ymin, xmax, ymax):g}): divide x by the image "
                "width and y by its height"
            )
        raise ValueError(
            f"{what}: box coordinates must be normalised to [0, 1], got {[xmin, ymin, xmax, ymax]}{hint}."
        )
    if xmin > xmax or ymin > ymax:
        raise ValueError(f"{what}: a box needs xmin <= xmax and ymin <= ymax, got {[xmin, ymin, xmax, ymax]}.")
    return xmin, ymin, xmax, ymax


def _box_words(box: Sequence[float], num_bins: int) -> list[str]:
    return [f"v{axis}={_quantize(v, num_bins)}" for axis, v in enumerate(box)]


def _read_box(words: Sequence[str], num_bins: int) -> tuple[float, ...] | None:
    """Four words `v0= v1= v2= v3=` -> the normalised box, or None when malformed."""
    values = [_parse_value(w) for w in words]
    if len(values) != 4 or any(v is None or v[0] != axis or v[1] >= num_bins for axis, v in enumerate(values)):
        return None
    return tuple(v[1] / (num_bins - 1) for v in values)


# ---------------------------------------------------------------------------------------------------------------------
# Bounding boxes (det)


def boxes_to_text(
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str],
    num_bins: int = NUM_BINS,
    sort: bool = True,
) -> str:
    """Serialise boxes as `v0=<xmin> v1=<ymin> v2=<xmax> v3=<ymax> <label>` groups.

    Args:
        boxes (`Sequence[Sequence[float]]`): (xmin, ymin, xmax, ymax) per box, normalised to [0, 1].
        labels (`Sequence[str]`): class name per box (may be several words, e.g. `"dining table"`).
        num_bins (`int`, *optional*, defaults to 1000): coordinate bins; a coordinate c becomes round(c * (bins - 1)).
        sort (`bool`, *optional*, defaults to `True`): order boxes by xmin² + ymin², as 4M's training data does.
    """
    boxes, labels = _check_list(boxes, "det: boxes"), _check_list(labels, "det: labels")
    _check_bins(num_bins)
    check_bool(sort, "sort")
    if len(boxes) != len(labels):
        raise ValueError(f"det: got {len(boxes)} boxes but {len(labels)} labels.")
    items = []
    for i, (box, label) in enumerate(zip(boxes, labels)):
        box = _check_box(box, f"det box {i}")
        if not isinstance(label, str):
            raise TypeError(f"det: label {i} must be a class name (a string), got {type(label).__name__} {label!r}.")
        words = label.split()
        if not words or _words(label) != words or any(_parse_value(w) for w in words):
            raise ValueError(f"det: label {i} must be a class name without value or special tokens, got {label!r}.")
        items.append((box, " ".join(words)))
    if sort:
        items.sort(key=lambda item: item[0][0] ** 2 + item[0][1] ** 2)
    return " ".join(" ".join(_box_words(box, num_bins) + [label]) for box, label in items)


def text_to_boxes(text: str, num_bins: int = NUM_BINS) -> tuple[list[tuple[float, ...]], list[str]]:
    """Parse `boxes_to_text` output (or a generated det sequence) into normalised boxes and labels.

    A group needs the four coordinates in order followed by at least one label word; other groups are dropped.
    """
    _check_bins(num_bins)
    boxes, labels = [], []
    words = _words(text)
    starts = [i for i, w in enumerate(words) if w.startswith("v0=")] + [len(words)]
    for start, end in pairwise(starts):
        box = _read_box(words[start : start + 4], num_bins)
        label = words[start + 4 : end]
        if box is None or not label or any(_parse_value(w) for w in label):
            continue
        boxes.append(box)
        labels.append(" ".join(label))
    return boxes, labels


# ---------------------------------------------------------------------------------------------------------------------
# Metadata (4M-21)


@dataclass(frozen=True)
class MetadataField:
    """How one metadata entry is binned into a `v0=` value.

    Args:
        type_id (`int`): the field's `v1=` id.
        kind (`str`): `"size"` (pixels // `step`), `"count"` (integer, clipped), `"range"` (clipped to
            [`vmin`, `vmax`] and split into `levels` equal bins) or `"threshold"` (bin = number of `thresholds` <= value).
        representatives (`tuple[float, ...]`): for `"threshold"`, the value each bin decodes to.
    """

    type_id: int
    kind: str
    step: int = 32
    vmin: float = 0.0
    vmax: float = 1.0
    levels: int = 50
    thresholds: tuple[float, ...] = ()
    representatives: tuple[float, ...] = ()

    def encode(self, value: float, num_bins: int) -> int:
        if self.kind == "size":
            return min(max(int(value) // self.step, 0), num_bins - 1)
        if self.kind == "count":
            return min(max(int(value), 0), num_bins - 1)
        if self.kind == "range":
            fraction = (min(max(value, self.vmin), self.vmax) - self.vmin) / (self.vmax - self.vmin)
            return int(fraction * (self.levels - 1))
        return sum(value >= t for t in self.thresholds)

    def decode(self, level: int) -> float:
        if self.kind == "size":
            return level * self.step
        if self.kind == "count":
            return level
        if self.kind == "range":
            # Centre of the bin (the top level holds only vmax); re-encoding gives the same level.
            fraction = 1.0 if level >= self.levels - 1 else (level + 0.5) / (self.levels - 1)
            return self.vmin + fraction * (self.vmax - self.vmin)
        return self.representatives[min(level, len(self.representatives) - 1)]

    def num_levels(self, num_bins: int) -> int:
        """How many distinct `v0=` values the field uses."""
        return {"size": num_bins, "count": num_bins, "range": self.levels}.get(self.kind, len(self.thresholds) + 1)


def _range(type_id: int, vmin: float, vmax: float) -> MetadataField:
    return MetadataField(type_id, "range", vmin=vmin, vmax=vmax)


# Field ids and binning of the released 4M-21 models.
METADATA_FIELDS: dict[str, MetadataField] = {
    "original_width": MetadataField(0, "size"),
    "original_height": MetadataField(1, "size"),
    "caption_n_chars": MetadataField(2, "count"),
    "caption_n_words": MetadataField(3, "count"),
    "caption_n_sentences": MetadataField(4, "count"),
    "n_humans": MetadataField(5, "count"),
    "n_sam_instances": MetadataField(6, "count"),
    "n_coco_instances": MetadataField(7, "count"),
    "coco_instance_diversity": MetadataField(8, "count"),
    "colorfulness": _range(9, 0, 150),
    "brightness": _range(10, 0, 255),
    "contrast": _range(11, 0, 127),
    "saturation": _range(12, 0, 255),
    "entropy": _range(13, 0, 10),
    "walkability": _range(14, 0, 1),
    "objectness": _range(15, 0, 1),
    "semantic_diversity": MetadataField(16, "count"),
    "geometric_complexity": _range(17, 0, 0.75),
    "occlusion_score": _range(18, 0, 0.25),
    "watermark_score": MetadataField(19, "threshold", thresholds=(0.5,), representatives=(0.25, 0.75)),
    "aesthetic_score": MetadataField(20, "threshold", thresholds=(4.5, 5.5), representatives=(4.0, 5.0, 6.0)),
}
_METADATA_BY_ID = {f.type_id: name for name, f in METADATA_FIELDS.items()}


def metadata_to_chunks(
    metadata: Mapping[str, float], order: Sequence[str] | None = None, num_bins: int = NUM_BINS
) -> list[str]:
    """Serialise metadata as one `v1=<field id> v0=<value>` chunk per entry (4M masks metadata chunk by chunk).

    Args:
        metadata (`Mapping[str, float]`): values by field name (see `METADATA_FIELDS`).
        order (`Sequence[str]`, *optional*): field order; defaults to the mapping's order (4M shuffles it in training).
        num_bins (`int`, *optional*, defaults to 1000): value tokens per axis.

    Values are numbers; counts are whole numbers >= 0 and sizes >= 0 (range fields are clipped to their range).
    """
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict {{field name: value}}, got {type(metadata).__name__} {metadata!r}.")
    _check_bins(num_bins)
    for name in metadata:
        if name not in METADATA_FIELDS:
            raise ValueError(
                f"metadata: unknown field {name!r}; known fields: {list(METADATA_FIELDS)}."
                f"{close_match(name, METADATA_FIELDS)}"
            )
    order = list(metadata) if order is None else _check_list(order, "metadata: order")
    if sorted(order, key=str) != sorted(metadata) or len(set(order)) != len(order):
        raise ValueError(f"metadata: `order` {order} must list exactly the given fields {list(metadata)}.")
    chunks = []
    for name in order:
        spec = METADATA_FIELDS[name]
        value = check_number(metadata[name], f"metadata field {name!r}")
        if spec.kind in ("size", "count"):
            check_number(value, f"metadata field {name!r} (a {spec.kind})", minimum=0)
        if spec.kind == "count" and not float(value).is_integer():
            raise ValueError(f"metadata field {name!r} is a count and must be a whole number, got {value!r}.")
        chunks.append(f"v1={spec.type_id} v0={spec.encode(value, num_bins)}")
    return chunks


def metadata_to_text(
    metadata: Mapping[str, float], order: Sequence[str] | None = None, num_bins: int = NUM_BINS
) -> str:
    """`metadata_to_chunks` joined into one string."""
    return " ".join(metadata_to_chunks(metadata, order, num_bins))


def text_to_metadata(text: str, num_bins: int = NUM_BINS) -> dict[str, float]:
    """Parse `v1=<field> v0=<value>` pairs back into values (the representative value of each bin).

    Pairs with an unknown field or a value out of the field's range are dropped; fields are returned in
    `METADATA_FIELDS` order.
    """
    _check_bins(num_bins)
    words = _words(text)
    found = {}
    for first, second in pairwise(words):
        key, value = _parse_value(first), _parse_value(second)
        if key is None or value is None or key[0] != 1 or value[0] != 0 or key[1] not in _METADATA_BY_ID:
            continue
        name = _METADATA_BY_ID[key[1]]
        spec = METADATA_FIELDS[name]
        if value[1] < spec.num_levels(num_bins):
            found[name] = spec.decode(value[1])
    return {name: found[name] for name in METADATA_FIELDS if name in found}


# ---------------------------------------------------------------------------------------------------------------------
# Colour palette (4M-21)


def palette_to_text(colors: Sequence[Sequence[int]], num_bins: int = NUM_BINS) -> str:
    """Serialise a palette of RGB colours as `v1=<n>` followed by `v0=<r> v0=<g> v0=<b>` per colour."""
    colors = _check_list(colors, "color_palette: colors")
    _check_bins(num_bins)
    if not 1 <= len(colors) < num_bins:
        raise ValueError(f"color_palette: expected between 1 and {num_bins - 1} colours, got {len(colors)}.")
    words = [f"v1={len(colors)}"]
    for i, color in enumerate(colors):
        channels = _check_numbers(color, f"color_palette: colour {i}")
        if len(channels) != 3 or not all(c.is_integer() and 0 <= c <= 255 for c in channels):
            raise ValueError(f"color_palette: colour {i} must be 3 integers in [0, 255], got {list(color)}.")
        words += [f"v0={int(c)}" for c in channels]
    return " ".join(words)


def text_to_palette(text: str) -> list[tuple[int, int, int]]:
    """Parse a palette: the `v0=` channel values after the leading `v1=<n>`, grouped in RGB triples (an incomplete
    last triple and out-of-range channels are dropped)."""
    values = [_parse_value(w) for w in _words(text)]
    channels = [v[1] for v in values if v is not None and v[0] == 0]
    triples = [tuple(channels[i : i + 3]) for i in range(0, len(channels) - 2, 3)]
    return [t for t in triples if all(0 <= c <= 255 for c in t)]


# ---------------------------------------------------------------------------------------------------------------------
# Human poses (4M-21)

POSE_BLOCKS = ("pose", "global", "camera", "shape")
# Affine maps of the float blocks onto [0, bins - 1] (global orientation entries in [-1, 1], SMPL betas in [-3, 3],
# camera in [-1, 19]), as (scale, offset, lo, hi): token = round(scale * clip(x, lo, hi) + offset).
_POSE_FLOAT_MAPS = {
    "global": (499.5, 499.5, -1.0, 1.0),
    "shape": (166.5, 499.5, -3.0, 3.0),
    "camera": (49.95, 49.95, -1.0, 19.0),
}
_POSE_BLOCK_SIZES = {"pose": 8, "global": 9, "shape": 10, "camera": 3}
POSE_CODEBOOK_SIZE = 1024


@dataclass
class HumanPose:
    """One person of the `human_poses` modality.

    Args:
        box (`tuple[float, float, float, float]`): normalised (xmin, ymin, xmax, ymax).
        pose_tokens (`list[int]`): 8 codes of the pose tokenizer (codebook of 1024) for the 23 SMPL body rotations.
        global_orient (`list[float]`): the 3x3 global rotation, row-major (9 values in [-1, 1]).
        betas (`list[float]`): 10 SMPL shape coefficients (clipped to [-3, 3]).
        camera (`list[float]`): 3 weak-perspective camera values (clipped to [-1, 19]).
    """

    box: tuple[float, ...]
    pose_tokens: list[int]
    global_orient: list[float]
    betas: list[float]
    camera: list[float]

    def block_values(self, block: str) -> list:
        return {"pose": self.pose_tokens, "global": self.global_orient, "shape": self.betas, "camera": self.camera}[
            block
        ]


def poses_to_text(
    poses: Sequence[HumanPose], block_order: Sequence[str] = POSE_BLOCKS, num_bins: int = NUM_BINS
) -> str:
    """Serialise people as `human <box> <block> ...` groups (`none` when there is nobody).

    Args:
        poses (`Sequence[HumanPose]`): the people.
        block_order (`Sequence[str]`, *optional*): order of the `pose`, `global`, `camera`, `shape` blocks after the
            box (4M draws a random order per person in training).
        num_bins (`int`, *optional*, defaults to 1000): value tokens per axis.
    """
    block_order = _check_list(block_order, "human_poses: block_order")
    if sorted(block_order, key=str) != sorted(POSE_BLOCKS):
        raise ValueError(f"human_poses: block_order must be a permutation of {POSE_BLOCKS}, got {block_order}.")
    poses = _check_list(poses, "human_poses: poses")
    _check_bins(num_bins)
    if not poses:
        return "none"
    groups = []
    for i, pose in enumerate(poses):
        if not isinstance(pose, HumanPose):
            raise TypeError(
                f"human_poses person {i} must be a HumanPose(box, pose_tokens, global_orient, betas, camera), got "
                f"{type(pose).__name__}."
            )
        words = ["human"] + _box_words(_check_box(pose.box, f"human_poses person {i}"), num_bins)
        for block in block_order:
            values = _check_list(pose.block_values(block), f"human_poses person {i} {block}")
            if len(values) != _POSE_BLOCK_SIZES[block]:
                raise ValueError(
                    f"human_poses person {i}: block {block!r} needs {_POSE_BLOCK_SIZES[block]} values, "
                    f"got {len(values)}."
                )
            words.append(block)
            if block == "pose":
                words += _codes_to_words(values, POSE_CODEBOOK_SIZE, f"human_poses person {i} pose")
            else:
                scale, offset, lo, hi = _POSE_FLOAT_MAPS[block]
                values = _check_numbers(values, f"human_poses person {i} {block}")
                words += [f"v0={round(scale * min(max(v, lo), hi) + offset)}" for v in values]
        groups.append(" ".join(words))
    return " ".join(groups)


def _read_pose(words: Sequence[str], num_bins: int) -> HumanPose | None:
    box = _read_box(words[:4], num_bins)
    blocks, current = {}, None
    for word in words[4:]:
        if word in _POSE_BLOCK_SIZES:
            current = blocks.setdefault(word, [])
        elif current is None:
            return None
        else:
            current.append(word)
    if box is None or sorted(blocks) != sorted(POSE_BLOCKS):
        return None
    if any(len(blocks[b]) != n for b, n in _POSE_BLOCK_SIZES.items()):
        return None
    codes = [_word_to_code(w) for w in blocks["pose"]]
    floats = {}
    for block, (scale, offset, _, _) in _POSE_FLOAT_MAPS.items():
        parsed = [_parse_value(w) for w in blocks[block]]
        if any(p is None or p[0] != 0 for p in parsed):
            return None
        floats[block] = [(p[1] - offset) / scale for p in parsed]
    if any(c is None or not 0 <= c < POSE_CODEBOOK_SIZE for c in codes):
        return None
    return HumanPose(box, codes, floats["global"], floats["shape"], floats["camera"])


def text_to_poses(text: str, num_bins: int = NUM_BINS) -> list[HumanPose]:
    """Parse `poses_to_text` output; malformed people are dropped and `none` gives an empty list."""
    _check_bins(num_bins)
    words = _words(text)
    starts = [i for i, w in enumerate(words) if w == "human"] + [len(words)]
    poses = [_read_pose(words[s + 1 : e], num_bins) for s, e in pairwise(starts)]
    return [p for p in poses if p is not None]


# ---------------------------------------------------------------------------------------------------------------------
# SAM instances (4M-21)

SAM_TOKENS_PER_INSTANCE = 16
SAM_CODEBOOK_SIZE = 1024


@dataclass
class SAMInstance:
    """One SAM instance: its pixel box (xmin, ymin, xmax, ymax) in the 224x224 frame and 16 mask-tokenizer codes."""

    box: tuple[int, int, int, int]
    tokens: list[int]


@dataclass
class SAMQuery:
    """A query point (x, y) in pixels and the instances whose mask contains it (empty: none)."""

    point: tuple[int, int]
    instances: list[SAMInstance] = field(default_factory=list)


def _pixel_words(values: Sequence[int], num_bins: int, what: str) -> list[str]:
    numbers = _check_numbers(values, what)
    if not all(v.is_integer() and 0 <= v < num_bins for v in numbers):
        raise ValueError(f"{what}: pixel coordinates must be integers in [0, {num_bins}), got {list(values)}.")
    return [f"v{axis}={int(v)}" for axis, v in enumerate(numbers)]


def sam_instances_to_text(queries: Sequence[SAMQuery], num_bins: int = NUM_BINS) -> str:
    """Serialise SAM queries as `point v0=<y> v1=<x>` followed by `polygon <box> <16 codes>` per instance, or `none`."""
    queries = _check_list(queries, "sam_instance: queries")
    _check_bins(num_bins)
    words = []
    for i, query in enumerate(queries):
        if not isinstance(query, SAMQuery):
            raise TypeError(
                f"sam_instance query {i} must be a SAMQuery(point, instances), got {type(query).__name__}."
            )
        point = _check_list(query.point, f"sam_instance query {i} point")
        if len(point) != 2:
            raise ValueError(f"sam_instance query {i}: a point is (x, y), got {query.point}.")
        x, y = point
        words += ["point"] + _pixel_words((y, x), num_bins, f"sam_instance query {i} point")
        instances = _check_list(query.instances, f"sam_instance query {i} instances")
        if not instances:
            words.append("none")
        for j, inst in enumerate(instances):
            what = f"sam_instance query {i} instance {j}"
            if not isinstance(inst, SAMInstance):
                raise TypeError(f"{what} must be a SAMInstance(box, tokens), got {type(inst).__name__}.")
            box = _check_list(inst.box, f"{what} box")
            box_words = _pixel_words(box, num_bins, f"{what} box")
            if len(box) != 4 or box[0] > box[2] or box[1] > box[3]:
                raise ValueError(f"{what}: box must be (xmin, ymin, xmax, ymax) with min <= max, got {inst.box}.")
            tokens = _check_list(inst.tokens, f"{what} tokens")
            if len(tokens) != SAM_TOKENS_PER_INSTANCE:
                raise ValueError(f"{what}: expected {SAM_TOKENS_PER_INSTANCE} mask tokens, got {len(tokens)}.")
            words += ["polygon"] + box_words + _codes_to_words(tokens, SAM_CODEBOOK_SIZE, what)
    return " ".join(words)


def _read_sam_query(words: Sequence[str], num_bins: int) -> SAMQuery | None:
    point = [_parse_value(w) for w in words[:2]]
    if len(point) != 2 or point[0] is None or point[1] is None or point[0][0] != 0 or point[1][0] != 1:
        return None
    query = SAMQuery(point=(point[1][1], point[0][1]))
    rest = list(words[2:])
    if rest == ["none"]:
        return query
    starts = [i for i, w in enumerate(rest) if w == "polygon"] + [len(rest)]
    if not rest or starts[0] != 0:
        return None
    for s, e in pairwise(starts):
        group = rest[s + 1 : e]
        box = [_parse_value(w) for w in group[:4]]
        codes = [_word_to_code(w) for w in group[4:]]
        valid_box = len(box) == 4 and all(b is not None and b[0] == a and b[1] < num_bins for a, b in enumerate(box))
        valid_codes = len(codes) == SAM_TOKENS_PER_INSTANCE and all(c is not None for c in codes)
        if valid_box and valid_codes:
            query.instances.append(SAMInstance(tuple(b[1] for b in box), codes))
    return query


def text_to_sam_instances(text: str, num_bins: int = NUM_BINS) -> list[SAMQuery]:
    """Parse `sam_instances_to_text` output; malformed points and instances are dropped."""
    _check_bins(num_bins)
    words = _words(text)
    starts = [i for i, w in enumerate(words) if w == "point"] + [len(words)]
    queries = [_read_sam_query(words[s + 1 : e], num_bins) for s, e in pairwise(starts)]
    return [q for q in queries if q is not None]


__all__ = [
    "METADATA_FIELDS",
    "NUM_BINS",
    "POSE_BLOCKS",
    "HumanPose",
    "MetadataField",
    "SAMInstance",
    "SAMQuery",
    "boxes_to_text",
    "metadata_to_chunks",
    "metadata_to_text",
    "palette_to_text",
    "poses_to_text",
    "sam_instances_to_text",
    "text_to_boxes",
    "text_to_metadata",
    "text_to_palette",
    "text_to_poses",
    "text_to_sam_instances",
]
