"""Synthetic scenes: determinism, any size, exact alignment of the modalities, the datasets builder."""

import math

import numpy as np
import pytest

from fourm_hf.data.synthetic import (
    AMBIENT,
    COLORS,
    FLOOR_ALBEDO,
    FLOOR_Y,
    LIGHT,
    SYNTHETIC_CLASSES,
    WALL_ALBEDO,
    WALL_Z,
    SyntheticScenes,
    _hit_objects,
    _intersect,
    camera_rays,
    generate_scenes,
    render_scene,
    sample_objects,
    synthetic_scenes_dataset,
)

SEEDS = [(0, i) for i in range(6)]


def test_scenes_are_deterministic_and_any_size():
    a, b = render_scene((0, 3), 48, 64), render_scene((0, 3), 48, 64)
    for key in ("rgb", "depth", "normal", "semseg"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["caption"] == b["caption"] and a["det"] == b["det"]
    assert a["rgb"].shape == (48, 64, 3) and a["rgb"].dtype == np.uint8
    assert a["depth"].shape == (48, 64) and a["normal"].shape == (48, 64, 3) and a["semseg"].shape == (48, 64)
    assert not np.array_equal(render_scene((0, 4), 48, 64)["semseg"], a["semseg"])
    with pytest.raises(ValueError, match="positive size"):
        render_scene(0, 0, 10)


def object_frame(obj, points):
    """Points relative to the object's centre, rotated into its axes."""
    local = points - np.array(obj["position"])
    c, s = math.cos(-obj["yaw"]), math.sin(-obj["yaw"])
    return np.stack([c * local[:, 0] + s * local[:, 2], local[:, 1], -s * local[:, 0] + c * local[:, 2]], 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_depth_normals_and_segmentation_describe_the_same_surfaces(seed):
    height, width = 60, 80
    scene = render_scene(seed, height, width)
    rays = camera_rays(height, width).reshape(-1, 3)
    points = scene["depth"].reshape(-1, 1) * rays / rays[:, 2:]  # back-projection of depth (z) along each ray
    normals = scene["normal"].reshape(-1, 3)
    labels = scene["semseg"].reshape(-1)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    floor, wall = labels == 0, labels == 1
    np.testing.assert_allclose(points[floor, 1], FLOOR_Y, atol=1e-4)
    np.testing.assert_allclose(normals[floor], np.tile([0, -1, 0], (floor.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(points[wall, 2], WALL_Z, atol=1e-4)
    for class_id in (2, 3, 4):
        pixels = np.flatnonzero(labels == class_id)
        objects = [o for o in scene["objects"] if o["shape"] == SYNTHETIC_CLASSES[class_id]]
        assert len(pixels) == 0 or objects
        for p in pixels:  # the point lies on the surface of one object of that class, with that surface's normal
            errors = []
            for obj in objects:
                local = object_frame(obj, points[p : p + 1])[0]
                size, half = obj["size"], obj["height"] / 2
                if obj["shape"] == "sphere":
                    errors.append((abs(np.linalg.norm(local) - size), np.abs(normals[p] - local / size).max()))
                elif obj["shape"] == "cube":
                    errors.append((abs(np.abs(local).max() - size), 0.0))
                else:
                    radial = math.hypot(local[0], local[2])
                    on_side = abs(radial - size) + max(0.0, abs(local[1]) - half)
                    on_top = abs(local[1] + half) + max(0.0, radial - size)
                    errors.append((min(on_side, on_top), 0.0))
            surface, normal = min(errors)
            assert surface < 1e-3 and normal < 1e-3, f"pixel {p} of class {class_id} is off its surface"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_rgb_is_the_labelled_surface_shaded_by_its_normal(seed):
    scene = render_scene(seed, 64, 64)
    rgb = scene["rgb"].reshape(-1, 3).astype(int)
    labels = scene["semseg"].reshape(-1)
    lambert = np.clip(scene["normal"].reshape(-1, 3) @ LIGHT, 0, None)
    shades = np.stack([AMBIENT + (1 - AMBIENT) * lambert, np.full_like(lambert, AMBIENT)], 1)  # lit, in shadow
    albedos = {0: [FLOOR_ALBEDO], 1: [WALL_ALBEDO]}
    for obj in scene["objects"]:
        albedos.setdefault(SYNTHETIC_CLASSES.index(obj["shape"]), []).append(COLORS[obj["color"]])
    in_shadow = 0
    for p in range(len(rgb)):
        candidates = [np.round(255 * np.array(a) * s) for a in albedos[labels[p]] for s in shades[p]]
        errors = [np.abs(rgb[p] - c).max() for c in candidates]
        assert min(errors) <= 1, f"pixel {p}: rgb {rgb[p]} is no shade of its class's colours"
        in_shadow += labels[p] == 0 and np.abs(rgb[p] - candidates[1]).max() <= 1
    assert in_shadow > 0  # objects cast shadows on the floor


@pytest.mark.parametrize("seed", SEEDS)
def test_boxes_are_tight_around_their_class_pixels_and_caption_lists_them(seed):
    height, width = 72, 96
    scene = render_scene(seed, height, width)
    labels = scene["semseg"]
    instances = scene["det"]["instances"]
    assert 1 <= len(instances) <= len(scene["objects"])
    covered = np.zeros_like(labels, dtype=bool)
    for instance in instances:
        class_id = SYNTHETIC_CLASSES.index(instance["class_name"])
        x0, y0, x1, y1 = (round(v * s) for v, s in zip(instance["boxes"], (width, height, width, height)))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and instance["score"] == 1.0
        inside = labels[y0:y1, x0:x1] == class_id
        # tight: the class touches all four sides of the box
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        covered[y0:y1, x0:x1] |= labels[y0:y1, x0:x1] == class_id
    assert covered.sum() == (labels >= 2).sum()  # every object pixel is in a box of its class
    caption = scene["caption"]
    for shape in ("sphere", "cube", "cylinder"):
        assert caption.count(f" {shape}") == sum(i["class_name"] == shape for i in instances), caption
    assert caption.endswith(" on a gray floor.")


def test_ray_casting_tests_only_rays_near_an_object_and_finds_every_hit_all_rays_find():
    """`_hit_objects` runs the exact intersection only on rays through each object's bounding sphere; the nearest hits
    must be those of testing every ray against every object, to the bit, camera rays and rays leaving the surfaces
    (shadow rays) alike."""
    dirs = camera_rays(48, 48).reshape(-1, 3)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        objects = sample_objects(rng)
        with np.errstate(divide="ignore", invalid="ignore"):  # as render_scene: misses give NaN along the way
            t, _, index = _hit_objects(objects, np.zeros_like(dirs), dirs)
        points = np.where(np.isfinite(t), t, 5.0)[:, None] * dirs  # on the objects, or in mid-air
        for origins, directions in ((np.zeros_like(dirs), dirs), (points, np.broadcast_to(LIGHT, dirs.shape))):
            with np.errstate(divide="ignore", invalid="ignore"):
                best_t, best_n, best_i = _hit_objects(objects, origins, directions)
                every = [_intersect(obj, origins, directions) for obj in objects]
            all_t = np.stack([t for t, _ in every])  # (objects, rays)
            nearest = np.where(np.isfinite(all_t).any(0), all_t.argmin(0), -1)
            np.testing.assert_array_equal(best_i, nearest)
            np.testing.assert_array_equal(best_t, np.where(nearest >= 0, all_t.min(0), np.inf))
            hit = nearest >= 0
            normals = np.stack([n for _, n in every])[nearest[hit], np.flatnonzero(hit)]
            np.testing.assert_array_equal(best_n[hit], normals)
        assert (index >= 0).sum() > 0 or not objects


def test_scenes_rendered_in_two_processes_equal_the_scene_generator(tmp_path):
    columns = ("rgb", "semseg", "caption")
    scenes = synthetic_scenes_dataset(
        201, 32, 32, seed=3, start=30, cache_dir=str(tmp_path), columns=columns, num_proc=2
    )  # fmt: skip
    assert scenes.column_names == list(columns)
    reference = list(generate_scenes(30, 201, 3, 32, 32))
    assert scenes["caption"] == [r["caption"] for r in reference]
    for index in (0, 100, 200):  # both shards, in order
        np.testing.assert_array_equal(np.asarray(scenes[index]["rgb"]), reference[index]["rgb"])
        np.testing.assert_array_equal(np.asarray(scenes[index]["semseg"]), reference[index]["semseg"])


def test_synthetic_scenes_dataset_rejects_unknown_columns(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown synthetic scene columns \['normals'\]; the columns are"):
        synthetic_scenes_dataset(2, 32, 32, cache_dir=str(tmp_path), columns=["rgb", "normals"])


def test_builder_and_generator_datasets_match_render_scene(tmp_path):
    builder = SyntheticScenes(cache_dir=str(tmp_path / "builder"), num_train=3, num_validation=2, height=32, width=40)
    builder.download_and_prepare()
    train, validation = builder.as_dataset("train"), builder.as_dataset("validation")
    assert (len(train), len(validation)) == (3, 2)
    assert validation[0]["scene_id"] == 3
    dataset = synthetic_scenes_dataset(2, height=32, width=40, cache_dir=str(tmp_path / "generator"))
    for row, scene_id in ((train[1], 1), (validation[1], 4), (dataset[1], 1)):
        expected = render_scene((0, scene_id), 32, 40)
        np.testing.assert_array_equal(np.asarray(row["rgb"]), expected["rgb"])
        np.testing.assert_array_equal(np.asarray(row["depth"], dtype=np.float32), expected["depth"])
        np.testing.assert_array_equal(np.asarray(row["semseg"], dtype=np.uint8), expected["semseg"])
        np.testing.assert_allclose(np.asarray(row["normal"]), expected["normal"])
        assert row["caption"] == expected["caption"]
        assert [i["class_name"] for i in row["det"]["instances"]] == [
            i["class_name"] for i in expected["det"]["instances"]
        ]
        np.testing.assert_allclose(
            [i["boxes"] for i in row["det"]["instances"]], [i["boxes"] for i in expected["det"]["instances"]], rtol=1e-6
        )
