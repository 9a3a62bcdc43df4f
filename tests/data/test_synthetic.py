"""The embedded synthetic data: Market-1501 names/splits, DensePose IUV meaning, CUHK-SYSU .mat structures
(against the real TestG100.mat), determinism and idempotency."""
import collections
import itertools
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import loadmat

from reid2.data.synthetic import (
    PRESETS,
    Appearance,
    Pose,
    generate_all,
    generate_cuhk_sysu,
    generate_market,
    render_person,
)
from reid2.data.synthetic.__main__ import main as cli_main
from reid2.data.synthetic.files import MARKER, write_once
from tests.helpers import SHARED

REAL_TESTG100 = SHARED / "data" / "CUHK-SYSU" / "annotation" / "test" / "train_test" / "TestG100.mat"
MARKET_NAME = re.compile(r"([-\d]+)_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
TINY_MARKET, TINY_CUHK = PRESETS["tiny"]["market"], PRESETS["tiny"]["cuhk_sysu"]
SMALL_MARKET = dict(num_train_ids=2, num_test_ids=2, num_cameras=2, num_distractors=1, num_junk=1)
SMALL_CUHK = dict(num_train_ids=2, num_test_ids=2, num_train_images=3, num_test_images=6, gallery_sizes=(5, 1000),
                  image_size=(128, 96))


@pytest.fixture(scope="module")
def market(datasets_root):
    return datasets_root / "synthetic" / "Market-1501-v15.09.15"


@pytest.fixture(scope="module")
def cuhk(datasets_root):
    return datasets_root / "synthetic" / "CUHK-SYSU"


def parse(folder: Path):
    """{name: (pid, camera)} of a Market folder; every name must match Market's pattern."""
    out = {}
    for path in folder.glob("*.jpg"):
        match = MARKET_NAME.fullmatch(path.name)
        assert match, path.name
        assert match.group(1) == "-1" or len(match.group(1)) == 4, path.name
        out[path.name] = (int(match.group(1)), int(match.group(2)))
    return out


def read_iuv(market, folder, name):
    return cv2.imread(str(market / "densepose_iuv" / folder / (name[:-4] + "_IUV.png")), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------------------------------- Market-1501


def test_market_names_splits_and_query_rule(market):
    train, test = parse(market / "bounding_box_train"), parse(market / "bounding_box_test")
    query, gt_bbox = parse(market / "query"), parse(market / "gt_bbox")
    train_ids = {p for p, _ in train.values()}
    test_ids = {p for p, _ in test.values() if p > 0}
    assert len(train_ids) == TINY_MARKET["num_train_ids"] and len(test_ids) == TINY_MARKET["num_test_ids"]
    assert not train_ids & test_ids and min(train_ids) > 0
    all_ids = sorted(train_ids | test_ids)
    assert all_ids[-1] <= 1501 and all_ids != list(range(1, len(all_ids) + 1))  # spread like Market's pids
    cameras = {c for _, c in itertools.chain(train.values(), test.values(), query.values())}
    assert cameras <= set(range(1, TINY_MARKET["num_cameras"] + 1))
    pids = collections.Counter(p for p, _ in test.values())
    assert (pids[0], pids[-1]) == (TINY_MARKET["num_distractors"], TINY_MARKET["num_junk"])
    for pid in test_ids:  # each test identity in ≥ 2 cameras of the gallery
        assert len({c for p, c in test.values() if p == pid}) >= 2
    # one query per test identity and camera, always with a cross-camera match in the gallery
    assert sorted(query.values()) == sorted({(p, c) for p, c in test.values() if p > 0})
    for pid, cam in query.values():
        assert any(p == pid and c != cam for p, c in test.values())
    # queries are hand-drawn crops taken from gt_bbox (byte-identical), gt_bbox holds several per query
    assert not set(query) & set(test) and set(query) <= set(gt_bbox)
    for name in query:
        assert (market / "query" / name).read_bytes() == (market / "gt_bbox" / name).read_bytes()
    per_query = collections.Counter(gt_bbox.values())
    assert set(per_query) == set(query.values()) and min(per_query.values()) >= 2


def test_market_crops_and_iuv_maps_decode(market):
    for folder in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox"):
        names = sorted(p.name for p in (market / folder).glob("*.jpg"))
        assert names and {p.name for p in (market / "densepose_iuv" / folder).iterdir()} == {
            n[:-4] + "_IUV.png" for n in names}
        for name in names:
            image, iuv = cv2.imread(str(market / folder / name)), read_iuv(market, folder, name)
            assert image.shape == iuv.shape == (128, 64, 3) and iuv.dtype == np.uint8
            assert iuv[..., 0].max() <= 24
            assert not iuv[iuv[..., 0] == 0].any()  # U = V = 0 on the background


def test_market_iuv_parts_where_they_belong(market):
    """Hand-drawn crops are centred people: heads at the top, torso, legs, feet at the bottom."""
    rows = collections.defaultdict(list)
    for name in sorted(p.name for p in (market / "query").glob("*.jpg")):
        labels = read_iuv(market, "query", name)[..., 0]
        for group, parts in {"head": (23, 24), "torso": (1, 2), "upper_leg": (7, 8, 9, 10),
                             "lower_leg": (11, 12, 13, 14), "feet": (5, 6)}.items():
            ys, _ = np.nonzero(np.isin(labels, parts))
            rows[group].extend(ys / labels.shape[0])
    medians = [np.median(rows[g]) for g in ("head", "torso", "upper_leg", "lower_leg", "feet")]
    assert medians == sorted(medians), medians
    assert medians[0] < 0.3 and medians[-1] > 0.8


def _mean_column(iuv, label):
    _, xs = np.nonzero(iuv[..., 0] == label)
    assert len(xs), f"part {label} not visible"
    return xs.mean()


BLUE_STRIPES = Appearance(skin=(0.9, 0.7, 0.6), hair=(0.1, 0.1, 0.1), top=(0.1, 0.2, 0.8), top2=(0.9, 0.9, 0.9),
                          bottom=(0.2, 0.2, 0.2), shoes=(0.1, 0.1, 0.1), bag_colour=(0.5, 0.3, 0.1),
                          top_pattern="stripes", stripes=4)


def test_iuv_front_back_left_right():
    """DensePose meanings: torso front 2 / back 1 by viewpoint; the person's left (4, 24) on the image right
    when facing the camera, on the image left from behind."""
    front = render_person(BLUE_STRIPES, Pose(yaw=0.0, stride=0.2), 200).iuv
    back = render_person(BLUE_STRIPES, Pose(yaw=np.pi, stride=0.2), 200).iuv
    assert (front[..., 0] == 2).sum() > 500 and not (front[..., 0] == 1).any()
    assert (back[..., 0] == 1).sum() > 500 and not (back[..., 0] == 2).any()
    for left, right in ((4, 3), (24, 23), (10, 9), (15, 16)):
        assert _mean_column(front, left) > _mean_column(front, right), (left, right)
    for left, right in ((4, 3), (24, 23), (8, 7), (17, 18)):
        assert _mean_column(back, left) < _mean_column(back, right), (left, right)
    # V = 1 at the top of a part, U runs from the person's right to left across the torso front
    ys, xs = np.nonzero(front[..., 0] == 2)
    assert np.corrcoef(ys, front[ys, xs, 2])[0, 1] < -0.9 and np.corrcoef(xs, front[ys, xs, 1])[0, 1] > 0.9
    side = render_person(BLUE_STRIPES, Pose(yaw=np.pi / 2, stride=0.3), 200).iuv
    assert {1, 2} <= set(np.unique(side[..., 0]))  # a side view shows both torso halves
    assert (side[..., 0] == 23).sum() > 5 * (side[..., 0] == 24).sum()  # facing right: the right half of the head


def _torso_points(layer):
    """(I, U, V) and chromaticity (colour without shading) of the torso pixels of a rendered person."""
    iuv = layer.iuv.reshape(-1, 3).astype(float)
    rgb = layer.rgb.reshape(-1, 3)
    keep = np.isin(iuv[:, 0], (1, 2))
    return iuv[keep], rgb[keep] / np.maximum(rgb[keep].sum(1, keepdims=True), 1e-6)


def _colour_mismatch(layer, reference):
    """Fraction of torso pixels whose colour differs from the reference pixel with the same (I, U, V)."""
    from scipy.spatial import cKDTree

    points, chroma = _torso_points(layer)
    ref_points, ref_chroma = _torso_points(reference)
    distance, index = cKDTree(ref_points).query(points)
    matched = distance == 0  # exactly the same (I, U, V)
    assert matched.sum() >= 100
    return np.mean(np.abs(chroma[matched] - ref_chroma[index[matched]]).sum(1) > 0.05)


def test_same_body_point_same_colour_across_views():
    """The garment is painted on the surface: equal (I, U, V) → equal colour in any pose/viewpoint."""
    reference = render_person(BLUE_STRIPES, Pose(yaw=0.0, phase=0.0), 480)
    turned = render_person(BLUE_STRIPES, Pose(yaw=0.7, phase=2.0, stride=0.4), 480)
    red = render_person(Appearance(**{**BLUE_STRIPES.__dict__, "top": (0.8, 0.1, 0.1)}),
                        Pose(yaw=0.7, phase=2.0, stride=0.4), 480)
    assert _colour_mismatch(turned, reference) < 0.01
    assert _colour_mismatch(red, reference) > 0.3  # a differently dressed person does not match
    back = render_person(BLUE_STRIPES, Pose(yaw=np.pi), 240)
    assert not set(np.unique(_torso_points(back)[0][:, 0])) & {2}  # from behind: other body points (I = 1)


def test_written_crops_same_identity_torso_colours_agree(market):
    """On the written JPEG/IUV pairs: torso pixels of equal coarse (I, U, V) of one identity seen twice by a
    camera have closer chromaticity than those of two identities."""

    def bins(name):
        image = cv2.imread(str(market / "bounding_box_train" / name)).astype(float)
        labels, u, v = (read_iuv(market, "bounding_box_train", name)[..., k].astype(int) for k in range(3))
        keep = np.isin(labels, (1, 2))
        keys = labels[keep] * 64 + (u[keep] // 32) * 8 + v[keep] // 32
        colour = image[keep] / np.maximum(image[keep].sum(1, keepdims=True), 1)
        return {k: colour[keys == k].mean(0) for k in np.unique(keys)}

    def distance(a, b):
        shared = set(a) & set(b)
        return np.median([np.abs(a[k] - b[k]).sum() for k in shared]) if len(shared) >= 5 else None

    tracks = collections.defaultdict(list)
    for name, key in sorted(parse(market / "bounding_box_train").items()):
        tracks[key].append(name)
    pairs = [(bins(t[0]), bins(t[1]), key) for key, t in tracks.items() if len(t) >= 2]
    same = [d for a, b, _ in pairs if (d := distance(a, b)) is not None]
    different = [d for (a, _, k1), (b, _, k2) in itertools.combinations(pairs, 2)
                 if k1[1] == k2[1] and (d := distance(a, b)) is not None]
    assert len(same) >= 10 and len(different) >= 10
    assert np.median(same) < 0.5 * np.median(different), (np.median(same), np.median(different))


# ------------------------------------------------------------------------------------------- CUHK-SYSU


def _fields(struct):
    return struct.dtype.names


def _check_entry(entry):
    """A struct element as the real files hold it: char (1,) names, (1,4) uint8/uint16 boxes, (1,1) uint8 flags."""
    assert entry["imname"].shape == (1,) and entry["imname"].dtype.kind == "U"
    box = entry["idlocate"]
    assert box.shape == (1, 4) and box.dtype == (np.uint8 if box.max() < 256 else np.uint16), box
    assert entry["ishard"].shape == (1, 1) and entry["ishard"].dtype == np.uint8
    return str(entry["imname"][0]), tuple(int(x) for x in box.ravel())


def test_cuhk_sysu_files_have_the_documented_structure(cuhk):
    annotation, protocol = cuhk / "annotation", cuhk / "annotation" / "test" / "train_test"
    images = loadmat(str(annotation / "Images.mat"))["Img"]
    assert images.shape == (1, TINY_CUHK["num_train_images"] + TINY_CUHK["num_test_images"])
    assert _fields(images) == ("imname", "nAppear", "box")
    all_boxes, dtypes = set(), set()
    width, height = TINY_CUHK["image_size"]
    for entry in images[0]:
        name, boxes = str(entry["imname"][0]), entry["box"]
        assert _fields(boxes) == ("idlocate", "ishard") and boxes.shape == (1, int(entry["nAppear"][0, 0]))
        assert entry["nAppear"].dtype == np.uint8 and boxes.shape[1] >= 1
        assert cv2.imread(str(cuhk / "Image" / "SSM" / name)).shape == (height, width, 3)
        for box in boxes[0]:
            x, y, w, h = (int(v) for v in box["idlocate"].ravel())
            dtypes.add(box["idlocate"].dtype)
            assert w > 0 and h > 0 and x + w <= width and y + h <= height
            all_boxes.add((name, (x, y, w, h)))
    assert dtypes == {np.dtype(np.uint8), np.dtype(np.uint16)}  # both occur, as in the real files
    pool = loadmat(str(annotation / "pool.mat"))["pool"]
    assert pool.shape == (TINY_CUHK["num_test_images"], 1)
    pool = {str(p[0]) for p in pool[:, 0]}

    def identities(people):
        out = {}
        for person in people:
            assert _fields(person) == ("idname", "nAppear", "scene")
            scene = person["scene"]
            assert _fields(scene) == ("imname", "idlocate", "ishard") and scene.shape[1] == person["nAppear"][0, 0]
            out[str(person["idname"][0])] = [_check_entry(s) for s in scene[0]]
        return out

    person = identities(loadmat(str(annotation / "Person.mat"))["Person"][0])
    train_mat = loadmat(str(protocol / "Train.mat"))["Train"]
    assert train_mat.shape == (TINY_CUHK["num_train_ids"], 1) and train_mat[0, 0].shape == (1, 1)
    train = identities(cell[0, 0] for cell in train_mat[:, 0])
    assert len(person) == TINY_CUHK["num_train_ids"] + TINY_CUHK["num_test_ids"]
    assert all(person[k] == v for k, v in train.items())
    labelled = {box for boxes in person.values() for box in boxes}
    assert labelled < all_boxes  # Images.mat also lists unlabelled people
    for idname, boxes in person.items():
        images_of = {name for name, *_ in boxes}
        assert len(images_of) == len(boxes) >= 2  # each identity in ≥ 2 images
        assert (images_of <= pool) == (idname not in train) and (not images_of & pool) == (idname in train)


def test_cuhk_sysu_protocol_matches_real_testg100(cuhk):
    if not REAL_TESTG100.is_file():
        pytest.skip(f"{REAL_TESTG100} (the real CUHK-SYSU protocol file from ../shared) is absent")
    real = loadmat(str(REAL_TESTG100))["TestG100"]
    ours = loadmat(str(cuhk / "annotation" / "test" / "train_test" / "TestG50.mat"))["TestG50"]
    assert ours.shape == (1, TINY_CUHK["num_test_ids"]) and real.shape[0] == 1
    assert _fields(ours) == _fields(real)
    for field in ("Query", "Gallery"):
        assert _fields(ours[0, 0][field]) == _fields(real[0, 0][field])
    real_query, our_query = real[0, 0]["Query"], ours[0, 0]["Query"]
    assert our_query.shape == real_query.shape == (1, 1)
    for field in _fields(real_query):
        assert (our_query[0, 0][field].shape, our_query[0, 0][field].dtype.kind) == (
            real_query[0, 0][field].shape, real_query[0, 0][field].dtype.kind), field
    real_negative = real[0, 0]["Gallery"][0, -1]
    pool = {str(p[0]) for p in loadmat(str(cuhk / "annotation" / "pool.mat"))["pool"][:, 0]}
    for row in ours[0]:
        query_image, _ = _check_entry(row["Query"][0, 0])
        gallery = row["Gallery"]
        assert gallery.shape == (1, 50)
        positive = [entry["idlocate"].size > 0 for entry in gallery[0]]
        assert positive[0] and positive == sorted(positive, reverse=True)  # positives first
        names = [str(entry["imname"][0]) for entry in gallery[0]]
        assert len(set(names)) == 50 and query_image not in names and set(names) <= pool
        for entry, is_positive in zip(gallery[0], positive):
            if is_positive:
                _check_entry(entry)
            else:
                for field in ("idlocate", "ishard"):
                    assert (entry[field].shape, entry[field].dtype) == (real_negative[field].shape,
                                                                      real_negative[field].dtype)


def test_cuhk_sysu_skips_gallery_sizes_larger_than_the_test_set(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        root = generate_cuhk_sysu(tmp_path, **SMALL_CUHK)
    protocol = root / "annotation" / "test" / "train_test"
    assert sorted(p.name for p in protocol.glob("TestG*.mat")) == ["TestG5.mat"]
    assert "skipping TestG1000" in caplog.text


# ------------------------------------------------------------------------------------------- reproducibility


def _tree(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    first = _tree(generate_market(tmp_path / "a", seed=3, **SMALL_MARKET))
    second = _tree(generate_market(tmp_path / "b", seed=3, **SMALL_MARKET))
    assert first == second and len(first) > 20
    other = _tree(generate_market(tmp_path / "c", seed=4, **SMALL_MARKET))
    assert set(first) != set(other) or first != other
    mats = [_tree(generate_cuhk_sysu(tmp_path / d, seed=3, **SMALL_CUHK)) for d in ("a", "b")]
    assert mats[0] == mats[1] and any(k.endswith("TestG5.mat") for k in mats[0])


def test_idempotent_marker_and_atomic_writes(tmp_path):
    root = generate_market(tmp_path, seed=0, **SMALL_MARKET)
    marker = (root / MARKER).read_text()
    assert '"version"' in marker and '"num_train_ids": 2' in marker
    sentinel = root / "query" / "sentinel.txt"
    sentinel.write_text("kept")
    assert generate_market(tmp_path, seed=0, **SMALL_MARKET) == root and sentinel.exists()  # not rewritten
    generate_market(tmp_path, seed=1, **SMALL_MARKET)  # other parameters: replaced
    assert not sentinel.exists() and '"seed": 1' in (root / MARKER).read_text()

    def interrupted(out):
        (out / "partial.jpg").write_bytes(b"")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_once(tmp_path / "interrupted", "market", {}, interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Market-1501-v15.09.15"]  # no partial output left


def test_generate_all_and_cli(tmp_path, capsys):
    paths = generate_all(tmp_path, preset="tiny", only="market")
    assert list(paths) == ["market"] and (tmp_path / "Market-1501-v15.09.15" / MARKER).is_file()
    cli_main(["--root", str(tmp_path), "--preset", "tiny", "--only", "market"])  # already there: no rewrite
    assert "Market-1501-v15.09.15" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "--preset" in capsys.readouterr().out


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="num_cameras"):
        generate_market(tmp_path, num_cameras=12)
    with pytest.raises(ValueError, match="identities"):
        generate_cuhk_sysu(tmp_path, num_test_ids=1)
    with pytest.raises(ValueError, match="preset"):
        generate_all(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="height_px"):
        render_person(BLUE_STRIPES, Pose(), 0)
