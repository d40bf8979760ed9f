"""Bad inputs to pre-tokenisation (ImageColumn, TextColumn, pretokenize, crop_settings, crop_boxes): each raises a clear
error naming the column, the row and the fix; what is left out by design (boxes outside a crop, over-long sequences)
is reported in one warning per call; pixel boxes are normalised, never written as an empty sequence."""

import logging

import datasets
import numpy as np
import pytest
import torch

from fourm_hf import FourMImageProcessor
from fourm_hf.data.pretokenization import ImageColumn, TextColumn, crop_boxes, crop_settings, pretokenize
from fourm_hf.data.synthetic import SyntheticScenesConfig, render_scene, synthetic_scenes_dataset
from fourm_hf.modalities import get_modality

HEIGHT, WIDTH = 32, 40
EOS = 2


class WordTokenizer:
    """Stand-in text tokenizer: one id per word (its length + 10), `eos_token_id` 2."""

    eos_token_id = EOS

    def __init__(self, offset=10, count=None, output="dict"):
        self.offset, self.count, self.output = offset, count, output

    def __call__(self, texts, add_special_tokens=False):
        ids = [[len(word) + self.offset for word in text.split()] for text in texts]
        ids = ids[: self.count] if self.count is not None else ids
        return {"input_ids": ids} if self.output == "dict" else ids


def vq_model(modality="tok_depth@224", value=0, dtype=torch.long, batch=None, as_list=False):
    """Stand-in VQ model: the right number of ids (all `value`) per image, unless told otherwise."""
    tokens = get_modality(modality).num_tokens

    def encode(x):
        ids = torch.full((batch or len(x), tokens), value).to(dtype)
        return ids.tolist() if as_list else ids

    return encode


def instances(*boxes, score=1.0):
    return {"instances": [{"boxes": list(box), "class_name": "cube", "score": score} for box in boxes]}


def make_dataset(rows=2, rgb=None, depth=None, caption=None, det=None, rgb_feature=None):
    rgb = [np.full((HEIGHT, WIDTH, 3), 100, np.uint8)] * rows if rgb is None else rgb
    depth = [np.ones((HEIGHT, WIDTH), np.float32)] * rows if depth is None else depth
    caption = ["a red cube"] * rows if caption is None else caption
    det = [instances((0.1, 0.2, 0.5, 0.6))] * rows if det is None else det
    features = datasets.Features(
        {
            "rgb": rgb_feature or datasets.Array3D((HEIGHT, WIDTH, 3), "uint8"),
            "depth": datasets.Array2D((HEIGHT, WIDTH), "float32"),
        }
    )
    data = {"rgb": rgb, "depth": depth}
    table = datasets.Dataset.from_dict(data, features=features)
    extra = datasets.Dataset.from_dict({"caption": caption, "det": det})
    return datasets.concatenate_datasets([table, extra], axis=1)


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


RGB = ImageColumn("rgb", "rgb@224")
DEPTH = ImageColumn("depth", "tok_depth@224", vq_model())


# ---------------------------------------------------------------------------------------------------------------------
# Columns


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: ImageColumn("depth", "tok_dpeth@224", vq_model()),
            ValueError,
            r"Unknown modality 'tok_dpeth@224'\. Did you mean 'tok_depth@224'\?",
        ),
        (
            lambda: ImageColumn("caption", "caption", vq_model()),
            ValueError,
            r"caption: an image column makes a pixel or image-token modality, not sequence; use TextColumn\('caption'",
        ),
        (
            lambda: ImageColumn("depth", "tok_depth@224", tokenizer=42),
            TypeError,
            r"tok_depth@224: tokenizer must be a VQ model \(an object with encode\(batch\) -> ids\) or a callable, got int",
        ),
        (
            lambda: ImageColumn("depth", "tok_depth@224", vq_model(), processor_kwargs=[("shifted", True)]),
            TypeError,
            "processor_kwargs must be a dict",
        ),
        (
            lambda: ImageColumn("depth", "tok_dinov2@224", vq_model(), preprocess_as="tok_dpeth"),
            ValueError,
            r"Unknown modality family 'tok_dpeth'\. Did you mean 'tok_depth'\?",
        ),
        (lambda: ImageColumn(3, "tok_depth@224", vq_model()), TypeError, "ImageColumn: source must be a non-empty"),
        (lambda: ImageColumn("rgb", ""), TypeError, "ImageColumn: modality must be a non-empty"),
        (lambda: ImageColumn("rgb", "rgb@224", vq_model()), ValueError, "rgb@224: a pixels column needs no tokenizer"),
        (lambda: ImageColumn("depth", "tok_depth@224"), ValueError, r"needs a tokenizer \(its VQ model\)"),
        (
            lambda: TextColumn("depth", "tok_depth@224"),
            ValueError,
            r"a text column makes a sequence modality, not image_tokens; use ImageColumn\('depth', 'tok_depth@224'",
        ),
        (lambda: TextColumn("caption", "captoin"), ValueError, r"Did you mean 'caption'\?"),
        (
            lambda: TextColumn("caption", "caption", serializer="upper"),
            TypeError,
            "caption: serializer must be a function sample -> text, got str",
        ),
        (
            lambda: TextColumn("caption", "caption", serializer=str.split, chunks="yes"),
            TypeError,
            "caption: chunks must be True or False",
        ),
        (lambda: TextColumn("caption", "caption", chunks=True), ValueError, "a chunked column needs a serializer"),
        (lambda: TextColumn("det", "det", min_score="0.5"), TypeError, "det: min_score must be a number, got str"),
        (lambda: TextColumn("det", "det", min_score=float("nan")), ValueError, "det: min_score must be a finite"),
        (
            lambda: TextColumn("det", "det", box_format="xyxy_pixel"),
            ValueError,
            r"det: box_format must be one of .*Did you mean 'xyxy_pixels'\?",
        ),
        (
            lambda: TextColumn("caption", "caption", box_format="xyxy_pixels"),
            ValueError,
            r"caption: box_format applies to boxes that follow the crops \(det\)",
        ),
    ],
)
def test_column_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---------------------------------------------------------------------------------------------------------------------
# Arguments of pretokenize


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"image_columns": RGB}, TypeError, r"image_columns must be a list of ImageColumn, got ImageColumn; wrap"),
        ({"image_columns": "rgb"}, TypeError, r"image_columns must be a list of ImageColumn, got str"),
        (
            {"image_columns": [TextColumn("caption", "caption")]},
            TypeError,
            r"image_columns\[0\] must be a ImageColumn, got TextColumn; pass it in text_columns",
        ),
        (
            {"text_columns": [RGB]},
            TypeError,
            r"text_columns\[0\] must be a TextColumn, got ImageColumn; pass it in image",
        ),
        ({"image_columns": [], "text_columns": []}, ValueError, "Nothing to pre-tokenise"),
        ({"num_crops": 2.0}, TypeError, r"num_crops must be an integer, got float 2.0"),
        ({"num_crops": 0}, ValueError, "num_crops must be >= 1, got 0"),
        ({"min_crop_scale": 0}, ValueError, r"min_crop_scale must be in \(0, 1\], got 0"),
        ({"min_crop_scale": 1.5}, ValueError, r"min_crop_scale must be in \(0, 1\]"),
        ({"seed": 1.5}, TypeError, "seed must be an integer, got float"),
        ({"seed": "0"}, TypeError, "seed must be an integer, got str"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"num_shards": 3}, ValueError, r"num_shards must be in \[1, 2\], got 3"),
        ({"num_shards": 0}, ValueError, r"num_shards must be in \[1, 2\], got 0"),
        ({"remove_source_columns": "no"}, TypeError, "remove_source_columns must be True or False"),
        ({"image_processor": "imagenet"}, TypeError, "image_processor must be a FourMImageProcessor, got str"),
        ({"image_size": 224.0}, TypeError, "image_size must be an integer, got float"),
        ({"image_size": 64}, ValueError, r"image_size=64, but the image columns' modalities have the resolutions"),
        ({"fingerprint": 7}, TypeError, "fingerprint must be a string, got int"),
        (
            {"image_columns": [ImageColumn("rbg", "rgb@224")]},
            ValueError,
            r"Columns \['rbg'\] are not in the dataset; .*Did you mean 'rgb'\?",
        ),
        ({"image_columns": [RGB, ImageColumn("rgb", "rgb@224")]}, ValueError, "Output columns must be distinct"),
        (
            {"image_columns": [], "text_columns": [TextColumn("det", "det")]},
            ValueError,
            "det: boxes are cropped with the images; give an image column",
        ),
        (
            {"text_columns": [TextColumn("caption", "caption")], "text_tokenizer": None},
            ValueError,
            "Text columns need a `text_tokenizer`",
        ),
        (
            {"text_columns": [TextColumn("caption", "caption")], "text_tokenizer": "bert-base-uncased"},
            TypeError,
            r"text_tokenizer must be callable as text_tokenizer\(texts, add_special_tokens=False\)",
        ),
        (
            {"text_columns": [TextColumn("caption", "caption")], "text_tokenizer": lambda texts, **kw: {}},
            ValueError,
            r"text_tokenizer needs an integer eos_token_id .*got None",
        ),
    ],
)
def test_argument_errors(dataset, kwargs, error, message):
    kwargs = {"image_columns": [RGB], "text_tokenizer": WordTokenizer(), **kwargs}
    with pytest.raises(error, match=message):
        pretokenize(dataset, **kwargs)


def test_dataset_errors(dataset):
    with pytest.raises(TypeError, match=r"dataset must be a datasets.Dataset, got DatasetDict; pick a split"):
        pretokenize(datasets.DatasetDict({"train": dataset}), [RGB])
    with pytest.raises(TypeError, match="dataset must be a datasets.Dataset, got list"):
        pretokenize([{"rgb": None}], [RGB])
    with pytest.raises(ValueError, match="The dataset has no rows"):
        pretokenize(dataset.select([]), [RGB])


def test_crop_helpers_check_their_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="height must be >= 1, got 0"):
        crop_settings(rng, 0, 40, 1)
    with pytest.raises(TypeError, match="num_crops must be an integer, got float"):
        crop_settings(rng, 32, 40, 2.0)
    with pytest.raises(ValueError, match=r"min_scale must be in \(0, 1\]"):
        crop_settings(rng, 32, 40, 2, min_scale=0.0)
    crop = (0, 0, 32, 32, 0)
    with pytest.raises(
        TypeError, match=r"instances must be a list of \{'boxes', 'class_name', 'score'\} dicts, got dict"
    ):
        crop_boxes(instances((0.1, 0.1, 0.5, 0.5)), crop, 32, 40)
    with pytest.raises(ValueError, match=r"boxes look like pixel coordinates \(max 30\)"):
        crop_boxes(instances((10, 10, 30, 20))["instances"], crop, 32, 40)
    with pytest.raises(ValueError, match="box_format must be one of"):
        crop_boxes([], crop, 32, 40, box_format="pixels")


# ---------------------------------------------------------------------------------------------------------------------
# Rows that cannot be represented


def run(data, image_columns=(RGB,), text_columns=(), **kwargs):
    options = {"text_tokenizer": WordTokenizer(), **kwargs}
    return pretokenize(data, list(image_columns), list(text_columns), **options)


DET = TextColumn("det", "det")


@pytest.mark.parametrize(
    "data, call, error, message",
    [
        # boxes
        (
            dict(det=[instances((10, 5, 30, 25))] * 2),
            dict(text_columns=[DET]),
            ValueError,
            r"det: row 0 of column 'det': boxes look like pixel coordinates \(max 30\); pass normalised \[0, 1\] boxes or "
            r"box_format='xyxy_pixels'",
        ),
        (
            dict(det=[instances((10, 5, 4, 8))] * 2),
            dict(text_columns=[TextColumn("det", "det", box_format="xyxy_pixels")]),
            ValueError,
            r"det: row 0 of column 'det': instance 0: box \[10, 5, 4, 8\] has a negative width or height; for COCO's \(x, y, "
            r"width, height\) pass box_format='xywh_pixels'",
        ),
        (
            dict(det=[instances((0.1, 0.1, 0.5, 0.5))] * 2),
            dict(text_columns=[TextColumn("det", "det", box_format="xywh_pixels")]),
            ValueError,
            r"box_format='xywh_pixels' but every box lies within \[0, 1\] on a 32x40 image: these look normalised",
        ),
        (
            dict(det=[{"instances": [{"boxes": [0.1, 0.1, 0.5, 0.5]}]}] * 2),
            dict(text_columns=[DET]),
            ValueError,
            r"row 0 of column 'det': instance 0: expected \{'boxes': \[xmin, ymin, xmax, ymax\], 'class_name'.*got keys \['boxes'\]",
        ),
        (
            dict(det=[instances((0.1, float("nan"), 0.5, 0.5))] * 2),
            dict(text_columns=[DET]),
            ValueError,
            "instance 0: boxes must be 4 finite numbers",
        ),
        (
            dict(det=[instances((0.1, 0.2, 0.5))] * 2),
            dict(text_columns=[DET]),
            ValueError,
            "boxes must be 4 finite numbers",
        ),
        (
            dict(det=[None, instances((0.1, 0.2, 0.5, 0.6))]),
            dict(text_columns=[DET]),
            ValueError,
            r"det: row 0 of column 'det': expected 4M's det format \{'instances'.*got NoneType",
        ),
        (
            dict(det=[instances((0.1, 0.2, 0.5, 0.6)), {"boxes": [[0.1, 0.2, 0.5, 0.6]], "labels": ["cube"]}]),
            dict(text_columns=[DET]),
            TypeError,
            r"row 1 of column 'det': instances must be a list of .* dicts, got NoneType",
        ),
        # images
        (
            dict(
                rgb=[np.zeros((HEIGHT, WIDTH, 3), np.float32)] * 2,
                rgb_feature=datasets.Array3D((HEIGHT, WIDTH, 3), "float32"),
            ),
            {},
            ValueError,
            r"rgb@224: pixel columns keep uint8 RGB images \(H, W, 3\); row 0 of column 'rgb' is float32 .*"
            r"\(image \* 255\)\.round\(\)\.astype\(np\.uint8\)",
        ),
        (
            dict(depth=[np.ones((HEIGHT, WIDTH), np.float32), np.full((HEIGHT, WIDTH), np.nan, np.float32)]),
            dict(image_columns=[DEPTH]),
            ValueError,
            r"row 1 of column 'depth' has 1280 NaN or infinite values",
        ),
        (
            dict(depth=[np.ones((HEIGHT, WIDTH), np.float32), -np.ones((HEIGHT, WIDTH), np.float32)]),
            dict(image_columns=[ImageColumn("depth", "tok_semseg@224", vq_model("tok_semseg@224"))]),
            TypeError,
            r"tok_semseg@224 \(rows 0-1 of column 'depth'\): semseg: expected integer class ids",
        ),
        # text
        (
            dict(caption=["a cube", None]),
            dict(text_columns=[TextColumn("caption", "caption")]),
            ValueError,
            "caption: row 1 of column 'caption' is None; drop such rows first",
        ),
        (
            dict(caption=[{"text": "a"}, {"text": "b"}]),
            dict(text_columns=[TextColumn("caption", "caption")]),
            TypeError,
            r"caption: row 0 of column 'caption' is a dict: text columns hold strings .*TextColumn\(serializer=\.\.\.\)",
        ),
        (
            dict(caption=[["a"], ["b"]]),
            dict(text_columns=[TextColumn("caption", "caption", serializer=len)]),
            TypeError,
            "caption: row 0 of column 'caption': the serializer must return a string, got int",
        ),
        (
            dict(),
            dict(text_columns=[TextColumn("caption", "caption", serializer=str.upper, chunks=True)]),
            TypeError,
            "a chunked serializer must return a list of strings, got 'A RED CUBE'",
        ),
        (
            dict(),
            dict(text_columns=[TextColumn("det", "caption")]),
            TypeError,
            r"caption: row 0 of column 'det' is a dict: text columns hold strings \(the family 'caption' has no serializer",
        ),
        (
            dict(det=[{"instances": [{"boxes": [0.1, 0.2, 0.5, 0.6], "class_name": 3}]}] * 2),
            dict(text_columns=[DET]),
            TypeError,
            "row 0 of column 'det': instance 0: class_name must be a string, got 3",
        ),
    ],
)
def test_row_errors(data, call, error, message):
    with pytest.raises(error, match=message):
        run(make_dataset(**data), **call)


def test_missing_and_empty_images():
    images = datasets.Dataset.from_dict(
        {"rgb": [np.zeros((HEIGHT, WIDTH, 3), np.uint8), None]},
        features=datasets.Features({"rgb": datasets.Image()}),
    )
    with pytest.raises(ValueError, match=r"row 1 of column 'rgb' has no image \(None\); drop such rows first"):
        run(images)
    empty = datasets.Dataset.from_dict(
        {"rgb": [np.zeros((0, WIDTH, 3), np.uint8)]},
        features=datasets.Features({"rgb": datasets.Array3D((None, WIDTH, 3), "uint8")}),
    )
    with pytest.raises(ValueError, match=r"row 0 of column 'rgb' is an empty image: shape \(0,\)"):
        run(empty)
    flat = datasets.Dataset.from_dict({"rgb": [np.zeros(WIDTH, np.uint8)]})
    with pytest.raises(ValueError, match=r"row 0 of column 'rgb': expected an image of shape \(H, W\) or \(H, W, C\)"):
        run(flat)
    flags = datasets.Dataset.from_dict({"depth": [np.zeros((HEIGHT, WIDTH), bool)]})
    with pytest.raises(TypeError, match="row 0 of column 'depth' has dtype bool"):
        run(flags, [DEPTH])
    grey = datasets.Dataset.from_dict(
        {"rgb": [np.zeros((HEIGHT, WIDTH), np.uint8)]}, features=datasets.Features({"rgb": datasets.Image()})
    )
    with pytest.raises(ValueError, match=r"row 0 of column 'rgb' is uint8 \(32, 40\)\. Convert it first"):
        run(grey)


@pytest.mark.parametrize(
    "tokenizer, error, message",
    [
        (
            vq_model(value=8192),
            ValueError,
            r"tok_depth@224: the tokenizer gave ids in \[8192, 8192\], outside the modality's vocabulary \[0, 8191\]",
        ),
        (vq_model(value=-1), ValueError, r"ids in \[-1, -1\], outside the modality's vocabulary"),
        (
            vq_model(dtype=torch.float32),
            TypeError,
            "tok_depth@224: the tokenizer must return integer ids, got torch.float32",
        ),
        (vq_model(batch=1), ValueError, r"tok_depth@224: the tokenizer returned ids of shape \(1, 196\) for 2 images"),
        (vq_model(as_list=True), TypeError, "tok_depth@224: the tokenizer must return a tensor of ids, got list"),
        (vq_model("tok_depth@448"), ValueError, "the tokenizer gave 784 tokens per image, the modality has 196"),
    ],
)
def test_vq_model_output_errors(dataset, tokenizer, error, message):
    with pytest.raises(error, match=message):
        run(dataset, [ImageColumn("depth", "tok_depth@224", tokenizer)])


@pytest.mark.parametrize(
    "tokenizer, error, message",
    [
        (
            WordTokenizer(offset=30_000),
            ValueError,
            r"caption: the text tokenizer gave ids in \[30001, 30004\], outside the modality's vocabulary \[0, 29999\]",
        ),
        (WordTokenizer(count=1), ValueError, "caption: the text tokenizer returned 1 id lists for 2 texts"),
        (WordTokenizer(output="list"), TypeError, r"must return a dict with 'input_ids'.*got list"),
    ],
)
def test_text_tokenizer_output_errors(dataset, tokenizer, error, message):
    with pytest.raises(error, match=message):
        run(dataset, text_columns=[TextColumn("caption", "caption")], text_tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------------------------------
# Pixel boxes, and what is left out by design


def fourm_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("fourm_hf") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("box_format", ["xyxy_pixels", "xywh_pixels"])
def test_pixel_boxes_are_normalised_by_the_image_size(box_format, caplog):
    normalised = [instances((0.1, 0.25, 0.5, 0.75), (0.5, 0.5, 1.0, 1.0))] * 2
    pixels = (4, 8, 20, 24), (20, 16, 40, 32)  # the same boxes on the 40x32 image, xyxy
    if box_format == "xywh_pixels":
        pixels = tuple((x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in pixels)
    options = {"num_crops": 3, "seed": 1}
    expected = run(make_dataset(det=normalised), text_columns=[DET], **options)["det"]
    column = TextColumn("det", "det", box_format=box_format)
    got = run(make_dataset(det=[instances(*pixels)] * 2), text_columns=[column], **options)["det"]
    assert got == expected and all(len(sequence) > 1 for row in got for sequence in row)  # never a lone [EOS]


def test_boxes_left_out_are_reported_once(caplog):
    data = make_dataset(
        det=[instances((0.0, 0.0, 0.1, 0.1), (0.4, 0.4, 0.6, 0.6)), instances((0.4, 0.4, 0.6, 0.6), score=0.3)]
    )
    with caplog.at_level(logging.WARNING):
        out = run(data, text_columns=[DET], batch_size=1)
    # the centre crop (x in [4, 36) of 40) cuts the corner box away; the low-score box is left out everywhere
    assert out["det"][0][0][-1] == EOS and len(out["det"][0][0]) > 1 and out["det"][1][0] == [EOS]
    assert fourm_warnings(caplog) == [
        "det: 1 of 2 boxes (counted once per crop) fell outside their crop and 1 of 3 boxes scored below min_score=0.6; they are left "
        "out of the crops' sequences."
    ]


def test_long_sequences_are_reported(caplog):
    long = " ".join(["word"] * 300)
    data = make_dataset(caption=[long, "a short one"])
    with caplog.at_level(logging.WARNING):
        out = run(data, text_columns=[TextColumn("caption", "caption")])
    assert len(out["caption"][0]) == 301  # stored whole
    assert fourm_warnings(caplog) == [
        "caption: 1 of 2 sequences are longer than the modality's max_tokens (256, [EOS] included; the longest has "
        "301). They are stored whole; the masking collator keeps their first 256 tokens (45 tokens cut in all)."
    ]


def test_instances_without_score_count_as_sure(caplog):
    """`datasets` fills a score missing from some instances with None: such boxes are kept, as 4M keeps them."""
    det = [{"instances": [{"boxes": [0.1, 0.2, 0.5, 0.6], "class_name": "cube"}]},
           {"instances": [{"boxes": [0.1, 0.2, 0.5, 0.6], "class_name": "cube", "score": 0.9}]}]  # fmt: skip
    out = run(make_dataset(det=det), text_columns=[DET])
    assert all(len(row[0]) > 1 for row in out["det"])


def test_valid_rows_give_no_warning(dataset, caplog):
    with caplog.at_level(logging.WARNING):
        out = run(
            dataset,
            [RGB, DEPTH],
            [TextColumn("caption", "caption"), DET],
            num_crops=2,
            image_processor=FourMImageProcessor(do_center_crop=False),
        )
    assert fourm_warnings(caplog) == []
    assert out["caption"][0] == [11, 13, 14, EOS] and len(out["det"][0]) == 2


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: synthetic_scenes_dataset(0), ValueError, "num_scenes must be >= 1, got 0"),
        (lambda: synthetic_scenes_dataset(2, height=32.0), TypeError, "height must be an integer, got float 32.0"),
        (lambda: synthetic_scenes_dataset(2, width=0), ValueError, "Scenes need a positive size, got 224x0"),
        (lambda: synthetic_scenes_dataset(2, seed=-1), ValueError, "seed must be >= 0, got -1"),
        (lambda: synthetic_scenes_dataset(2, num_proc=0), ValueError, "num_proc must be >= 1, got 0"),
        (lambda: synthetic_scenes_dataset(2, columns="rgb"), TypeError, "columns must be a list of column names"),
        (lambda: synthetic_scenes_dataset(2, columns=["normals"]), ValueError, r"Did you mean 'normal'\?"),
        (lambda: render_scene(0, 8, 8, max_objects=0), ValueError, "max_objects must be >= 1, got 0"),
        (lambda: SyntheticScenesConfig(num_train=-1), ValueError, "num_train must be >= 0, got -1"),
    ],
)
def test_synthetic_scene_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
