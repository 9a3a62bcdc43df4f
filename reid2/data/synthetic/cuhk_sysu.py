"""Synthetic CUHK-SYSU: street scenes with several people and the original MATLAB annotation files.

Layout and structures follow the real dataset (notes/person_search.md §3.1, checked against the real
``TestG100.mat``)::

    Image/SSM/s<N>.jpg
    annotation/Images.mat   Img: 1×N struct {imname, nAppear, box: 1×n struct {idlocate (x,y,w,h), ishard}}
    annotation/Person.mat   Person: 1×P struct {idname, nAppear, scene: 1×k struct {imname, idlocate, ishard}}
    annotation/pool.mat     pool: M×1 cell of the test image names
    annotation/test/train_test/Train.mat    Train: K×1 cell of 1×1 struct {idname, nAppear, scene}
    annotation/test/train_test/TestG<G>.mat TestG<G>: 1×Q struct {Query: 1×1 {imname, idlocate, ishard, idname},
                                                      Gallery: 1×G {imname, idlocate, ishard}}

Integers use MATLAB's smallest type (idlocate uint8 when all four values < 256, else uint16; ishard uint8);
gallery images without the person have float64 (1, 0) ``idlocate``/``ishard``; positives come first.
Images.mat lists every person; Person/Train/TestG only the labelled identities (each in ≥ 2 images), like
CUHK-SYSU's unlabelled pedestrians. Test identities are disjoint from training ones; pool = the test images.
"""
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from .files import cell_column, save_mat, smallest_uint, struct_array, write_once
from .person import paste_layer, random_appearance, random_pose, render_person
from .scene import apply_camera, draw_object, encode_jpeg, random_camera_style, street_background

__all__ = ["CUHK_SYSU_FOLDER", "generate_cuhk_sysu"]

CUHK_SYSU_FOLDER = "CUHK-SYSU"
_STREAM = 20
_OBJECTS = ("pole", "tree", "car", "box")
_HARD_VISIBLE_FRACTION = 0.7  # ishard = 1 below this visible fraction
_MAX_HIDDEN_BY_OBJECT = 0.4  # objects in front hide at most this fraction of a person
_logger = logging.getLogger(__name__)


@dataclass
class _Box:
    """One annotated person of a scene; ``identity`` indexes the labelled identities, -1 = unlabelled."""

    identity: int
    xywh: Tuple[int, int, int, int] = (0, 0, 0, 0)
    ishard: int = 0


@dataclass
class _Scene:
    number: int  # the N of s<N>.jpg
    test: bool
    boxes: List[_Box]

    @property
    def name(self):
        return f"s{self.number}.jpg"


def _assign(rng, scenes, identities, max_people):
    """Put each identity in 2–4 distinct scenes, favouring the emptier ones."""
    for identity in identities:
        load = np.array([len(s.boxes) for s in scenes], float)
        weights = np.where(load < max_people, 1.0 / (1.0 + load) ** 2, 0.0)
        count = min(int(rng.integers(2, 5)), int((weights > 0).sum()))
        if count < 2:
            raise ValueError(f"too few scenes for {len(identities)} identities with ≤ {max_people} people each")
        for index in rng.choice(len(scenes), count, replace=False, p=weights / weights.sum()):
            scenes[index].boxes.append(_Box(identity))


def _plan(rng, num_train_ids, num_test_ids, num_train_images, num_test_images):
    """Scenes (numbered in a shuffled order, so train and test names interleave) and who is in each."""
    numbers = rng.permutation(num_train_images + num_test_images) + 1
    scenes = [_Scene(int(n), i >= num_train_images, []) for i, n in enumerate(numbers)]
    _assign(rng, scenes[:num_train_images], range(num_train_ids), max_people=5)
    _assign(rng, scenes[num_train_images:], range(num_train_ids, num_train_ids + num_test_ids), max_people=5)
    for scene in scenes:  # unlabelled pedestrians
        extra = int(rng.integers(1, 4)) if len(scene.boxes) < 3 else int(rng.integers(0, 2))
        scene.boxes.extend(_Box(-1) for _ in range(extra))
        order = rng.permutation(len(scene.boxes))
        scene.boxes = [scene.boxes[i] for i in order]
    return sorted(scenes, key=lambda s: s.number)


def _layout(rng, scene: _Scene, width, height, horizon):
    """(foot y, kind, box, foot x, size) of every person and object, far to near (the drawing order)."""
    scale = height / 240.0
    h_min, h_max = 40 * scale, 110 * scale
    y_far, y_near = max(horizon * height + 4, h_max * 0.45), height - 2

    def ground(f):  # perspective: far people (f = 0) are small and stand higher
        return y_far + f * (y_near - y_far), h_min + f * (h_max - h_min)

    entities, placed = [], []
    for box in scene.boxes:
        foot_y, size = ground(rng.uniform(0, 1))
        size = min(size * rng.uniform(0.92, 1.05), foot_y - 2) / 1.08  # the whole body inside the image
        half = 0.25 * size
        for _ in range(15):  # limit overlaps between people
            foot_x = rng.uniform(half, width - half)
            if all(abs(foot_x - x) > 0.6 * (half + h) or abs(foot_y - y) > 0.5 * size for x, y, h in placed):
                break
        placed.append((foot_x, foot_y, half))
        entities.append((foot_y, "person", box, foot_x, size))
    for _ in range(int(rng.integers(1, 5))):
        foot_y, size = ground(rng.uniform(0, 1))
        entities.append((foot_y, _OBJECTS[rng.integers(len(_OBJECTS))], None, rng.uniform(0, width), size))
    return sorted(entities, key=lambda e: e[0])


def _render_scene(rng, scene: _Scene, appearances, image_size):
    """Render ``scene`` and fill in its boxes (full person extent, clipped) and ishard → BGR uint8 image."""
    width, height = image_size
    style = random_camera_style(rng, int(rng.integers(9)))
    style = dataclasses.replace(style, horizon=float(rng.uniform(0.3, 0.5)), resolution=1.0)
    rgb = street_background(rng, height, width, style.wall, style.ground, style.horizon, clutter=14)
    entities = _layout(rng, scene, width, height, style.horizon)
    owner = np.full((height, width), -1, int)  # which person each pixel shows, for the visible fraction
    areas = {}  # drawing order → (box, full mask area)
    for order, (foot_y, kind, box, foot_x, size) in enumerate(entities):
        if kind != "person":  # an object in front may hide part of a person, never most of one
            drawn = rgb.copy()
            region = draw_object(rng, drawn, None, kind, foot_x, foot_y, size * rng.uniform(0.5, 1.3))
            visible = np.bincount(owner[owner >= 0], minlength=len(entities))
            hidden = np.bincount(owner[region & (owner >= 0)], minlength=len(entities))
            if all(hidden[o] == 0 or visible[o] - hidden[o] >= (1 - _MAX_HIDDEN_BY_OBJECT) * area
                   for o, (_, area) in areas.items()):
                rgb[:] = drawn
                owner[region] = -1
            continue
        appearance = appearances[box.identity] if box.identity >= 0 else random_appearance(rng)
        layer = render_person(appearance, random_pose(rng, rng.uniform(-np.pi, np.pi)), size)
        pasted, full = paste_layer(layer, rgb, None, (foot_x, foot_y))
        owner[pasted] = order
        x0, y0 = max(int(full[0]), 0), max(int(full[1]), 0)
        x1, y1 = min(int(full[2]), width), min(int(full[3]), height)
        box.xywh = (x0, y0, x1 - x0, y1 - y0)
        areas[order] = (box, int(layer.mask.sum()))
    for order, (box, area) in areas.items():
        box.ishard = int((owner == order).sum() < _HARD_VISIBLE_FRACTION * area)
    return apply_camera(rng, rgb, style)


# ------------------------------------------------------------------------------------------- MATLAB files


def _scene_entry(name, box: _Box):
    return {"imname": name, "idlocate": smallest_uint(box.xywh), "ishard": np.array([[box.ishard]], np.uint8)}


def _person_struct(idname, appearances_of):
    """1×1 struct {idname, nAppear, scene} of one labelled identity (Person.mat element / Train.mat cell)."""
    scene = struct_array([_scene_entry(n, b) for n, b in appearances_of], ("imname", "idlocate", "ishard"))
    return struct_array([{"idname": idname, "nAppear": smallest_uint([len(appearances_of)]), "scene": scene}],
                        ("idname", "nAppear", "scene"))


def _write_annotations(out: Path, rng, scenes, idnames, num_train_ids, gallery_sizes):
    annotation, protocol = out / "annotation", out / "annotation" / "test" / "train_test"
    protocol.mkdir(parents=True)
    images = []
    for scene in scenes:
        boxes = sorted(scene.boxes, key=lambda b: b.xywh)
        box = struct_array([{"idlocate": smallest_uint(b.xywh), "ishard": np.array([[b.ishard]], np.uint8)}
                            for b in boxes], ("idlocate", "ishard"))
        images.append({"imname": scene.name, "nAppear": smallest_uint([len(boxes)]), "box": box})
    save_mat(annotation / "Images.mat", {"Img": struct_array(images, ("imname", "nAppear", "box"))})
    pool = [s.name for s in scenes if s.test]
    save_mat(annotation / "pool.mat", {"pool": cell_column(pool)})

    seen = {i: [(s.name, b) for s in scenes for b in s.boxes if b.identity == i] for i in range(len(idnames))}
    by_idname = sorted(range(len(idnames)), key=lambda i: int(idnames[i][1:]))
    person = np.concatenate([_person_struct(idnames[i], seen[i]) for i in by_idname], axis=1)
    save_mat(annotation / "Person.mat", {"Person": person})
    train = [i for i in by_idname if i < num_train_ids]
    save_mat(protocol / "Train.mat", {"Train": cell_column([_person_struct(idnames[i], seen[i]) for i in train])})

    test = [i for i in by_idname if i >= num_train_ids]
    rows = []  # (query entry, positives, per-query negative order): shared by every gallery size
    for i in test:
        order = rng.permutation(len(seen[i]))
        query, positives = seen[i][order[0]], [seen[i][k] for k in order[1:]]
        with_person = {name for name, _ in seen[i]}
        negatives = [pool[k] for k in rng.permutation(len(pool)) if pool[k] not in with_person]
        rows.append((idnames[i], query, positives, negatives))
    empty = np.zeros((1, 0))  # MATLAB's [] as scipy reads it: float64 (1, 0)
    for size in gallery_sizes:
        if size > len(pool) - 1:
            _logger.warning("CUHK-SYSU synthetic test set has %d images: skipping TestG%d (a gallery of %d "
                            "images besides the query image)", len(pool), size, size)
            continue
        protocol_rows = []
        for idname, (q_name, q_box), positives, negatives in rows:
            query = struct_array([{**_scene_entry(q_name, q_box), "idname": idname}],
                                 ("imname", "idlocate", "ishard", "idname"))
            gallery = [_scene_entry(n, b) for n, b in positives[:size]]
            gallery += [{"imname": n, "idlocate": empty, "ishard": empty} for n in negatives[:size - len(gallery)]]
            protocol_rows.append({"Query": query, "Gallery": struct_array(gallery, ("imname", "idlocate", "ishard"))})
        key = f"TestG{size}"
        save_mat(protocol / f"{key}.mat", {key: struct_array(protocol_rows, ("Query", "Gallery"))})


def _check(num_train_ids, num_test_ids, num_train_images, num_test_images, gallery_sizes, image_size):
    if num_train_ids < 2 or num_test_ids < 2:  # 1-row cells squeeze to 0-d arrays in the usual loaders
        raise ValueError(f"need ≥ 2 train and ≥ 2 test identities, got {num_train_ids} and {num_test_ids}")
    if num_train_images < 2 or num_test_images < 2:
        raise ValueError(f"need ≥ 2 train and ≥ 2 test images, got {num_train_images} and {num_test_images}")
    if len(image_size) != 2 or min(image_size) < 64:
        raise ValueError(f"image_size must be (W, H) with both ≥ 64, got {image_size}")
    if any(int(g) < 1 for g in gallery_sizes):
        raise ValueError(f"gallery sizes must be positive, got {gallery_sizes}")


def generate_cuhk_sysu(root, num_train_ids=100, num_test_ids=50, num_train_images=300, num_test_images=150,
                       gallery_sizes=(50, 100), seed=0, image_size=(320, 240)) -> Path:
    """Write synthetic CUHK-SYSU to ``root/CUHK-SYSU`` (skipped when already there); returns its path.

    ``image_size`` is (W, H); people are 40–110 px tall at H = 240 (scaled with H). A gallery size larger
    than the test set minus the query image is skipped with a warning.
    """
    gallery_sizes = tuple(int(g) for g in gallery_sizes)
    image_size = tuple(int(s) for s in image_size)
    _check(num_train_ids, num_test_ids, num_train_images, num_test_images, gallery_sizes, image_size)
    params = dict(num_train_ids=num_train_ids, num_test_ids=num_test_ids, num_train_images=num_train_images,
                  num_test_images=num_test_images, gallery_sizes=gallery_sizes, seed=seed, image_size=image_size)

    def write(out: Path):
        rng = np.random.default_rng([seed, _STREAM])
        num_ids = num_train_ids + num_test_ids
        idnames = [f"p{n}" for n in rng.choice(np.arange(1, 20000), num_ids, replace=False)]
        scenes = _plan(rng, num_train_ids, num_test_ids, num_train_images, num_test_images)
        appearances = [random_appearance(np.random.default_rng([seed, _STREAM, 1, i])) for i in range(num_ids)]
        image_dir = out / "Image" / "SSM"
        image_dir.mkdir(parents=True)
        for scene in scenes:
            bgr = _render_scene(np.random.default_rng([seed, _STREAM, 2, scene.number]), scene, appearances,
                                image_size)
            (image_dir / scene.name).write_bytes(encode_jpeg(bgr))
        _write_annotations(out, rng, scenes, idnames, num_train_ids, gallery_sizes)
        _logger.info("synthetic CUHK-SYSU: %d scenes, %d boxes, %d train / %d test identities", len(scenes),
                     sum(len(s.boxes) for s in scenes), num_train_ids, num_test_ids)

    return write_once(Path(root) / CUHK_SYSU_FOLDER, "cuhk_sysu", params, write)
