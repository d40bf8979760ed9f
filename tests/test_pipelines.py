"""transformers' pipelines on 4M: image-classification / image-segmentation / depth-estimation for the task heads
(saved by training/finetune.py, or by hand beside a FourMImageProcessor), image-feature-extraction for the encoder,
and the registered any-to-any pipeline; each compared with calling the model directly on the same image."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import imported_script, restored_registry, tiny_any_to_any
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image
from transformers import pipeline
from transformers.image_utils import PILImageResampling

from fourm_hf import (
    MODALITIES,
    FourMAnyToAnyPipeline,
    FourMConfig,
    FourMEncoderModel,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForMaskedModeling,
    FourMForSemanticSegmentation,
    FourMGenerationConfig,
    FourMImageProcessor,
    register_modality,
)
from fourm_hf.pipelines.any_to_any import to_pil

FINETUNE_SCRIPT = Path(__file__).resolve().parents[1] / "training" / "finetune.py"
PIXELS, DEPTH = "rgb@32", "tok_depth@32"
LABELS = {0: "bg", 1: "red", 2: "blue"}
HEADS = {
    "image-classification": FourMForImageClassification,
    "image-segmentation": FourMForSemanticSegmentation,
    "depth-estimation": FourMForDepthEstimation,
}


@pytest.fixture(scope="module", autouse=True)
def tiny_modalities():
    """32-pixel RGB with 8-pixel patches and 4x4 depth tokens; the registry is restored afterwards."""
    with restored_registry():
        register_modality(PIXELS, patch_size=8, overwrite=True)
        register_modality(DEPTH, vocab_size=32, patch_size=8, overwrite=True)
        yield


def tiny_config(**kwargs) -> FourMConfig:
    torch.manual_seed(0)
    fields = {"hidden_size": 32, "num_encoder_layers": 1, "num_decoder_layers": 0, "num_attention_heads": 2,
              "encoder_modalities": [PIXELS], "decoder_modalities": [], "head_hidden_size": 8}  # fmt: skip
    return FourMConfig(**{**fields, **kwargs})


def image(height: int = 40, width: int = 50, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8))


def expected_maps(maps: torch.Tensor, height: int, width: int, center_crop: bool) -> torch.Tensor:
    """Model-resolution maps (C, S, S) on the original image: resized whole, or onto the central square with the
    border columns / rows repeating their nearest prediction."""
    if not center_crop:
        return F.interpolate(maps[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = F.interpolate(maps[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    full = torch.empty(maps.shape[0], height, width)
    full[:, top : top + side, left : left + side] = square
    full[:, :, :left] = full[:, :, left : left + 1]
    full[:, :, left + side :] = full[:, :, left + side - 1 : left + side]
    full[:, :top] = full[:, top : top + 1]
    full[:, top + side :] = full[:, top + side - 1 : top + side]
    return full


def check_pipeline_matches_model(task: str, directory: Path, picture: Image.Image) -> None:
    """`pipeline(task, model=directory)` on `picture` gives what the saved model gives on the saved image
    processor's pixels."""
    serve = pipeline(task, model=str(directory))
    image_processor = FourMImageProcessor.from_pretrained(directory)
    assert isinstance(serve.image_processor, FourMImageProcessor)
    assert serve.image_processor.to_dict() == image_processor.to_dict()
    model = HEADS[task].from_pretrained(directory).eval()
    with torch.no_grad():
        outputs = model(**image_processor(picture, return_tensors="pt"))
    result = serve(picture)
    height, width, crop = picture.height, picture.width, image_processor.do_center_crop
    if task == "image-classification":
        probabilities = outputs.logits[0].softmax(-1)
        order = probabilities.argsort(descending=True)
        assert [r["label"] for r in result] == [model.config.id2label[int(i)] for i in order]
        np.testing.assert_allclose([r["score"] for r in result], probabilities[order].numpy(), rtol=1e-5)
    elif task == "image-segmentation":
        classes = expected_maps(outputs.logits[0], height, width, crop).argmax(0).numpy()
        assert [r["label"] for r in result] == [model.config.id2label[int(i)] for i in np.unique(classes)]
        for entry, class_id in zip(result, np.unique(classes)):
            assert entry["mask"].size == (width, height)
            np.testing.assert_array_equal(np.asarray(entry["mask"]), (classes == class_id) * 255)
    else:
        depth = expected_maps(outputs.predicted_depth, height, width, crop)[0]
        torch.testing.assert_close(result["predicted_depth"], depth)
        assert result["depth"].size == (width, height) and np.asarray(result["depth"]).max() == 255


# ---------------------------------------------------------------------------------------------------------------------
# training/finetune.py output


def run_finetune(task: str, tmp_path: Path) -> Path:
    """One training step of training/finetune.py on 4 synthetic images; returns its output directory."""
    rng = np.random.default_rng(0)
    images = [(rng.random((36, 44, 3)) * 255).astype(np.uint8) for _ in range(4)]
    if task == "image-classification":
        label_feature, labels = ClassLabel(names=list(LABELS.values())), [0, 1, 2, 1]
    elif task == "semantic-segmentation":
        label_feature, labels = ImageFeature(), [rng.integers(0, 3, (36, 44)).astype(np.uint8) for _ in range(4)]
    else:
        label_feature, labels = ImageFeature(), [rng.integers(1000, 4000, (36, 44)).astype(np.int32) for _ in range(4)]
    features = Features({"image": ImageFeature(), "label": label_feature})
    Dataset.from_dict({"image": images, "label": labels}, features=features).save_to_disk(tmp_path / "data")
    FourMForMaskedModeling(tiny_config()).save_pretrained(tmp_path / "model")
    args = ["--model_name_or_path", str(tmp_path / "model"), "--task", task, "--dataset_name", str(tmp_path / "data"),
            "--output_dir", str(tmp_path / "out"), "--do_train", "--max_steps", "1", "--per_device_train_batch_size",
            "2", "--train_val_split", "0.5", "--use_cpu", "--report_to", "none", "--save_strategy", "no",
            "--disable_tqdm", "true", "--head_hidden_size", "8"]  # fmt: skip
    if task == "semantic-segmentation":
        args += ["--num_labels", "3"]
    with imported_script(FINETUNE_SCRIPT, "fourm_finetune_pipelines") as module:
        module.main(args)
    return tmp_path / "out"


@pytest.mark.parametrize(
    "finetune_task, task",
    [
        ("image-classification", "image-classification"),
        ("semantic-segmentation", "image-segmentation"),
        ("depth-estimation", "depth-estimation"),
    ],
)
def test_a_finetuned_model_serves_its_pipeline(finetune_task, task, tmp_path):
    out = run_finetune(finetune_task, tmp_path)
    saved = FourMImageProcessor.from_pretrained(out)
    # the training transform's preprocessing: the whole image, bilinear, at the pixel modality's size
    assert (saved.image_size, saved.patch_size, saved.do_center_crop) == (32, 8, False)
    assert saved.resample == PILImageResampling.BILINEAR
    check_pipeline_matches_model(task, out, image(40, 50))


def test_finetune_pixels_are_the_image_processor_pixels_with_the_resize_and_normalisation_of_training():
    with imported_script(FINETUNE_SCRIPT, "fourm_finetune_pipelines") as module:
        pixels = MODALITIES[PIXELS]
        image_processor = module.build_image_processor(pixels, 32)
        picture = image(37, 45, seed=3)
        resized = np.asarray(picture.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
        expected = ((resized - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(module.to_pixel_values(image_processor, picture, flip=False), expected, atol=1e-6)
        flipped = module.to_pixel_values(image_processor, np.asarray(picture), flip=True)
        np.testing.assert_allclose(flipped, expected[:, :, ::-1], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# A head or the encoder saved beside a FourMImageProcessor


@pytest.mark.parametrize("task", sorted(HEADS))
@pytest.mark.parametrize("center_crop", [True, False])
def test_a_head_saved_beside_an_image_processor_serves_its_pipeline(task, center_crop, tmp_path):
    labels = {} if task == "depth-estimation" else {"id2label": LABELS}
    HEADS[task](tiny_config(**labels)).save_pretrained(tmp_path)
    FourMImageProcessor(image_size=32, patch_size=8, do_center_crop=center_crop).save_pretrained(tmp_path)
    check_pipeline_matches_model(task, tmp_path, image(40, 50))
    check_pipeline_matches_model(task, tmp_path, image(60, 30, seed=1))  # a portrait image: crop rows, not columns


def test_the_encoder_serves_image_feature_extraction(tmp_path):
    FourMEncoderModel(tiny_config()).save_pretrained(tmp_path)
    FourMImageProcessor(image_size=32, patch_size=8).save_pretrained(tmp_path)
    picture = image()
    features = pipeline("image-feature-extraction", model=str(tmp_path))(picture, return_tensors=True)
    model = FourMEncoderModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = model(**FourMImageProcessor.from_pretrained(tmp_path)(picture, return_tensors="pt"))
    torch.testing.assert_close(features, expected.last_hidden_state)
    assert features.shape == (1, 16 + model.config.num_register_tokens, 32)


def test_post_processing_keeps_the_model_resolution_without_target_sizes_and_checks_them():
    image_processor = FourMImageProcessor(image_size=32, patch_size=8)
    logits = torch.randn(2, 3, 32, 32)
    maps = image_processor.post_process_semantic_segmentation(type("Out", (), {"logits": logits})())
    assert [tuple(m.shape) for m in maps] == [(32, 32), (32, 32)]
    torch.testing.assert_close(maps[1], logits[1].argmax(0))
    depth = image_processor.post_process_depth_estimation(
        type("Out", (), {"predicted_depth": logits[:, 0]})(), target_sizes=[(40, 50), (32, 32)]
    )
    assert depth[0]["predicted_depth"].shape == (40, 50)
    torch.testing.assert_close(depth[1]["predicted_depth"], logits[1, 0])
    with pytest.raises(ValueError, match=r"target_sizes must hold one \(height, width\) per image \(2\), got 1"):
        image_processor.post_process_semantic_segmentation(type("Out", (), {"logits": logits})(), [(40, 50)])
    with pytest.raises(ValueError, match="target_sizes must hold .* positive integers, got \\(40, 0\\)"):
        image_processor.post_process_depth_estimation(
            type("Out", (), {"predicted_depth": logits[:, 0]})(), [(40, 0), (1, 1)]
        )
    with pytest.raises(ValueError, match="outputs must have `logits`"):
        image_processor.post_process_semantic_segmentation({"logits": logits})  # a dict, not a model output
    with pytest.raises(ValueError, match="outputs must have `predicted_depth`"):
        image_processor.post_process_depth_estimation(type("Out", (), {"logits": logits})())


# ---------------------------------------------------------------------------------------------------------------------
# fourm-any-to-any


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_modalities):
    """A tiny untrained 4M (RGB pixels, depth tokens, caption and boxes at 32 px) and its processor, saved."""
    model, processor = tiny_any_to_any()
    root = tmp_path_factory.mktemp("any_to_any")
    model.save_pretrained(root / "fourm")
    processor.save_pretrained(root / "processor")
    return {"model": model, "processor": processor, "root": root}


@pytest.fixture(scope="module")
def generator(checkpoint):
    root = checkpoint["root"]
    return pipeline("fourm-any-to-any", model=str(root / "fourm"), processor=str(root / "processor"))


def direct(checkpoint, recipe: str, batch: dict, targets: list[str] | None, seed: int) -> dict:
    """What the Python API generates with the model's recipe."""
    model, processor = checkpoint["model"], checkpoint["processor"]
    config = getattr(FourMGenerationConfig, recipe)(model.config, conditions=list(batch), targets=targets)
    names = [target.modality for target in config.targets]
    return processor.postprocess(model.generate(batch, config, seed=seed, progress_bar=False), names=names)


def test_any_to_any_turns_an_image_into_depth_caption_and_boxes_as_the_api_does(checkpoint, generator, tmp_path):
    assert isinstance(generator, FourMAnyToAnyPipeline) and isinstance(generator.model, FourMForMaskedModeling)
    picture = image()
    picture.save(tmp_path / "scene.png")
    result = generator(str(tmp_path / "scene.png"), seed=3)  # targets default to everything the model decodes
    expected = direct(checkpoint, "rgb_to_all", checkpoint["processor"](images=[picture]), None, seed=3)
    assert list(result) == [DEPTH, "caption", "det"]
    assert isinstance(result[DEPTH], Image.Image) and result[DEPTH].size == (32, 32) and result[DEPTH].mode == "L"
    np.testing.assert_array_equal(np.asarray(result[DEPTH]), np.asarray(to_pil(expected[DEPTH][0])))
    assert isinstance(result["caption"], str) and result["caption"] == expected["caption"][0]
    assert set(result["det"]) == {"boxes", "labels"} and result["det"] == expected["det"][0]
    raw = generator(picture, targets=[DEPTH], seed=3, output_type="numpy")
    depth = direct(checkpoint, "rgb_to_all", checkpoint["processor"](images=[picture]), [DEPTH], seed=3)[DEPTH]
    assert list(raw) == [DEPTH] and raw[DEPTH].dtype == np.float32
    np.testing.assert_array_equal(raw[DEPTH], depth[0])  # the depth map itself, as float values


def test_any_to_any_from_a_caption_and_in_batches(checkpoint, generator):
    result = generator(text="a red cube", targets=[DEPTH], seed=0, output_type="numpy")
    expected = direct(checkpoint, "caption_to_all", checkpoint["processor"](text=["a red cube"]), [DEPTH], seed=0)
    np.testing.assert_array_equal(result[DEPTH], expected[DEPTH][0])
    both = generator(image(), text="a red cube", targets=["det"], seed=0)
    batch = checkpoint["processor"](images=[image()], text=["a red cube"])
    assert both["det"] == direct(checkpoint, "rgb_to_all", batch, ["det"], seed=0)["det"][0]
    pictures = [image(seed=0), image(seed=1)]
    results = generator(pictures, targets=["caption"], seed=0)
    assert [r["caption"] for r in results] == [generator(p, targets=["caption"], seed=0)["caption"] for p in pictures]


def test_any_to_any_says_what_is_wrong(checkpoint, generator):
    with pytest.raises(ValueError, match="give images, text or inputs"):
        generator()
    with pytest.raises(ValueError, match="output_type must be one of \\['numpy', 'pil'\\], got 'pill'"):
        generator(image(), output_type="pill")
    config = FourMGenerationConfig.rgb_to_all(checkpoint["model"].config)
    with pytest.raises(ValueError, match="Pass targets or a generation_config"):
        generator(image(), targets=[DEPTH], generation_config=config)
    with pytest.raises(ValueError, match="cannot generate 'tok_depth@224'.*Did you mean 'tok_depth@32'"):
        generator(image(), targets=["tok_depth@224"])
    with pytest.raises(ValueError, match="images and text must have as many samples, got 2 and 1"):
        generator([image(), image()], text=["a red cube"])
    with pytest.raises(TypeError, match="needs a FourMProcessor"):
        FourMAnyToAnyPipeline(model=checkpoint["model"], processor=None)
