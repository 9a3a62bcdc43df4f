"""Teacher-LUT import/export for KD_reid: known checkpoint layouts, normalisation, errors, CLI."""
import numpy as np
import pytest
import torch

from reid2.modeling.kd import KNOWN_LUT_KEYS, export_lut, load_lut, read_lut_table
from tests.helpers import REPO, run_tool

NUM_PIDS, DIM = 6, 4


def _raw_lut(seed=0):
    """A teacher table with unnormalised rows (as Caffe OIM leaves them) and one id never seen (zero)."""
    table = torch.randn(NUM_PIDS, DIM, generator=torch.Generator().manual_seed(seed)) * 3.0
    table[2] = 0.0
    return table


def _naive_normalised(table):
    out = np.zeros_like(table)
    for i, row in enumerate(table):
        norm = np.sqrt(sum(float(v) ** 2 for v in row))
        out[i] = row / norm if norm > 0 else row
    return out


# Fake checkpoints in each codebase's layout (only the structure matters).
LAYOUTS = {
    "reid2": lambda t: {"model": {"backbone.res2.conv1.weight": torch.zeros(2, 2),
                                  "roi_heads.oim_loss.lut": t,
                                  "roi_heads.oim_loss.queue": torch.zeros(3, DIM)},
                        "iteration": 10},
    "seqnet": lambda t: {"model": {"roi_heads.reid_loss.lut": t,
                                   "roi_heads.reid_loss.cq": torch.zeros(3, DIM)},
                         "optimizer": {"state": {}}, "epoch": 19},
    "nae_top_level": lambda t: {"roi_heads.reid_loss.lut": t},
    "ddp_prefixed": lambda t: {"model": {"module.roi_heads.reid_loss.lut": t}},
    "coat": lambda t: {"model": {"roi_heads.reid_loss_2nd.lut": t, "roi_heads.reid_loss_3rd.lut": -t}},
    "psd2": lambda t: {"model": {"roi_heads.oim_loss.lb_layer.lookup_table": t,
                                 "roi_heads.oim_loss.ulb_layer.queue": torch.zeros(3, DIM)}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_load_lut_from_each_checkpoint_layout(tmp_path, layout):
    raw = _raw_lut()
    path = tmp_path / f"{layout}.pth"
    torch.save(LAYOUTS[layout](raw), path)
    lut = load_lut(path, num_pids=NUM_PIDS, feat_dim=DIM)
    assert lut.dtype == torch.float32 and lut.shape == (NUM_PIDS, DIM)
    np.testing.assert_allclose(lut.numpy(), _naive_normalised(raw.numpy()), rtol=1e-6, atol=1e-7)
    assert lut[2].abs().sum() == 0  # the never-seen id stays zero
    norms = lut.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones(NUM_PIDS - 1))


def test_coat_third_stage_by_explicit_key(tmp_path):
    raw = _raw_lut()
    path = tmp_path / "coat.pth"
    torch.save(LAYOUTS["coat"](raw), path)
    lut3 = load_lut(path, NUM_PIDS, key="roi_heads.reid_loss_3rd.lut")
    np.testing.assert_allclose(lut3.numpy(), -_naive_normalised(raw.numpy()), rtol=1e-6, atol=1e-7)
    assert read_lut_table(path).key == "roi_heads.reid_loss_2nd.lut"  # known-key order
    assert [k for k, _ in KNOWN_LUT_KEYS][0] == "roi_heads.oim_loss.lut"


def test_load_lut_from_arrays_and_numpy_files(tmp_path):
    raw = _raw_lut(1)
    expected = _naive_normalised(raw.numpy())
    np.save(tmp_path / "lut.npy", raw.numpy().astype(np.float64))
    np.savez(tmp_path / "lut.npz", lut=raw.numpy(), other=np.zeros(3))
    np.savez(tmp_path / "custom.npz", table=raw.numpy())
    for source, key in [(raw, None), (raw.numpy(), None), (tmp_path / "lut.npy", None),
                        (str(tmp_path / "lut.npz"), None), (tmp_path / "custom.npz", "table")]:
        lut = load_lut(source, NUM_PIDS, key=key)
        np.testing.assert_allclose(lut.numpy(), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"no array 'lut'.*\['table'\]"):
        load_lut(tmp_path / "custom.npz", NUM_PIDS)


def test_prw_row_count_mismatch_names_file_key_sizes_and_cause(tmp_path):
    path = tmp_path / "seqnet_prw.pth"
    torch.save({"model": {"roi_heads.reid_loss.lut": torch.randn(482, 8)}}, path)
    with pytest.raises(ValueError) as err:
        load_lut(path, num_pids=483)
    message = str(err.value)
    for part in (str(path), "roi_heads.reid_loss.lut", "482 rows", "483 training ids", "SeqNet/NAE"):
        assert part in message


def test_other_shape_errors(tmp_path):
    with pytest.raises(ValueError, match="transposed"):
        load_lut(torch.randn(DIM, NUM_PIDS), NUM_PIDS)
    with pytest.raises(ValueError, match="off by one"):
        load_lut(torch.randn(NUM_PIDS + 1, DIM), NUM_PIDS)
    with pytest.raises(ValueError, match=f"feature dim is {DIM}.*256"):
        load_lut(torch.randn(NUM_PIDS, DIM), NUM_PIDS, feat_dim=256)
    with pytest.raises(ValueError, match="2-D"):
        load_lut(torch.randn(NUM_PIDS), NUM_PIDS)
    bad = _raw_lut()
    bad[4, 1] = float("nan")
    bad[5, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite.*2 rows"):
        load_lut(bad, NUM_PIDS)


def test_missing_file_key_and_unreadable_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_lut(tmp_path / "nope.pth", NUM_PIDS)
    path = tmp_path / "detector.pth"
    torch.save({"model": {"roi_heads.box_predictor.cls_score.weight": torch.zeros(2, 2),
                          "roi_heads.my_lut_buffer": torch.zeros(NUM_PIDS, DIM)}}, path)
    with pytest.raises(ValueError, match=r"no LUT under the known keys.*roi_heads.my_lut_buffer"):
        load_lut(path, NUM_PIDS)
    with pytest.raises(ValueError, match="key 'roi_heads.absent' not found"):
        load_lut(path, NUM_PIDS, key="roi_heads.absent")
    assert load_lut(path, NUM_PIDS, key="roi_heads.my_lut_buffer").abs().sum() == 0
    pickled = tmp_path / "objects.pth"
    torch.save({"model": {"roi_heads.reid_loss.lut": _raw_lut()}, "args": _NotATensor()}, pickled)
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint with tensors only"):
        load_lut(pickled, NUM_PIDS)


class _NotATensor:
    """An arbitrary pickled object, which weights_only loading refuses."""


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_export_round_trip(tmp_path, suffix):
    raw = _raw_lut(2)
    checkpoint = tmp_path / "teacher.pth"
    torch.save(LAYOUTS["seqnet"](raw), checkpoint)
    out = tmp_path / "sub" / f"lut{suffix}"
    exported = export_lut(checkpoint, out)
    assert exported.key == "roi_heads.reid_loss.lut" and out.is_file()
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), raw.numpy())  # written as stored
    else:
        with np.load(out) as archive:
            np.testing.assert_array_equal(archive["lut"], raw.numpy())
            assert (int(archive["num_pids"]), int(archive["feat_dim"])) == (NUM_PIDS, DIM)
            assert str(archive["source"]) == str(checkpoint)
            assert str(archive["key"]) == "roi_heads.reid_loss.lut"
    assert torch.equal(load_lut(out, NUM_PIDS), load_lut(checkpoint, NUM_PIDS))
    with pytest.raises(ValueError, match=".npy or .npz"):
        export_lut(checkpoint, tmp_path / "lut.txt")


def test_export_lut_cli(tmp_path):
    help_run = run_tool([str(REPO / "tools" / "export_lut.py"), "--help"], timeout=120)
    assert help_run.returncode == 0 and "--checkpoint" in help_run.stdout and "Examples" in help_run.stdout
    raw = _raw_lut(3)
    checkpoint = tmp_path / "psd2.pth"
    torch.save(LAYOUTS["psd2"](raw), checkpoint)
    out = tmp_path / "lut.npy"
    run = run_tool([str(REPO / "tools" / "export_lut.py"), "--checkpoint", str(checkpoint),
                    "--output", str(out)], timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"{NUM_PIDS} ids x {DIM} dims (1 all-zero rows)" in run.stdout
    assert "roi_heads.oim_loss.lb_layer.lookup_table" in run.stdout
    np.testing.assert_array_equal(np.load(out), raw.numpy())
    missing = run_tool([str(REPO / "tools" / "export_lut.py"), "--checkpoint", str(tmp_path / "missing.pth"),
                        "--output", str(out)], timeout=120)
    assert missing.returncode == 2 and "missing.pth does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
