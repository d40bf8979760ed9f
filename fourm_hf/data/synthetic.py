"""Synthetic multimodal scenes: exactly aligned RGB, depth, surface normals, semantic segmentation, caption and boxes.

Each scene is a few spheres, cubes and cylinders standing on a floor in front of a wall, seen by a pinhole camera and
ray cast analytically with NumPy, so that every modality of a pixel comes from the same ray hit: depth is the hit's
z, the normal is the surface normal there, the class is the object hit, and RGB is its colour under one directional
light with hard shadows. Boxes are the tight bounds of each object's visible pixels; the caption lists the objects
from left to right. A scene is a pure function of its seed and size.

Coordinates: camera frame, x right, y down, z forward (depth = z); normals are unit vectors in that frame.

```python
>>> from fourm_hf.data_synthetic import synthetic_scenes_dataset
>>> dataset = synthetic_scenes_dataset(num_scenes=100, height=224, width=224, seed=0)
>>> dataset[0]["caption"]
'a small red sphere and a blue cube on a gray floor.'
```
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from ..checks import check_int, close_match

SYNTHETIC_CLASSES = ("floor", "wall", "sphere", "cube", "cylinder")
SHAPES = SYNTHETIC_CLASSES[2:]
COLORS = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.2, 0.7, 0.25),
    "blue": (0.15, 0.3, 0.85),
    "yellow": (0.9, 0.8, 0.15),
    "purple": (0.55, 0.25, 0.7),
    "orange": (0.95, 0.5, 0.1),
    "cyan": (0.1, 0.75, 0.8),
    "white": (0.92, 0.92, 0.92),
}
FLOOR_Y = 1.0  # the camera is 1 unit above the floor (y points down)
WALL_Z = 9.0
FIELD_OF_VIEW = math.radians(60.0)  # horizontal
FLOOR_ALBEDO = (0.55, 0.55, 0.55)
WALL_ALBEDO = (0.82, 0.8, 0.74)
AMBIENT = 0.35
LIGHT = np.array([-0.5, -1.0, -0.4]) / np.linalg.norm([-0.5, -1.0, -0.4])  # towards the light: up, left, back
_EPS = 1e-6


@dataclass(frozen=True)
class SceneObject:
    """One object standing on the floor: `size` is the radius (sphere, cylinder) or half side (cube), `position` the
    centre of the object (mid-height), `height` its vertical extent, `yaw` the cube's rotation about the vertical."""

    shape: str
    color: str
    size: float
    position: tuple[float, float, float]
    height: float = 0.0
    yaw: float = 0.0

    @property
    def adjective(self) -> str:
        return "small " if self.size < 0.38 else "large " if self.size > 0.52 else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape, "color": self.color, "size": self.size, "position": list(self.position),
            "height": self.height, "yaw": self.yaw,
        }


def camera_rays(height: int, width: int) -> np.ndarray:
    """Unit ray directions through the pixel centres, `(height, width, 3)`."""
    focal = 0.5 * width / math.tan(FIELD_OF_VIEW / 2)
    u = (np.arange(width) + 0.5 - width / 2) / focal
    v = (np.arange(height) + 0.5 - height / 2) / focal
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


@functools.lru_cache(maxsize=8)
def _flat_camera_rays(height: int, width: int) -> np.ndarray:
    """`camera_rays` as `(height * width, 3)`, computed once per size (read-only: every scene shares it)."""
    rays = camera_rays(height, width).reshape(-1, 3)
    rays.setflags(write=False)
    return rays


def sample_objects(rng: np.random.Generator, max_objects: int = 4) -> list[SceneObject]:
    """1 to `max_objects` non-overlapping objects inside the field of view."""
    objects: list[SceneObject] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            size = float(rng.uniform(0.3, 0.6))
            z = float(rng.uniform(3.5, 7.0))
            x = float(rng.uniform(-1, 1) * (z * math.tan(FIELD_OF_VIEW / 2) - 1.5 * size))
            if all(math.hypot(x - o.position[0], z - o.position[2]) > 1.5 * (size + o.size) for o in objects):
                break
        else:
            continue
        height = {"sphere": 2 * size, "cube": 2 * size, "cylinder": float(rng.uniform(1.5, 3.0)) * size}[shape]
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        yaw = float(rng.uniform(0, math.pi / 2)) if shape == "cube" else 0.0
        objects.append(SceneObject(shape, color, size, (x, FLOOR_Y - height / 2, z), height, yaw))
    return objects


# ---------------------------------------------------------------------------------------------------------------------
# Ray intersections: origins and directions (N, 3) -> distance t (N,) (inf on a miss) and unit normals (N, 3)


def _rotate_y(vectors: np.ndarray, angle: float) -> np.ndarray:
    if angle == 0.0:  # spheres and cylinders (no yaw): a third of the rendering time went into turning by zero
        return vectors
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([c * x + s * z, y, -s * x + c * z], axis=-1)


def _intersect(obj: SceneObject, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # (under render_scene's np.errstate: rays that miss give NaN, rays parallel to a face divide by zero)
    # work in the object's frame: centre at the origin, cube axes aligned
    local_o = _rotate_y(origins - np.array(obj.position), -obj.yaw)
    local_d = _rotate_y(dirs, -obj.yaw)
    if obj.shape == "sphere":
        b = np.einsum("ij,ij->i", local_o, local_d)
        c = np.einsum("ij,ij->i", local_o, local_o) - obj.size**2
        t = -b - np.sqrt(b * b - c)  # NaN on a miss
        t = np.where(t > _EPS, t, np.inf)
        normals = (local_o + t[:, None] * local_d) / obj.size
    elif obj.shape == "cube":
        t1, t2 = (-obj.size - local_o) / local_d, (obj.size - local_o) / local_d
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near, t_far = near.max(axis=1), far.min(axis=1)
        t = np.where((t_far >= t_near) & (t_near > _EPS), t_near, np.inf)
        axis = near.argmax(axis=1)
        normals = np.zeros_like(local_d)
        normals[np.arange(len(axis)), axis] = -np.sign(local_d[np.arange(len(axis)), axis])
    else:  # vertical cylinder with a flat top
        half = obj.height / 2
        a = local_d[:, 0] ** 2 + local_d[:, 2] ** 2
        b = local_o[:, 0] * local_d[:, 0] + local_o[:, 2] * local_d[:, 2]
        c = local_o[:, 0] ** 2 + local_o[:, 2] ** 2 - obj.size**2
        t_side = (-b - np.sqrt(b * b - a * c)) / a
        y_side = local_o[:, 1] + t_side * local_d[:, 1]
        t_side = np.where((t_side > _EPS) & (np.abs(y_side) <= half), t_side, np.inf)
        t_top = (-half - local_o[:, 1]) / local_d[:, 1]
        top = local_o + t_top[:, None] * local_d
        t_top = np.where((t_top > _EPS) & (top[:, 0] ** 2 + top[:, 2] ** 2 <= obj.size**2), t_top, np.inf)
        t = np.minimum(t_side, t_top)
        side_point = local_o + t_side[:, None] * local_d
        side_normals = side_point * np.array([1.0, 0.0, 1.0]) / obj.size
        normals = np.where((t_top < t_side)[:, None], np.array([0.0, -1.0, 0.0]), side_normals)
    t = np.where(np.isnan(t), np.inf, t)
    return t, _rotate_y(np.nan_to_num(normals), obj.yaw)


def _bounding_radius(obj: SceneObject) -> float:
    """Radius of a sphere about the object's centre that holds the whole object."""
    if obj.shape == "sphere":
        return obj.size
    half_width = obj.size * (math.sqrt(2.0) if obj.shape == "cube" else 1.0)  # a cube's corner, a cylinder's rim
    return math.hypot(half_width, obj.height / 2)


def _candidate_rays(obj: SceneObject, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Indices of the rays (unit directions) that pass through the object's bounding sphere ahead of their origin,
    with a margin: every ray that can hit the object, and a few that miss it. An object covers a small part of the
    image, so the exact test then runs on a few rays instead of all of them."""
    radius = 1.001 * _bounding_radius(obj) + 1e-6
    to_centre = np.asarray(obj.position) - origins
    along = np.einsum("ij,ij->i", to_centre, dirs)
    across = np.einsum("ij,ij->i", to_centre, to_centre) - along * along  # squared distance of the centre to the ray
    return np.flatnonzero((across <= radius * radius) & (along >= -radius))


def _hit_objects(objects: list[SceneObject], origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nearest object hit: distance, normal and object index (-1 for none). Each object is tested exactly on the rays
    through its bounding sphere only (the others miss it: the same result as testing every ray)."""
    best_t = np.full(len(dirs), np.inf)
    best_n = np.zeros_like(dirs)
    best_i = np.full(len(dirs), -1)
    for index, obj in enumerate(objects):
        rays = _candidate_rays(obj, origins, dirs)
        t, normals = _intersect(obj, origins[rays], dirs[rays])
        closer = t < best_t[rays]
        hit = rays[closer]
        best_t[hit], best_n[hit], best_i[hit] = t[closer], normals[closer], index
    return best_t, best_n, best_i


def render_scene(seed: int | tuple[int, ...], height: int = 224, width: int = 224, max_objects: int = 4) -> dict[str, Any]:
    """Render one scene.

    Returns a dict with `rgb` `(H, W, 3)` uint8, `depth` `(H, W)` float32 (z in scene units), `normal` `(H, W, 3)`
    float32 unit vectors, `semseg` `(H, W)` uint8 ids into `SYNTHETIC_CLASSES`, `caption` str, `det`
    `{"instances": [{"boxes": [xmin, ymin, xmax, ymax] in [0, 1], "class_name", "score"}]}` (4M's det format) and
    `objects` (the scene description).
    """
    _check_scene_size(height, width)
    check_int(max_objects, "max_objects", minimum=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # entered once per scene: it costs ~0.1 ms each time
        return _render(seed, height, width, max_objects)


def _render(seed: int | tuple[int, ...], height: int, width: int, max_objects: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    objects = sample_objects(rng, max_objects)
    dirs = _flat_camera_rays(height, width)
    origins = np.zeros_like(dirs)

    # 1. primary rays: objects, floor (y = FLOOR_Y) and wall (z = WALL_Z); the wall closes every view
    t, normals, index = _hit_objects(objects, origins, dirs)
    t_floor = np.where(dirs[:, 1] > 0, FLOOR_Y / dirs[:, 1], np.inf)
    t_wall = WALL_Z / dirs[:, 2]
    floor = (t_floor < t) & (t_floor <= t_wall)
    wall = (t_wall < t) & ~floor
    t = np.where(floor, t_floor, np.where(wall, t_wall, t))
    normals[floor] = (0.0, -1.0, 0.0)
    normals[wall] = (0.0, 0.0, -1.0)
    shape_class = np.array([SYNTHETIC_CLASSES.index(o.shape) for o in objects] + [0], dtype=np.uint8)
    labels = np.where(floor, 0, np.where(wall, 1, shape_class[index]))
    index = np.where(floor | wall, -1, index)
    points = t[:, None] * dirs

    # 2. shading: Lambert with ambient light, hard shadows cast by the objects
    albedo = np.empty_like(dirs)
    albedo[:] = WALL_ALBEDO
    albedo[floor] = FLOOR_ALBEDO
    for i, obj in enumerate(objects):
        albedo[index == i] = COLORS[obj.color]
    lit = np.clip(normals @ LIGHT, 0.0, None)
    shadow_t, _, _ = _hit_objects(objects, points + 1e-4 * normals, np.broadcast_to(LIGHT, dirs.shape))
    lit = np.where(np.isfinite(shadow_t), 0.0, lit)
    rgb = np.clip(albedo * (AMBIENT + (1 - AMBIENT) * lit)[:, None], 0.0, 1.0)

    # 3. boxes of the visible pixels of each object; the caption lists the visible objects from left to right
    index_map = index.reshape(height, width)
    instances, visible = [], []
    for i, obj in enumerate(objects):
        rows, cols = np.nonzero(index_map == i)
        if len(rows) == 0:
            continue
        box = [cols.min() / width, rows.min() / height, (cols.max() + 1) / width, (rows.max() + 1) / height]
        instances.append({"boxes": [float(v) for v in box], "class_name": obj.shape, "score": 1.0})
        visible.append(obj)
    return {
        "rgb": np.round(rgb * 255).astype(np.uint8).reshape(height, width, 3),
        "depth": points[:, 2].astype(np.float32).reshape(height, width),
        "normal": normals.astype(np.float32).reshape(height, width, 3),
        "semseg": labels.astype(np.uint8).reshape(height, width),
        "caption": describe(visible),
        "det": {"instances": instances},
        "objects": [o.to_dict() for o in objects],
    }


def describe(objects: list[SceneObject]) -> str:
    """'a small red sphere, a cyan cube and a large green cylinder on a gray floor.' (left to right)"""
    names = []
    for o in sorted(objects, key=lambda o: o.position[0] / o.position[2]):
        words = f"{o.adjective}{o.color} {o.shape}"
        names.append(("an " if words[0] in "aeiou" else "a ") + words)
    if not names:
        return "an empty gray floor in front of a wall."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed} on a gray floor."


# ---------------------------------------------------------------------------------------------------------------------
# datasets integration


def synthetic_features(height: int, width: int) -> datasets.Features:
    """Column types of the synthetic scenes."""
    return datasets.Features(
        {
            "scene_id": datasets.Value("int64"),
            "rgb": datasets.Image(),
            "depth": datasets.Array2D((height, width), "float32"),
            "normal": datasets.Array3D((height, width, 3), "float32"),
            "semseg": datasets.Array2D((height, width), "uint8"),
            "caption": datasets.Value("string"),
            "det": {
                "instances": datasets.List(
                    {
                        "boxes": datasets.List(datasets.Value("float32"), length=4),
                        "class_name": datasets.Value("string"),
                        "score": datasets.Value("float32"),
                    }
                )
            },
            "objects": datasets.List(
                {
                    "shape": datasets.Value("string"),
                    "color": datasets.Value("string"),
                    "size": datasets.Value("float32"),
                    "position": datasets.List(datasets.Value("float32"), length=3),
                    "height": datasets.Value("float32"),
                    "yaw": datasets.Value("float32"),
                }
            ),
        }
    )


def _check_scene_size(height: Any, width: Any) -> None:
    for name, value in (("height", height), ("width", width)):
        check_int(value, name)
        if value < 1:
            raise ValueError(f"Scenes need a positive size, got {height}x{width}.")


def generate_scenes(start: int, count: int, seed: int = 0, height: int = 224, width: int = 224) -> Iterator[dict]:
    """Scenes `start, ..., start + count - 1` of the series `seed` (scene i is seeded with `(seed, i)`)."""
    for scene_id in range(start, start + count):
        yield {"scene_id": scene_id, **render_scene((seed, scene_id), height, width)}


def _scene_shards(
    starts: list[int], counts: list[int], seed: int, height: int, width: int, columns: tuple[str, ...] | None
) -> Iterator[dict]:
    """`generate_scenes` over one or more `(start, count)` ranges (one per process), keeping `columns` (all if None)."""
    for start, count in zip(starts, counts, strict=True):
        for scene in generate_scenes(start, count, seed, height, width):
            yield scene if columns is None else {name: scene[name] for name in columns}


def synthetic_scenes_dataset(
    num_scenes: int,
    height: int = 224,
    width: int = 224,
    seed: int = 0,
    start: int = 0,
    cache_dir: str | None = None,
    columns: Sequence[str] | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """A `datasets.Dataset` of scenes `start, ..., start + num_scenes - 1`, written to (and reused from) the datasets
    cache. `columns` keeps only those columns (e.g. without `normal`, the largest); `num_proc` renders in that many
    processes, each a contiguous range of scenes, so the rows are the same and in the same order as with one."""
    check_int(num_scenes, "num_scenes", minimum=1)
    _check_scene_size(height, width)
    check_int(seed, "seed", minimum=0)
    check_int(start, "start", minimum=0)
    if num_proc is not None:
        check_int(num_proc, "num_proc", minimum=1)
    features = synthetic_features(height, width)
    if columns is not None:
        if isinstance(columns, str):
            raise TypeError(f"columns must be a list of column names, got the string {columns!r}; wrap it in a list.")
        unknown = sorted(set(columns) - set(features))
        if unknown:
            raise ValueError(
                f"Unknown synthetic scene columns {unknown}; the columns are {sorted(features)}."
                f"{close_match(unknown[0], features)}"
            )
        features = datasets.Features({name: features[name] for name in columns})
    shards = max(1, min(num_proc or 1, num_scenes))
    bounds = [start + num_scenes * i // shards for i in range(shards + 1)]
    return datasets.Dataset.from_generator(
        _scene_shards,
        features=features,
        gen_kwargs={
            "starts": bounds[:-1],
            "counts": [b - a for a, b in itertools.pairwise(bounds)],
            "seed": seed, "height": height, "width": width, "columns": None if columns is None else tuple(columns),  # lists are sharded; a tuple is not
        },
        cache_dir=cache_dir,
        num_proc=shards if shards > 1 else None,
    )  # fmt: skip


class SyntheticScenesConfig(datasets.BuilderConfig):
    """Sizes of the synthetic-scene splits, the image size and the seed of the series."""

    def __init__(
        self, num_train: int = 1000, num_validation: int = 100, height: int = 224, width: int = 224, seed: int = 0,
        **kwargs: Any,
    ):
        check_int(num_train, "num_train", minimum=0)
        check_int(num_validation, "num_validation", minimum=0)
        _check_scene_size(height, width)
        check_int(seed, "seed", minimum=0)
        name = kwargs.pop("name", f"{height}x{width}-seed{seed}-{num_train}-{num_validation}")
        super().__init__(name=name, **kwargs)
        self.num_train, self.num_validation = num_train, num_validation
        self.height, self.width, self.seed = height, width, seed


class SyntheticScenes(datasets.GeneratorBasedBuilder):
    """`datasets` builder of the synthetic scenes: train scenes 0..num_train-1, then the validation scenes.

    >>> builder = SyntheticScenes(num_train=64, num_validation=8, height=128, width=128)
    >>> builder.download_and_prepare()
    >>> train = builder.as_dataset("train")
    """

    BUILDER_CONFIG_CLASS = SyntheticScenesConfig
    BUILDER_CONFIGS = [SyntheticScenesConfig()]
    DEFAULT_CONFIG_NAME = BUILDER_CONFIGS[0].name

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Synthetic scenes of simple objects with aligned RGB, depth, normals, segmentation, "
            "caption and boxes.",
            features=synthetic_features(self.config.height, self.config.width),
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        c = self.config
        common = {"seed": c.seed, "height": c.height, "width": c.width}
        return [
            datasets.SplitGenerator(datasets.Split.TRAIN, gen_kwargs={"start": 0, "count": c.num_train, **common}),
            datasets.SplitGenerator(
                datasets.Split.VALIDATION, gen_kwargs={"start": c.num_train, "count": c.num_validation, **common}
            ),
        ]

    def _generate_examples(self, start: int, count: int, seed: int, height: int, width: int):
        for example in generate_scenes(start, count, seed, height, width):
            yield example["scene_id"], example


__all__ = [
    "SYNTHETIC_CLASSES",
    "SceneObject",
    "SyntheticScenes",
    "SyntheticScenesConfig",
    "camera_rays",
    "generate_scenes",
    "render_scene",
    "synthetic_features",
    "synthetic_scenes_dataset",
]
