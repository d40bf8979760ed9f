"""examples/demo.py: the metric helpers on hand-made cases, the command line, and a reduced end-to-end smoke run
(tiny data, tokenizers and 4M, a few steps; the full `--quick` demo is too long for CI)."""

import json
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import imported_script
from PIL import Image

from fourm_hf import FourMForMaskedModeling, FourMImageProcessor, FourMProcessor, FourMVQVAE
from fourm_hf.data.masking import FourMMaskingCollator, MaskingMixture, SeededMaskingDataset
from fourm_hf.data.pretokenization import ImageColumn, TextColumn, pretokenize
from fourm_hf.data.synthetic import generate_scenes

ROOT = Path(__file__).resolve().parents[1]

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
SMOKE_ARGS = [
    "--num_train", "48", "--num_eval", "6", "--num_grid", "2", "--tokenizer_steps", "4", "--tokenizer_batch_size", "8",
    "--tokenizer_hidden_size", "32", "--tokenizer_layers", "1", "--rgb_codebook_size", "32",
    "--depth_codebook_size", "32", "--semseg_codebook_size", "32", "--steps", "4", "--batch_size", "4",
    "--hidden_size", "64", "--encoder_layers", "1", "--decoder_layers", "1", "--caption_to_rgb_steps", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo():
    with imported_script(DEMO, "fourm_demo") as module:
        yield module


def test_objects_in_caption(demo):
    caption = "a small red sphere, a cyan cube and a large green cylinder on a gray floor."
    assert demo.objects_in_caption(caption) == [("red", "sphere"), ("cyan", "cube"), ("green", "cylinder")]
    assert demo.objects_in_caption("an empty gray floor in front of a wall.") == []
    assert demo.objects_in_caption("A Blue  Cube") == [("blue", "cube")]


def test_caption_metrics_counts_objects_as_multisets(demo):
    reference = ["a red sphere and a red sphere on a gray floor.", "a blue cube on a gray floor."]
    predicted = ["a red sphere on a gray floor.", "a green cube on a gray floor."]
    metrics = demo.caption_metrics(predicted, reference)
    # scene 1: one of two red spheres named (shapes differ as multisets); scene 2: right shape, wrong colour
    assert metrics["exact_objects"] == 0.0
    assert metrics["exact_shapes"] == 0.5
    assert metrics["object_recall"] == pytest.approx(1 / 3)
    assert metrics["object_precision"] == pytest.approx(1 / 2)
    assert metrics["most_objects"] == 0.0  # scene 1: one of two objects is not more than half
    assert metrics["shape_confusion"] == {"cube -> cube": 1}  # scene 1 names fewer objects: not paired
    perfect = demo.caption_metrics(reference, reference)
    assert perfect == {
        "exact_objects": 1.0, "exact_shapes": 1.0, "most_objects": 1.0, "object_precision": 1.0,
        "object_recall": 1.0, "shape_confusion": {"cube -> cube": 1, "sphere -> sphere": 2},
    }  # fmt: skip
    three = ["a red cube, a blue cube and a green cylinder on a gray floor."]
    two_right = ["a red cube, a blue cylinder and a green cylinder on a gray floor."]
    assert demo.caption_metrics(two_right, three)["most_objects"] == 1.0
    assert demo.caption_metrics(two_right, three)["shape_confusion"] == {"cube -> cube": 1, "cube -> cylinder": 1,
                                                                          "cylinder -> cylinder": 1}  # fmt: skip


def test_detection_metrics_matches_same_label_boxes_one_to_one(demo):
    assert demo.box_iou((0, 0, 0.5, 0.5), (0.25, 0, 0.75, 0.5)) == pytest.approx(1 / 3)
    assert demo.box_iou((0, 0, 0.1, 0.1), (0.5, 0.5, 0.6, 0.6)) == 0.0
    reference = [{"boxes": [(0.1, 0.1, 0.3, 0.3), (0.5, 0.5, 0.9, 0.9)], "labels": ["cube", "sphere"]}]
    predicted = [
        {"boxes": [(0.1, 0.1, 0.3, 0.3), (0.1, 0.1, 0.3, 0.3), (0.5, 0.5, 0.9, 0.9)],
         "labels": ["cube", "cube", "cube"]}  # a duplicate, and the right box with the wrong label
    ]  # fmt: skip
    metrics = demo.detection_metrics(predicted, reference)
    assert metrics["recall@0.5"] == 0.5
    assert metrics["precision@0.5"] == pytest.approx(1 / 3)
    assert metrics["mean_iou_of_reference_boxes"] == pytest.approx(0.5)


def test_segmentation_metrics_count_void_predictions_as_errors(demo):
    reference = np.array([[0, 0, 1, 1], [2, 3, 4, 4]])
    metrics = demo.segmentation_metrics(reference.copy(), reference)
    assert metrics["mean_iou"] == 1.0 and metrics["object_mean_iou"] == 1.0
    predicted = reference.copy()
    predicted[0, 0] = 255  # void: wrong whatever the reference
    metrics = demo.segmentation_metrics(predicted, reference)
    assert metrics["pixel_accuracy"] == pytest.approx(7 / 8)
    assert metrics["per_class_iou"]["floor"] == pytest.approx(0.5)
    assert metrics["per_class_iou"]["wall"] == pytest.approx(2 / 3, abs=1e-4)  # the void pixel: a false "wall"


def test_depth_errors_and_baselines(demo):
    reference = np.zeros((2, 2, 2))
    predicted = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, -3.0]]])
    objects = np.zeros((2, 2, 2), dtype=bool)
    objects[1, 1, 1] = True
    errors = demo.depth_errors(predicted, reference, objects)
    assert errors == pytest.approx({"abs_error": 0.5, "rmse": np.sqrt(10 / 8), "object_abs_error": 3.0})
    semseg = np.array([[[0, 1]], [[0, 2]], [[3, 2]]], dtype=np.uint8)  # 3 maps of 1x2 pixels
    base = demo.baselines({"semseg": semseg}, np.array([[[3.0, 2.0]]]))  # the mean of (1, 1, 2) depth inputs
    np.testing.assert_array_equal(base["semseg"], [[0, 2]])
    np.testing.assert_allclose(base["depth"], [[3.0, 2.0]])


def test_scene_arrays_read_from_arrow_equal_the_rendered_scenes(demo, tmp_path):
    scenes = demo.scenes_dataset(5, 12, 32, 0, str(tmp_path))  # two rendering processes
    arrays = demo.scene_arrays(scenes.select(range(2, 9)))  # an indices mapping: the selected rows, in order
    assert {n: (a.shape, a.dtype) for n, a in arrays.items()} == {
        "rgb": ((7, 32, 32, 3), np.uint8), "depth": ((7, 32, 32), np.float32), "semseg": ((7, 32, 32), np.uint8)
    }  # fmt: skip
    for row, scene in enumerate(generate_scenes(7, 7, 0, 32, 32)):
        for name in ("rgb", "depth", "semseg"):
            np.testing.assert_array_equal(arrays[name][row], scene[name])
    for columns in (("rgb",), ("depth", "semseg")):  # only the columns asked for
        some = demo.scene_arrays(scenes, columns)
        assert list(some) == list(columns) and all(np.array_equal(some[n][2:9], arrays[n]) for n in columns)


def test_in_memory_rows_match_the_dataset_and_check_lengths(demo):
    features = datasets.Features({
        "tokens": datasets.List(datasets.Value("int64")), "caption": datasets.List(datasets.Value("int32")),
        "name": datasets.Value("string"), "grid": datasets.Array2D((2, 3), "uint8"),
    })  # fmt: skip
    grids = np.arange(18, dtype=np.uint8).reshape(3, 2, 3)
    dataset = datasets.Dataset.from_dict(
        {"tokens": [[1, 2, 3], [4, 5, 6], [0, 0, 1]], "caption": [[7], [8, 9, 10, 11], []], "name": ["a", "b", "c"],
         "grid": list(grids)}, features=features,
    ).select([2, 0, 1])  # fmt: skip
    rows = demo.InMemoryRows.from_dataset(dataset)
    assert len(rows) == 3
    assert list(rows.columns) == ["tokens", "caption", "name", "grid"]
    assert rows.columns["grid"].dtype == np.uint8  # read from Arrow in one piece, as stored
    for index in range(3):
        expected = dataset.with_format("numpy")[index]
        assert sorted(rows[index]) == ["caption", "grid", "name", "tokens"]
        for name in ("tokens", "caption", "grid"):
            np.testing.assert_array_equal(rows[index][name], expected[name])
    np.testing.assert_array_equal(rows[0]["grid"], grids[2])
    assert [rows[i]["name"] for i in range(3)] == ["c", "a", "b"]
    with pytest.raises(ValueError, match=r"one length, got lengths \[2, 3\]"):
        demo.InMemoryRows({"a": np.zeros(2), "b": np.zeros(3)})


def test_skip_huge_page_requests_turns_numpys_madvise_off_in_forked_processes_too(demo):
    from numpy._core.multiarray import _set_madvise_hugepage

    before = _set_madvise_hugepage(True)  # returns the setting it replaces
    try:
        demo.skip_huge_page_requests()
        child = multiprocessing.get_context("fork").Pool(1)
        with child:  # a forked process sees the setting of its parent
            assert child.apply(_set_madvise_hugepage, (False,)) is False
        assert _set_madvise_hugepage(True) is False
    finally:
        _set_madvise_hugepage(before)


def test_stage_table_lists_each_stage_the_total_and_the_machine(demo):
    elapsed = {
        "stages": {"render": {"wall_s": 12.4, "cpu_s": 20.6}, "4M pre-training": {"wall_s": 300.2, "cpu_s": 590.0}},
        "total_wall_s": 320.0, "total_cpu_s": 615.5, "torch_threads": 2, "load_average_1_5_15min": [0.1, 0.2, 0.3],
        "cpu_model": "AMD EPYC 7B12", "aten_cpu_capability": "AVX2",
    }  # fmt: skip
    lines = demo.stage_table(elapsed).splitlines()
    assert [line.split() for line in lines[:4]] == [
        ["stage", "wall", "s", "CPU", "s"], ["render", "12", "21"], ["4M", "pre-training", "300", "590"],
        ["total", "320", "616"],
    ]  # fmt: skip
    assert lines[1].index("12") == lines[2].index("300") + 1  # right-aligned columns
    assert lines[4] == "  on AMD EPYC 7B12 (torch kernels: AVX2), 2 torch threads, load average [0.1, 0.2, 0.3]"


def test_command_line_presets_and_overrides(demo):
    quick, args = demo.parse_args([])
    assert args.preset == "quick" and quick == demo.DemoSettings()
    long, _ = demo.parse_args(["--long", "--steps", "7", "--learning_rate", "0.01"])
    assert long.steps == 7 and long.learning_rate == 0.01 and long.num_train == demo.PRESETS["long"].num_train
    with pytest.raises(SystemExit):
        demo.parse_args(["--quick", "--long"])


def test_every_4m_parameter_gets_a_gradient_whichever_masking_strategies_a_batch_holds(demo, tmp_path):
    """The demo's DDP runs without the unused-parameter search (`ddp_find_unused_parameters=False`), which stops a
    run whose step leaves any parameter without a gradient. So every parameter of the 4M must get one from every
    batch: here from batches of pre-tokenised scenes whose samples all use one masking strategy of the mixture (the
    extreme case of a rank's share of a step), and from a mixed batch."""
    settings = demo.DemoSettings(image_size=32, input_tokens=16, target_tokens=24, hidden_size=32)
    names = demo.register_demo_modalities(settings)
    scenes = demo.scenes_dataset(0, 24, 32, 0, str(tmp_path))
    text = scenes.select_columns(["caption", "det"])[:]
    tokenizer = demo.train_text_tokenizer(text["caption"], text["det"], 32)
    _, max_length = demo.text_lengths(tokenizer, text["caption"], text["det"])
    processor = FourMProcessor(FourMImageProcessor(image_size=32, patch_size=8, do_center_crop=False), tokenizer)
    generator = torch.Generator().manual_seed(0)

    def random_ids(pixels):  # a VQ-VAE stand-in: the ids' values do not matter here, only the modalities' layout
        return torch.randint(0, 256, (pixels.shape[0], 16), generator=generator)

    image_columns = [ImageColumn("rgb", names["pixels"])] + [
        ImageColumn(m, names[m], tokenizer=random_ids) for m in demo.IMAGE_MODALITIES
    ]
    rows = pretokenize(
        scenes, image_columns, [TextColumn("caption", "caption"), TextColumn("det", "det")],
        text_tokenizer=tokenizer, image_processor=processor.image_processor, image_size=32, num_crops=1, seed=0,
    )  # fmt: skip
    rows = SeededMaskingDataset(demo.InMemoryRows.from_dataset(rows), seed=0)
    torch.manual_seed(0)
    model = FourMForMaskedModeling(demo.fourm_config(settings, names, len(tokenizer), max_length))
    strategies = len(demo.MIXTURE_WEIGHTS)
    for weights in [[float(i == s) for i in range(strategies)] for s in range(strategies)] + [None]:
        mixture = demo.demo_mixture(settings, names)
        mixture["sampling_weights"] = weights or list(demo.MIXTURE_WEIGHTS)
        collator = FourMMaskingCollator(MaskingMixture.from_dict(mixture), config=model.config)
        for start in (0, 8, 16):
            model.zero_grad(set_to_none=True)
            model(**collator([rows[i] for i in range(start, start + 8)])).loss.backward()
            missing = [name for name, p in model.named_parameters() if p.grad is None]
            assert not missing, f"mixture weights {weights}: no gradient for {missing}"


def test_smoke_run_writes_metrics_grid_and_reloadable_models(demo, tmp_path):
    metrics = demo.main([*SMOKE_ARGS, "--output_dir", str(tmp_path)])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["settings"]["steps"] == 4 and written["num_eval_scenes"] == 6
    assert written["caption"] == metrics["caption"] and written["det"] == metrics["det"]
    for report in written["segmentation"].values():
        assert 0.0 <= report["mean_iou"] <= 1.0 and 0.0 <= report["pixel_accuracy"] <= 1.0
    for report in written["depth_standardised"].values():
        assert np.isfinite(report["abs_error"]) and report["rmse"] >= report["abs_error"] >= 0.0
    assert set(written["caption"]) == {
        "exact_objects", "exact_shapes", "most_objects", "object_precision", "object_recall", "shape_confusion"
    }  # fmt: skip
    assert len(written["examples"]) == 6 and all(isinstance(e["generated"], str) for e in written["examples"])
    assert set(written["time"]["stages"]) >= {"4M pre-training", "reload and evaluate on held-out scenes"}
    assert written["time"]["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    # one row per shown scene, ten tiles per row (tiles of 2 x 64 + 16 pixels)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width == 10 * 144 and grid.height > 2 * 144

    model = FourMForMaskedModeling.from_pretrained(tmp_path / "fourm")
    assert model.config.decoder_modalities == ["tok_rgb@64", "tok_depth@64", "tok_semseg@64", "caption", "det"]
    processor = FourMProcessor.from_pretrained(tmp_path / "processor")
    assert sorted(processor.vq_models) == ["tok_depth@64", "tok_rgb@64", "tok_semseg@64"]
    assert all(isinstance(m, FourMVQVAE) and m.config.codebook_size == 32 for m in processor.vq_models.values())
    # sentinels at their released ids (generation's defaults), one coordinate bin per pixel edge of the 64x64 scenes
    assert processor.tokenizer.sentinel_id(0) == 4 and processor.tokenizer.sentinel_id(199) == 203
    assert processor.tokenizer.num_value_bins == 65 and len(processor.tokenizer) < 600
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # scratch files are removed

    # a fresh process reloads the saved 4M and processor without registering the @64 modalities, and generates
    # with the RGB -> all recipe derived from the model's own modalities
    code = textwrap.dedent(f"""
        import json, numpy as np, torch
        from fourm_hf import FourMForMaskedModeling, FourMGenerationConfig, FourMProcessor
        from fourm_hf.modalities import MODALITIES
        known = "tok_depth@64" in MODALITIES
        model = FourMForMaskedModeling.from_pretrained({str(tmp_path / "fourm")!r}).eval()
        processor = FourMProcessor.from_pretrained({str(tmp_path / "processor")!r})
        recipe = FourMGenerationConfig.rgb_to_all(model.config)
        image = np.zeros((64, 64, 3), np.uint8)
        out = model.generate(processor(images=[image]), recipe, seed=0, progress_bar=False)
        decoded = processor.postprocess(out, names=["tok_depth@64", "tok_semseg@64", "caption"])
        print(json.dumps({{"known": known, "conditions": recipe.conditions, "targets": [t.modality for t in recipe.targets],
                          "depth": list(decoded["tok_depth@64"].shape), "semseg": list(decoded["tok_semseg@64"].shape)}}))
    """)
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["known"] is False and report["conditions"] == ["rgb@64"]
    assert report["targets"] == ["tok_depth@64", "tok_semseg@64", "caption", "det"]
    assert report["depth"] == [1, 64, 64] and report["semseg"] == [1, 64, 64]


def test_vqvaes_trained_side_by_side_equal_those_trained_one_after_another(demo, tmp_path, monkeypatch):
    settings, _ = demo.parse_args(SMOKE_ARGS)
    image_processor = demo.FourMImageProcessor(
        image_size=64, patch_size=8, do_center_crop=False, num_semseg_classes=demo.NUM_CLASSES + 1
    )
    scenes = demo.scenes_dataset(0, 16, 64, 0, str(tmp_path / "cache"))
    inputs = demo.tokenizer_inputs(image_processor, demo.scene_arrays(scenes), 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker processes' thread count, for bit-equal matmuls
    try:
        alone, _ = demo.train_vqvaes(scenes, image_processor, settings, tmp_path / "alone", num_proc=1)
    finally:
        torch.set_num_threads(threads)
    calls, run_parallel = [], demo.run_parallel
    monkeypatch.setattr(demo, "run_parallel", lambda *args: calls.append(args[2]) or run_parallel(*args))
    side_by_side, details = demo.train_vqvaes(scenes, image_processor, settings, tmp_path / "parallel", num_proc=3)
    assert calls == [3] and set(details) == set(demo.IMAGE_MODALITIES)
    assert min(detail["cpu_s"] for detail in details.values()) > 0 and details["semseg"]["mean_input"] is None
    for modality in ("rgb", "depth"):  # each process built its inputs from its column of the scenes
        torch.testing.assert_close(torch.from_numpy(details[modality]["mean_input"]), inputs[modality].mean(0), rtol=0, atol=0)
    for modality in demo.IMAGE_MODALITIES:
        expected, got = alone[modality].state_dict(), side_by_side[modality].state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=f"{modality}: {key}")


def test_thread_chooser_keeps_the_faster_thread_count_and_measures_again(demo, monkeypatch):
    """A fake clock makes each step cost what `cost[threads]` says; the chooser must follow it."""
    cost, clock = {1: 0.5, 2: 0.3}, [0.0]
    monkeypatch.setattr(demo.time, "perf_counter", lambda: clock[0])
    state = type("State", (), {"global_step": 0})()
    chooser = demo.ThreadChooser([1, 2], probe_steps=3, every=10)
    threads = torch.get_num_threads()
    used = []
    try:
        chooser.on_train_begin(None, state, None)
        for step in range(1, 21):
            if step == 11:
                cost[2] = 1.0  # the second core got busy
            used.append(torch.get_num_threads())
            clock[0] += cost[torch.get_num_threads()]
            state.global_step = step
            chooser.on_step_end(None, state, None)
        cost[2] = 0.3
        again = demo.ThreadChooser([1, 2], probe_steps=3, every=10)
        again.on_train_begin(None, state, None)
        for step in range(21, 31):
            clock[0] += cost[torch.get_num_threads()]
            state.global_step = step
            again.on_step_end(None, state, None)
        assert torch.get_num_threads() == 1  # step 31 would probe one thread again ...
        again.on_train_end(None, state, None)
        assert torch.get_num_threads() == 2  # ... but training ended: the last choice is kept
    finally:
        torch.set_num_threads(threads)
    # steps 1-3 probe one thread, 4-6 two threads, then the faster (2) until step 10; again from step 11
    assert used == [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1]
    assert [c["step"] for c in chooser.choices] == [6, 16] and [c["threads"] for c in chooser.choices] == [2, 1]
    assert chooser.choices[0]["median_step_s"] == pytest.approx({1: 0.5, 2: 0.3})
    assert chooser.choices[1]["median_step_s"] == pytest.approx({1: 0.5, 2: 1.0})
