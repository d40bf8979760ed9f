"""Bad inputs to the serialisers and parsers of `fourm_hf.data.serialization` and to the span helpers of
`fourm_hf.data.sequences`: wrong types, lengths, ranges and values raise a `TypeError` / `ValueError` naming the
item."""

import pytest
import torch

from fourm_hf import get_modality
from fourm_hf.data.sequences import SpecialTokens, blank_target, mask_spans, merge_span_batch, merge_spans
from fourm_hf.data.serialization import (
    HumanPose,
    SAMInstance,
    SAMQuery,
    boxes_to_text,
    metadata_to_chunks,
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

BOX = (0.1, 0.2, 0.3, 0.4)


def pose(**fields) -> HumanPose:
    values = {"box": BOX, "pose_tokens": [0] * 8, "global_orient": [0.0] * 9, "betas": [0.0] * 10, "camera": [0.0] * 3}
    return HumanPose(**{**values, **fields})


@pytest.mark.parametrize(
    "call, error, message",
    [
        # boxes
        (lambda: boxes_to_text([5], ["dog"]), TypeError, r"det box 0: a box is 4 numbers .* got int 5"),
        (lambda: boxes_to_text(5, ["dog"]), TypeError, "det: boxes must be a list, got int 5"),
        (lambda: boxes_to_text(["0 0 1 1"], ["dog"]), TypeError, r"det box 0: a box is 4 numbers .* got str"),
        (lambda: boxes_to_text([(0.1, 0.2)], ["dog"]), ValueError, "det box 0: a box is 4 numbers .* got 2"),
        (
            lambda: boxes_to_text([(0.1, "a", 0.3, 0.4)], ["dog"]),
            TypeError,
            r"det box 0\[1\] must be a number, got str",
        ),
        (lambda: boxes_to_text([(0.1, True, 0.3, 0.4)], ["dog"]), TypeError, r"det box 0\[1\] must be a number"),
        (lambda: boxes_to_text([(0, 0, float("nan"), 1)], ["dog"]), ValueError, r"det box 0\[2\] must be a finite"),
        (
            lambda: boxes_to_text([(10, 20, 612, 400)], ["dog"]),
            ValueError,
            r"normalised to \[0, 1\].*look like pixel coordinates \(max 612\): divide x by the image width",
        ),
        (lambda: boxes_to_text([(-0.1, 0, 0.5, 0.5)], ["dog"]), ValueError, r"normalised to \[0, 1\], got \[-0.1"),
        (lambda: boxes_to_text([(0.5, 0.2, 0.1, 0.5)], ["dog"]), ValueError, "xmin <= xmax and ymin <= ymax"),
        (lambda: boxes_to_text([BOX], ["dog", "cat"]), ValueError, "det: got 1 boxes but 2 labels"),
        (lambda: boxes_to_text([BOX], "dog"), TypeError, "det: labels must be a list, got str 'dog'"),
        (lambda: boxes_to_text([BOX], [3]), TypeError, r"det: label 0 must be a class name \(a string\), got int 3"),
        (lambda: boxes_to_text([BOX], ["v0=3"]), ValueError, "label 0 must be a class name without value or special"),
        (lambda: boxes_to_text([BOX], [""]), ValueError, "label 0 must be a class name"),
        (lambda: boxes_to_text([BOX], ["dog"], num_bins=1), ValueError, "num_bins must be >= 2, got 1"),
        (lambda: boxes_to_text([BOX], ["dog"], sort="yes"), TypeError, "sort must be True or False, got str"),
        (lambda: boxes_to_text([BOX], ["dog"], num_bins=10.0), TypeError, "num_bins must be an integer, got float"),
        # metadata
        (lambda: metadata_to_text([("brightness", 3)]), TypeError, r"metadata must be a dict \{field name: value\}"),
        (lambda: metadata_to_text({"brightnes": 3}), ValueError, r"unknown field 'brightnes'.*'brightness'\?"),
        (lambda: metadata_to_text({"brightness": "3"}), TypeError, "metadata field 'brightness' must be a number"),
        (lambda: metadata_to_text({"brightness": True}), TypeError, "must be a number, got bool"),
        (lambda: metadata_to_text({"entropy": float("nan")}), ValueError, "'entropy' must be a finite number"),
        (lambda: metadata_to_text({"n_humans": -2}), ValueError, r"'n_humans' \(a count\) must be >= 0, got -2"),
        (lambda: metadata_to_text({"n_humans": 2.5}), ValueError, "'n_humans' is a count and must be a whole number"),
        (lambda: metadata_to_text({"original_width": -5}), ValueError, r"'original_width' \(a size\) must be >= 0"),
        (lambda: metadata_to_chunks({"n_humans": 3}, order=["n_humans", "entropy"]), ValueError, "must list exactly"),
        (lambda: metadata_to_chunks({"n_humans": 3}, order=["n_humans"] * 2), ValueError, "must list exactly"),
        (lambda: metadata_to_chunks({"n_humans": 3}, order="n_humans"), TypeError, "metadata: order must be a list"),
        (lambda: metadata_to_chunks({"n_humans": 3}, num_bins=0), ValueError, "num_bins must be >= 2, got 0"),
        # palettes
        (lambda: palette_to_text(5), TypeError, "color_palette: colors must be a list, got int 5"),
        (lambda: palette_to_text([]), ValueError, "expected between 1 and 999 colours, got 0"),
        (lambda: palette_to_text([5]), TypeError, "color_palette: colour 0 must be a list, got int 5"),
        (lambda: palette_to_text(["red"]), TypeError, "color_palette: colour 0 must be a list, got str 'red'"),
        (lambda: palette_to_text([(300, 0, 0)]), ValueError, r"colour 0 must be 3 integers in \[0, 255\]"),
        (lambda: palette_to_text([(0, 0, 0), (-1, 0, 0)]), ValueError, r"colour 1 must be 3 integers in \[0, 255\]"),
        (lambda: palette_to_text([(3, 0)]), ValueError, "colour 0 must be 3 integers"),
        (lambda: palette_to_text([(0.5, 0, 0)]), ValueError, "colour 0 must be 3 integers"),
        (lambda: palette_to_text([(float("nan"), 0, 0)]), ValueError, r"colour 0\[0\] must be a finite number"),
        (lambda: palette_to_text([(True, 0, 0)]), TypeError, r"colour 0\[0\] must be a number, got bool"),
        # human poses
        (lambda: poses_to_text(5), TypeError, "human_poses: poses must be a list, got int 5"),
        (lambda: poses_to_text("none"), TypeError, "human_poses: poses must be a list, got str"),
        (lambda: poses_to_text([{"box": BOX}]), TypeError, r"human_poses person 0 must be a HumanPose\(box, "),
        (lambda: poses_to_text([pose(box=(0, 0, 2, 1))]), ValueError, r"human_poses person 0: box coordinates"),
        (lambda: poses_to_text([pose(pose_tokens=[1.5] * 8)]), TypeError, "codes must be integers, got float 1.5"),
        (lambda: poses_to_text([pose(pose_tokens=[0] * 7 + [1024])]), ValueError, r"codes must be in \[0, 1024\)"),
        (lambda: poses_to_text([pose(pose_tokens=[0] * 7)]), ValueError, "block 'pose' needs 8 values, got 7"),
        (lambda: poses_to_text([pose(betas=5)]), TypeError, "human_poses person 0 shape must be a list, got int"),
        (lambda: poses_to_text([pose(camera=[0.0, "x", 0.0])]), TypeError, r"person 0 camera\[1\] must be a number"),
        (lambda: poses_to_text([pose()], block_order=["pose"]), ValueError, "block_order must be a permutation"),
        # SAM instances
        (lambda: sam_instances_to_text(5), TypeError, "sam_instance: queries must be a list, got int"),
        (lambda: sam_instances_to_text([{"point": (1, 2)}]), TypeError, r"query 0 must be a SAMQuery\(point, "),
        (lambda: sam_instances_to_text([SAMQuery(5)]), TypeError, "sam_instance query 0 point must be a list, got int"),
        (lambda: sam_instances_to_text([SAMQuery((1, 2, 3))]), ValueError, r"a point is \(x, y\), got \(1, 2, 3\)"),
        (lambda: sam_instances_to_text([SAMQuery((-1, 2))]), ValueError, r"pixel coordinates must be integers in"),
        (lambda: sam_instances_to_text([SAMQuery((1.5, 2))]), ValueError, "pixel coordinates must be integers"),
        (lambda: sam_instances_to_text([SAMQuery((1, 2), [{"box": 1}])]), TypeError, r"must be a SAMInstance\("),
        (
            lambda: sam_instances_to_text([SAMQuery((1, 2), [SAMInstance((5, 5, 1, 1), [0] * 16)])]),
            ValueError,
            "box must be .* with min <= max",
        ),
        (
            lambda: sam_instances_to_text([SAMQuery((1, 2), [SAMInstance(("a", 0, 1, 1), [0] * 16)])]),
            TypeError,
            r"instance 0 box\[0\] must be a number, got str",
        ),
        (
            lambda: sam_instances_to_text([SAMQuery((1, 2), [SAMInstance((0, 0, 5, 5), [0] * 3)])]),
            ValueError,
            "expected 16 mask tokens, got 3",
        ),
        (
            lambda: sam_instances_to_text([SAMQuery((1, 2), [SAMInstance((0, 0, 5, 5), 7)])]),
            TypeError,
            "instance 0 tokens must be a list, got int",
        ),
        (
            lambda: sam_instances_to_text([SAMQuery((1, 2), [SAMInstance((0, 0, 5, 5), [5000] * 16)])]),
            ValueError,
            r"codes must be in \[0, 1024\), got 5000",
        ),
    ],
)
def test_serialiser_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "parse", [text_to_boxes, text_to_metadata, text_to_palette, text_to_poses, text_to_sam_instances]
)
@pytest.mark.parametrize("text", [5, None, b"v1=1", ["human"]])
def test_parsers_take_strings(parse, text):
    with pytest.raises(TypeError, match=r"text must be a string \(a decoded sequence\), got"):
        parse(text)


@pytest.mark.parametrize("parse", [text_to_boxes, text_to_metadata, text_to_poses, text_to_sam_instances])
def test_parsers_check_num_bins(parse):
    with pytest.raises(ValueError, match="num_bins must be >= 2, got 1"):
        parse("v0=0 v1=0 v2=0 v3=0 dog", num_bins=1)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: mask_spans([1, 2, 3], [True], str), ValueError, "mask_spans: 3 tokens but 1 keep flags"),
        (lambda: mask_spans(5, [True], str), TypeError, "mask_spans: tokens must be a sequence, got int"),
        (lambda: mask_spans([1], None, str), TypeError, "mask_spans: keep must be a sequence, got NoneType"),
        (lambda: merge_spans(5, [1], {1}), TypeError, "merge_spans: inputs must be a sequence of tokens, got int"),
        (lambda: merge_spans([1], None, {1}), TypeError, "merge_spans: targets must be a sequence of tokens"),
        (
            lambda: merge_span_batch(
                torch.zeros(2, 3, dtype=torch.long),
                torch.zeros(1, 3, dtype=torch.bool),
                torch.zeros(2, 4, dtype=torch.long),
                SpecialTokens(),
            ),
            ValueError,
            r"input_ids \(2, 3\), input_mask \(1, 3\) and generated \(2, 4\) must share the batch size",
        ),
        (
            lambda: merge_span_batch(
                torch.zeros(3, dtype=torch.long),
                torch.zeros(3, dtype=torch.bool),
                torch.zeros(1, 4, dtype=torch.long),
                SpecialTokens(),
            ),
            ValueError,
            r"merge_span_batch: input_ids must be a 2-D tensor \(batch, length\), got \(3,\)",
        ),
        (lambda: SpecialTokens().sentinel(1.5), TypeError, "sentinel index must be an integer, got float"),
        (lambda: SpecialTokens(sentinel_ids=()).sentinel(1), ValueError, r"\[S_1\] is not in the vocabulary \(0 sent"),
        (lambda: blank_target(get_modality("caption"), 2.0), TypeError, "caption: batch_size must be an integer"),
        (lambda: blank_target(get_modality("caption"), 1, 2.5), TypeError, "caption: length must be an integer"),
        (lambda: blank_target(get_modality("caption"), 1, 1000), ValueError, r"caption: length must be in \[2, 257\]"),
        (lambda: blank_target(get_modality("t5_caption"), 1), ValueError, "sequence_embedding modality and cannot be"),
    ],
)
def test_sequence_helper_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
