"""Serialisers of the sequence modalities: exact examples of the official format and property-based round trips."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_hf.data.serialization import (
    METADATA_FIELDS,
    POSE_BLOCKS,
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
from fourm_hf.models.fourm.tokenization_fourm import COCO_CLASSES

STEP = 1 / 999  # one coordinate bin
settings.register_profile("fourm", max_examples=60, deadline=None)
settings.load_profile("fourm")

unit = st.floats(0.0, 1.0, allow_nan=False)
labels = st.sampled_from(COCO_CLASSES)


@st.composite
def boxes(draw):
    x0, x1 = sorted((draw(unit), draw(unit)))
    y0, y1 = sorted((draw(unit), draw(unit)))
    return (x0, y0, x1, y1)


# --- det ---------------------------------------------------------------------------------------------------------------


def test_boxes_official_format():
    text = boxes_to_text([(0.6, 0.1, 0.9, 0.99), (0.012, 0.04, 0.5, 0.7)], ["tree", "wine glass"])
    # sorted by xmin^2 + ymin^2, coordinates round(c * 999)
    assert text == "v0=12 v1=40 v2=500 v3=699 wine glass v0=599 v1=100 v2=899 v3=989 tree"
    assert text_to_boxes(text + " [EOS] [PAD]") == (
        [(12 / 999, 40 / 999, 500 / 999, 699 / 999), (599 / 999, 100 / 999, 899 / 999, 989 / 999)],
        ["wine glass", "tree"],
    )


@given(st.lists(st.tuples(boxes(), labels), max_size=8))
def test_boxes_round_trip(items):
    text = boxes_to_text([b for b, _ in items], [lab for _, lab in items])
    decoded, decoded_labels = text_to_boxes(text)
    expected = sorted(items, key=lambda item: item[0][0] ** 2 + item[0][1] ** 2)
    assert decoded_labels == [lab for _, lab in expected]
    for box, (orig, _) in zip(decoded, expected):
        assert all(abs(a - b) <= STEP / 2 + 1e-12 for a, b in zip(box, orig))
    assert boxes_to_text(decoded, decoded_labels) == text  # the decoded boxes are fixed points


def test_boxes_parser_drops_malformed_groups():
    text = "person v0=1 v1=2 v2=3 dog v0=1 v1=2 v2=3 v3=4 v0=5 v1=6 v2=7 v3=8 cat v0=9 v2=1 v1=1 v3=1 cow"
    assert text_to_boxes(text) == ([(5 / 999, 6 / 999, 7 / 999, 8 / 999)], ["cat"])


@pytest.mark.parametrize(
    "box, message",
    [
        ((0.1, 0.2, 1.2, 0.5), r"normalised to \[0, 1\]"),
        ((0.5, 0.2, 0.1, 0.5), "xmin <= xmax"),
        ((0.1, 0.2), "4 numbers"),
    ],
)
def test_boxes_errors(box, message):
    with pytest.raises(ValueError, match=message):
        boxes_to_text([box], ["dog"])


def test_boxes_label_errors():
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        boxes_to_text([(0, 0, 1, 1)] * 2, ["dog"])
    with pytest.raises(ValueError, match="class name"):
        boxes_to_text([(0, 0, 1, 1)], ["v0=3"])


# --- metadata ------------------------------------------------------------------------------------------------------------


def test_metadata_official_format():
    chunks = metadata_to_chunks(
        {"original_width": 640, "brightness": 100.0, "n_humans": 3, "aesthetic_score": 5.2, "watermark_score": 0.1}
    )
    # width // 32; int(100/255 * 49) = 19; counts as is; aesthetic 4.5 <= 5.2 < 5.5 -> bin 1; watermark < 0.5 -> 0
    assert chunks == ["v1=0 v0=20", "v1=10 v0=19", "v1=5 v0=3", "v1=20 v0=1", "v1=19 v0=0"]
    decoded = text_to_metadata(" ".join(chunks) + " [EOS]")
    assert decoded == {
        "original_width": 640,
        "n_humans": 3,
        "brightness": pytest.approx(19.5 / 49 * 255),
        "watermark_score": 0.25,
        "aesthetic_score": 5.0,
    }


metadata_values = st.fixed_dictionaries(
    {},
    optional={
        name: (st.integers(0, 5000) if spec.kind in ("size", "count") else st.floats(-10.0, 1000.0, allow_nan=False))
        for name, spec in METADATA_FIELDS.items()
    },
)


@given(metadata_values, st.randoms())
def test_metadata_round_trip(metadata, rng):
    order = list(metadata)
    rng.shuffle(order)
    text = metadata_to_text(metadata, order=order)
    decoded = text_to_metadata(text)
    assert set(decoded) == set(metadata)
    assert metadata_to_text(decoded, order=order) == text  # decoded values fall in the same bins
    for name, value in metadata.items():
        spec = METADATA_FIELDS[name]
        if spec.kind == "count":
            assert decoded[name] == min(value, 999)
        elif spec.kind == "size":
            assert decoded[name] == min(value // 32, 999) * 32
        elif spec.kind == "range":
            clipped = min(max(value, spec.vmin), spec.vmax)
            assert abs(decoded[name] - clipped) <= (spec.vmax - spec.vmin) / (spec.levels - 1)


def test_metadata_errors():
    with pytest.raises(ValueError, match="unknown field 'height'"):
        metadata_to_chunks({"height": 3})
    with pytest.raises(ValueError, match="must list exactly"):
        metadata_to_chunks({"n_humans": 3}, order=["n_humans", "entropy"])
    with pytest.raises(ValueError, match="finite"):
        metadata_to_chunks({"entropy": float("nan")})


# --- colour palette ------------------------------------------------------------------------------------------------------

colors = st.tuples(*[st.integers(0, 255)] * 3)


def test_palette_official_format():
    assert palette_to_text([(10, 200, 30), (250, 250, 0)]) == "v1=2 v0=10 v0=200 v0=30 v0=250 v0=250 v0=0"


@given(st.lists(colors, min_size=1, max_size=7))
def test_palette_round_trip(palette):
    assert text_to_palette(palette_to_text(palette) + " [EOS]") == palette


def test_palette_errors():
    with pytest.raises(ValueError, match=r"3 integers in \[0, 255\]"):
        palette_to_text([(10, 300, 0)])
    with pytest.raises(ValueError, match="between 1 and 999 colours"):
        palette_to_text([])


# --- human poses ---------------------------------------------------------------------------------------------------------


@st.composite
def poses(draw):
    return HumanPose(
        box=draw(boxes()),
        pose_tokens=draw(st.lists(st.integers(0, 1023), min_size=8, max_size=8)),
        global_orient=draw(st.lists(st.floats(-1, 1), min_size=9, max_size=9)),
        betas=draw(st.lists(st.floats(-3, 3), min_size=10, max_size=10)),
        camera=draw(st.lists(st.floats(-1, 19), min_size=3, max_size=3)),
    )


def test_poses_official_format():
    pose = HumanPose((0.1, 0.2, 0.3, 0.4), [1, 600, 3, 4, 5, 6, 7, 1023], [0.1] * 9, [1.0] * 10, [0.5, 1.0, 2.0])
    text = poses_to_text([pose])
    assert text.startswith("human v0=100 v1=200 v2=300 v3=400 pose v0=1 v1=88 v0=3 v0=4 v0=5 v0=6 v0=7 v1=511 global")
    # global round(499.5 x + 499.5), camera round(49.95 c + 49.95), shape round(166.5 b + 499.5)
    assert " global" + " v0=549" * 9 + " camera v0=75 v0=100 v0=150 shape" + " v0=666" * 10 in text
    assert poses_to_text([]) == "none" and text_to_poses("none [EOS]") == []


@given(st.lists(poses(), max_size=3), st.permutations(POSE_BLOCKS))
def test_poses_round_trip(people, order):
    text = poses_to_text(people, block_order=order)
    decoded = text_to_poses(text)
    assert len(decoded) == len(people)
    for got, want in zip(decoded, people):
        assert got.pose_tokens == want.pose_tokens
        assert all(abs(a - b) <= STEP / 2 + 1e-9 for a, b in zip(got.box, want.box))
        assert all(abs(a - b) <= 0.5 / 499.5 + 1e-9 for a, b in zip(got.global_orient, want.global_orient))
        assert all(abs(a - b) <= 0.5 / 166.5 + 1e-9 for a, b in zip(got.betas, want.betas))
        assert all(abs(a - b) <= 0.5 / 49.95 + 1e-9 for a, b in zip(got.camera, want.camera))
    assert poses_to_text(decoded, block_order=order) == text


def test_poses_errors():
    good = HumanPose((0, 0, 1, 1), [0] * 8, [0.0] * 9, [0.0] * 10, [0.0] * 3)
    with pytest.raises(ValueError, match="block 'pose' needs 8 values, got 7"):
        poses_to_text([HumanPose((0, 0, 1, 1), [0] * 7, [0.0] * 9, [0.0] * 10, [0.0] * 3)])
    with pytest.raises(ValueError, match=r"codes must be in \[0, 1024\)"):
        poses_to_text([HumanPose((0, 0, 1, 1), [0] * 7 + [1024], [0.0] * 9, [0.0] * 10, [0.0] * 3)])
    with pytest.raises(ValueError, match="permutation"):
        poses_to_text([good], block_order=("pose", "global"))
    with pytest.raises(ValueError, match="normalised"):
        poses_to_text([HumanPose((0, 0, 2, 1), [0] * 8, [0.0] * 9, [0.0] * 10, [0.0] * 3)])


# --- SAM instances -------------------------------------------------------------------------------------------------------

pixels = st.integers(0, 223)


@st.composite
def sam_queries(draw):
    def instance():
        x0, x1 = sorted((draw(pixels), draw(pixels)))
        y0, y1 = sorted((draw(pixels), draw(pixels)))
        return SAMInstance((x0, y0, x1, y1), draw(st.lists(st.integers(0, 1023), min_size=16, max_size=16)))

    return SAMQuery((draw(pixels), draw(pixels)), [instance() for _ in range(draw(st.integers(0, 3)))])


def test_sam_official_format():
    query = SAMQuery((10, 20), [SAMInstance((1, 2, 30, 40), [0, 511, 512, 1023] * 4)])
    text = sam_instances_to_text([query, SAMQuery((5, 6))])
    assert text == (
        "point v0=20 v1=10 polygon v0=1 v1=2 v2=30 v3=40" + " v0=0 v0=511 v1=0 v1=511" * 4 + " point v0=6 v1=5 none"
    )


@given(st.lists(sam_queries(), max_size=7))
def test_sam_round_trip(queries):
    assert text_to_sam_instances(sam_instances_to_text(queries) + " [EOS]") == queries


def test_sam_errors():
    with pytest.raises(ValueError, match="expected 16 mask tokens, got 3"):
        sam_instances_to_text([SAMQuery((1, 1), [SAMInstance((0, 0, 1, 1), [1, 2, 3])])])
    with pytest.raises(ValueError, match="pixel coordinates"):
        sam_instances_to_text([SAMQuery((1, 1000))])
