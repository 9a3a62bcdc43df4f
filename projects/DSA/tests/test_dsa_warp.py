"""DSA-reID (projects/DSA): DensePose IUV readers and the DSAP / CSA warping."""
import base64
import io
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from projects.DSA.tests.densepose_fakes import fake_densepose_modules
from reid2.projects.dsa import warp_to_dsap
from reid2.projects.dsa.dsap import csa_part_images, flip_iuv, mean_pixel
from reid2.projects.dsa.iuv import (
    IUV,
    decode_d2_compressed,
    iuv_from_dump_entry,
    load_densepose_dump,
    read_d2_iuv_png,
    read_iuv,
    read_legacy_iuv_png,
    read_npz_iuv,
    save_npz_iuv,
    split_legacy_instances,
)
from reid2.projects.dsa.parts import POINT_LABEL_SYMMETRIES


def naive_warp(image, labels, u, v, size=32, fill=None, collision="copy"):
    """Reference: a per-pixel Python loop in the paper's orientation (row ⌊u·S⌋, column ⌊v·S⌋), rotated by 90°
    at the end; "copy" = the last pixel in raster order wins, "mean" = their average; image mean elsewhere."""
    fill = image.reshape(-1, 3).mean(0) if fill is None else np.asarray(fill, np.float64)
    sums = np.zeros((24, size, size, 3))
    last = np.zeros((24, size, size, 3))
    counts = np.zeros((24, size, size))
    H, W = labels.shape
    for y in range(H):
        for x in range(W):
            p = int(labels[y, x])
            if p == 0:
                continue
            uu, vv = min(max(float(u[y, x]), 0.0), 1.0), min(max(float(v[y, x]), 0.0), 1.0)
            r, c = min(int(np.floor(uu * size)), size - 1), min(int(np.floor(vv * size)), size - 1)
            sums[p - 1, r, c] += image[y, x]
            last[p - 1, r, c] = image[y, x]
            counts[p - 1, r, c] += 1
    paper = np.empty((24, size, size, 3))
    paper[:] = fill
    hit = counts > 0
    paper[hit] = sums[hit] / counts[hit][:, None] if collision == "mean" else last[hit]
    return np.rot90(paper, 1, axes=(1, 2))


def random_iuv(rng, h=40, w=24):
    labels = rng.integers(0, 25, (h, w)).astype(np.uint8)
    labels[rng.random((h, w)) < 0.3] = 0
    u = rng.uniform(-0.05, 1.05, (h, w)).astype(np.float32)  # out of range: must be clamped
    v = rng.uniform(-0.05, 1.05, (h, w)).astype(np.float32)
    u[0, 0], v[0, 0], labels[0, 0] = 1.0, 0.0, 5  # exactly 1 / exactly 0: capped at S-1
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    return image, labels, u, v


@pytest.mark.parametrize("collision", ["copy", "mean"])
@pytest.mark.parametrize("seed,size,fill", [(0, 32, None), (1, 8, (10.0, 20.0, 30.0)), (2, 5, None)])
def test_warp_matches_naive_loop(seed, size, fill, collision):
    image, labels, u, v = random_iuv(np.random.default_rng(seed))
    out = warp_to_dsap(image, labels, u, v, size=size, fill=fill, collision=collision)
    assert out.shape == (24, size, size, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, naive_warp(image, labels, u, v, size, fill, collision), rtol=1e-5, atol=1e-3)


def test_warp_is_the_papers_image_rotated_by_90_degrees():
    """Hand-built: S = 4, one pixel per cell, each on a cell the paper puts at (row ⌊uS⌋, col ⌊vS⌋)."""
    size = 4
    #          (u,    v)    paper cell (row, col)   ours = rot90: (row S-1-col, col row)
    cases = [((0.10, 0.60), (0, 2)),
             ((0.30, 0.25), (1, 1)),  # v·S = 1 exactly: paper column 1 → our row 2 (⌊(1-v)S⌋ would give 3)
             ((0.50, 0.75), (2, 3)),  # u·S = 2, v·S = 3 exactly
             ((1.00, 0.00), (3, 0)),  # u = 1: ⌊uS⌋ = S, capped at S-1
             ((0.00, 1.00), (0, 3))]  # v = 1: capped
    n = len(cases)
    image = np.zeros((1, n, 3), np.uint8)
    image[0, :, 0] = 10 * np.arange(1, n + 1)
    labels = np.full((1, n), 7, np.uint8)
    u = np.array([[c[0][0] for c in cases]], np.float32)
    v = np.array([[c[0][1] for c in cases]], np.float32)
    paper = np.zeros((size, size))
    for i, (_, (r, c)) in enumerate(cases):
        paper[r, c] = 10 * (i + 1)
    out = warp_to_dsap(image, labels, u, v, size=size, fill=(0, 0, 0))
    np.testing.assert_array_equal(out[6, :, :, 0], np.rot90(paper, 1))
    ours = {(size - 1 - c, r): 10 * (i + 1) for i, (_, (r, c)) in enumerate(cases)}
    assert ours[(2, 1)] == 20 and out[6, 2, 1, 0] == 20  # the exact boundary v = 0.25
    assert not np.array_equal(np.rot90(paper, 1), paper[::-1])  # not a vertical flip of the paper's image


def test_warp_convention_and_collisions():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0], image[0, 1], image[1, 2] = (100, 0, 0), (200, 0, 0), (7, 8, 9)
    labels = np.array([[3, 3, 0], [0, 0, 24]], np.uint8)
    u = np.array([[0.26, 0.3, 0.0], [0, 0, 0.99]], np.float32)  # column floor(u*4) = 1, 1, 3
    v = np.array([[0.9, 0.8, 0.0], [0, 0, 1.0]], np.float32)    # row 3 - floor(v*4) = 0, 0, 0
    copied = warp_to_dsap(image, labels, u, v, size=4, fill=(1, 2, 3))
    np.testing.assert_allclose(copied[2, 0, 1], (200, 0, 0))  # two pixels on one cell: the later one (raster)
    averaged = warp_to_dsap(image, labels, u, v, size=4, fill=(1, 2, 3), collision="mean")
    np.testing.assert_allclose(averaged[2, 0, 1], (150, 0, 0))  # or their mean
    for out in (copied, averaged):
        np.testing.assert_allclose(out[23, 0, 3], (7, 8, 9))
        untouched = np.ones((24, 4, 4), bool)
        untouched[2, 0, 1] = untouched[23, 0, 3] = False
        assert np.all(out[untouched] == np.array([1, 2, 3], np.float32))  # fill elsewhere, background ignored
    with pytest.raises(ValueError, match="MODEL.DSA.COLLISION"):
        warp_to_dsap(image, labels, u, v, size=4, collision="max")


def test_warp_empty_person_is_mean_filled_and_bad_input_rejected():
    image = np.random.default_rng(0).integers(0, 256, (10, 6, 3)).astype(np.uint8)
    z = np.zeros((10, 6), np.float32)
    out = warp_to_dsap(image, np.zeros((10, 6), np.uint8), z, z)
    np.testing.assert_allclose(out, np.broadcast_to(mean_pixel(image), out.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        warp_to_dsap(image, np.zeros((9, 6), np.uint8), z, z)
    with pytest.raises(ValueError, match="0..24"):
        warp_to_dsap(image, np.full((10, 6), 25, np.uint8), z, z)


def test_csa_crops_part_bounding_boxes():
    image = np.zeros((20, 10, 3), np.uint8)
    image[2:6, 1:5] = (50, 60, 70)
    labels = np.zeros((20, 10), np.uint8)
    labels[2:6, 1:5] = 1  # a 4×4 block: its box crop is uniform
    labels[10, 7] = 9
    image[10, 7] = (255, 0, 0)
    out = csa_part_images(image, labels, size=8, fill=(0, 0, 0))
    assert out.shape == (24, 8, 8, 3)
    np.testing.assert_allclose(out[0], np.broadcast_to((50, 60, 70), (8, 8, 3)))
    np.testing.assert_allclose(out[8], np.broadcast_to((255, 0, 0), (8, 8, 3)))  # a 1-pixel part fills its image
    assert np.all(out[[p for p in range(24) if p not in (0, 8)]] == 0)


def test_flip_iuv_swaps_labels_and_uses_the_tables():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 25, (6, 5)).astype(np.uint8)
    u, v = rng.random((6, 5)).astype(np.float32), rng.random((6, 5)).astype(np.float32)
    ut = np.broadcast_to(np.arange(256, dtype=np.float32)[None, None, :] / 255, (24, 256, 256))  # u → u_loc / 255
    vt = np.broadcast_to(np.float32(0.5), (24, 256, 256))
    fl, fu, fv = flip_iuv(labels, u, v, ut, vt)
    np.testing.assert_array_equal(fl, np.asarray(POINT_LABEL_SYMMETRIES)[labels[:, ::-1]])
    body = fl > 0
    np.testing.assert_allclose(fu[body], (np.floor(u[:, ::-1] * 255) / 255)[body], atol=1e-6)
    assert np.all(fv[body] == 0.5) and np.all(fu[~body] == 0)


# ---- readers ---------------------------------------------------------------------------------------------
def _quantized(rng, h=12, w=7):
    i = rng.integers(0, 25, (h, w)).astype(np.uint8)
    return i, rng.integers(0, 256, (h, w)).astype(np.uint8), rng.integers(0, 256, (h, w)).astype(np.uint8)


def test_legacy_png_is_bgr_iuv(tmp_path):
    i, u, v = _quantized(np.random.default_rng(0))
    path = str(tmp_path / "x_IUV.png")
    cv2.imwrite(path, np.stack([i, u, v], -1))  # as DensePose's vis.py: cv2.imwrite of (I, 255U, 255V)
    iuv = read_legacy_iuv_png(path)
    np.testing.assert_array_equal(iuv.labels, i)
    np.testing.assert_allclose(iuv.u, u / 255.0, atol=1e-6)
    np.testing.assert_allclose(iuv.v, v / 255.0, atol=1e-6)
    # the stored RGB (as PIL sees it) is (V, U, I): reading it as a D2 PNG would be wrong
    assert np.array_equal(np.asarray(Image.open(path))[..., 2], i)


def test_d2_png_and_compressed_string_are_rgb_iuv(tmp_path):
    i, u, v = _quantized(np.random.default_rng(1))
    buf = io.BytesIO()
    Image.fromarray(np.stack([i, u, v], -1)).save(buf, format="png", optimize=True)  # D2 compress_…: PIL HWC
    path = tmp_path / "x.png"
    path.write_bytes(buf.getvalue())
    for iuv in (read_d2_iuv_png(str(path)), decode_d2_compressed(base64.encodebytes(buf.getvalue()).decode()),
                read_iuv(str(path), "d2_png")):
        np.testing.assert_array_equal(iuv.labels, i)
        np.testing.assert_allclose(iuv.u, u / 255.0, atol=1e-6)
        np.testing.assert_allclose(iuv.v, v / 255.0, atol=1e-6)


def test_npz_roundtrip_clamps_and_names_missing_keys(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 25, (9, 4)).astype(np.uint8)
    iuv = IUV(labels, rng.uniform(-0.5, 1.5, (9, 4)), rng.random((9, 4)))
    assert iuv.u.min() >= 0 and iuv.u.max() <= 1
    save_npz_iuv(str(tmp_path / "a.npz"), iuv)
    back = read_npz_iuv(str(tmp_path / "a.npz"))
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_allclose(back.u, iuv.u, atol=1e-3)
    np.savez(tmp_path / "bad.npz", labels=labels)
    with pytest.raises(KeyError, match=r"bad\.npz.*'u', 'v'"):
        read_npz_iuv(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_npz_iuv(str(tmp_path / "nope.npz"))


def test_apply_net_dump_without_densepose(tmp_path, monkeypatch):
    mods, Result = fake_densepose_modules()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    low = Result(torch.full((5, 4), 7, dtype=torch.long), torch.full((2, 5, 4), 0.2))
    labels = torch.randint(0, 25, (6, 3))
    uv = torch.rand(2, 6, 3) * 1.2  # > 1 regressions: clamped on reading
    best = Result(labels, uv)
    entries = [{"file_name": "/d/0001_c1s1_000001_00.jpg", "scores": torch.tensor([0.3, 0.9]),
                "pred_boxes_XYXY": torch.tensor([[0.0, 0.0, 4.0, 5.0], [2.7, 1.2, 5.9, 7.8]]),
                "pred_densepose": [low, best]},
               {"file_name": "/d/0002_c1s1_000001_00.jpg", "scores": torch.zeros(0),
                "pred_boxes_XYXY": torch.zeros(0, 4), "pred_densepose": []}]
    path = str(tmp_path / "dump.pkl")
    torch.save(entries, path)
    for name in mods:
        monkeypatch.delitem(sys.modules, name)  # reading must not need the densepose package
    data = load_densepose_dump(path)
    iuv = iuv_from_dump_entry(data[0], image_hw=(10, 8))
    assert iuv.shape == (10, 8)
    np.testing.assert_array_equal(iuv.labels[1:7, 2:5], labels.numpy())  # truncated corner (2, 1)
    assert iuv.labels[:1].sum() == 0 and iuv.labels[:, :2].sum() == 0 and iuv.labels[7:].sum() == 0
    np.testing.assert_allclose(iuv.u[1:7, 2:5], uv[0].clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(iuv.v[1:7, 2:5], uv[1].clamp(0, 1).numpy(), atol=1e-6)
    assert read_iuv(path, "dump", image_file="x/0002_c1s1_000001_00.jpg", image_hw=(10, 8)).empty
    with pytest.raises(KeyError, match="0003"):
        read_iuv(path, "dump", image_file="0003.jpg", image_hw=(10, 8))


def test_real_legacy_densepose_scene(shared_dir):
    """The DensePose demo: several people in one scene, split per instance, cropped and warped."""
    folder = shared_dir / "data" / "DensePose"
    iuv = read_legacy_iuv_png(str(folder / "demo_im_IUV.png"))
    inds = cv2.imread(str(folder / "demo_im_INDS.png"), cv2.IMREAD_UNCHANGED)
    image = cv2.cvtColor(cv2.imread(str(folder / "demo_im.jpg")), cv2.COLOR_BGR2RGB)
    assert image.shape[:2] == iuv.shape == inds.shape
    assert set(np.unique(iuv.labels)) == set(range(25))
    people = split_legacy_instances(iuv, inds)
    assert len(people) == len(np.unique(inds)) - 1 >= 5
    for (x0, y0, x1, y1), person in people:
        assert person.shape == (y1 - y0, x1 - x0) and not person.empty
        crop = image[y0:y1, x0:x1]
        dsap = warp_to_dsap(crop, person.labels, person.u, person.v)
        filled = (dsap != mean_pixel(crop)).any(-1)  # cells reached by some body pixel
        parts = np.unique(person.labels[person.labels > 0]) - 1
        assert set(np.nonzero(filled.any((1, 2)))[0]) <= set(parts)
        body = int((person.labels > 0).sum())
        assert 1 <= filled.sum() <= body  # every body pixel lands in one cell; cells may be shared
        if body > 5000:  # the three whole people of the scene cover many UV cells
            assert filled.sum() > 2000 and len(parts) >= 15
    # a whole-scene person: the largest one has torso pixels warped into both torso images or one of them
    largest = max(people, key=lambda p: (p[1].labels > 0).sum())[1]
    assert {1, 2} & set(np.unique(largest.labels))


def test_dsap_is_semantically_aligned_on_synthetic_people(datasets_root):
    """Cells reached in two DSAP sets of the same identity agree far better than across identities (dense
    alignment: same (part, u, v) = same body point), and better than CSA's coarse crops do."""
    from detectron2.data import DatasetCatalog

    from reid2.projects.dsa.data import load_person_iuv
    from reid2.utils.files import read_image_rgb

    dicts = DatasetCatalog.get("synthetic_market_train")[:60]
    ratios = {}
    for name, fn in (("dsa", warp_to_dsap), ("csa", csa_part_images)):
        reps = []
        for d in dicts:
            rgb = np.asarray(read_image_rgb(d["file_name"]))
            iuv = load_person_iuv(d["file_name"], rgb.shape[:2])
            reps.append((d["pid"], fn(rgb, iuv.labels, iuv.u, iuv.v, size=32, fill=(np.nan,) * 3)))
        same, diff = [], []
        for i in range(len(reps)):
            for j in range(i + 1, len(reps)):
                a, b = reps[i][1], reps[j][1]
                both = ~np.isnan(a[..., 0]) & ~np.isnan(b[..., 0])
                if both.sum() >= 20:
                    (same if reps[i][0] == reps[j][0] else diff).append(np.abs(a[both] - b[both]).mean())
        assert len(same) >= 10 and len(diff) >= 10
        ratios[name] = np.mean(same) / np.mean(diff)
    assert ratios["dsa"] < 0.6 and ratios["dsa"] < ratios["csa"], ratios
