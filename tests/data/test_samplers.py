"""Identity (P x K) and random batch samplers: composition, determinism, distribution."""
import itertools
from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from reid2.data.samplers import IdentityBatchSampler, RandomBatchSampler


def _toy(num_ids=12, per_id=(1, 7), cams=3, seed=0):
    rng = np.random.default_rng(seed)
    pids, camids = [], []
    for pid in range(num_ids):
        n = rng.integers(*per_id, endpoint=True)
        pids += [pid] * n
        camids += list(rng.integers(0, cams, size=n))
    return pids, camids


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_pxk_composition_and_determinism():
    pids, cams = _toy()
    s = IdentityBatchSampler(pids, cams, batch_size=16, num_instances=4, seed=3, rank=0, world_size=1)
    batches = _take(s, 20)
    for b in batches:
        counts = Counter(pids[i] for i in b)
        assert len(b) == 16 and len(counts) == 4 and set(counts.values()) == {4}
    assert batches == _take(IdentityBatchSampler(pids, cams, 16, 4, seed=3, rank=0, world_size=1), 20)
    assert batches != _take(IdentityBatchSampler(pids, cams, 16, 4, seed=4, rank=0, world_size=1), 20)


def test_distributed_shares_are_disjoint_and_complete():
    pids, cams = _toy()
    single = _take(IdentityBatchSampler(pids, cams, 16, 4, seed=1, rank=0, world_size=1), 10)
    r0 = _take(IdentityBatchSampler(pids, cams, 16, 4, seed=1, rank=0, world_size=2), 10)
    r1 = _take(IdentityBatchSampler(pids, cams, 16, 4, seed=1, rank=1, world_size=2), 10)
    for b, a0, a1 in zip(single, r0, r1):
        assert len(a0) == len(a1) == 8
        ids0, ids1 = {pids[i] for i in a0}, {pids[i] for i in a1}
        assert not ids0 & ids1
        assert Counter(a0 + a1) == Counter(b)  # the same global batch, split by identity


def test_camera_balanced_spreads_cameras():
    pids = [0] * 6 + [1] * 6
    cams = [0, 0, 0, 0, 1, 2] * 2
    s = IdentityBatchSampler(pids, cams, 8, 4, seed=0, camera_balanced=True, rank=0, world_size=1)
    for b in _take(s, 10):
        for pid in (0, 1):
            assert {cams[i] for i in b if pids[i] == pid} == {0, 1, 2}


def test_errors_are_clear():
    pids, cams = _toy(num_ids=3)
    with pytest.raises(ValueError, match="fewer than"):
        IdentityBatchSampler(pids, cams, 16, 4, rank=0, world_size=1)
    with pytest.raises(ValueError, match="multiple"):
        IdentityBatchSampler(pids, cams, 15, 4, rank=0, world_size=1)


class _IndexDataset(Dataset):
    def __len__(self):
        return 10_000

    def __getitem__(self, i):
        return i


def test_pxk_survives_multiple_workers():
    """The trap of Detectron2 v0.6's loader: batches must stay P x K with num_workers > 1."""
    pids, cams = _toy(num_ids=20)
    sampler = IdentityBatchSampler(pids, cams, 16, 4, seed=0, rank=0, world_size=1)
    loader = DataLoader(_IndexDataset(), batch_sampler=sampler, num_workers=2,
                        collate_fn=lambda xs: list(xs))
    expected = _take(IdentityBatchSampler(pids, cams, 16, 4, seed=0, rank=0, world_size=1), 6)
    got = list(itertools.islice(iter(loader), 6))
    assert got == expected


def test_random_batch_sampler_split():
    full = _take(RandomBatchSampler(50, 10, seed=2, rank=0, world_size=1), 5)
    r0 = _take(RandomBatchSampler(50, 10, seed=2, rank=0, world_size=2), 5)
    r1 = _take(RandomBatchSampler(50, 10, seed=2, rank=1, world_size=2), 5)
    for b, a, c in zip(full, r0, r1):
        assert a + c == b and len(set(b)) == 10


def test_aspect_ratio_batch_sampler_equals_detectron2_grouping_and_resumes():
    """The index-level grouping gives Detectron2's batches (TrainingSampler + AspectRatioGroupedDataset, 0 workers),
    and start_at(n) continues with batch n, half-filled groups included."""
    import itertools

    from detectron2.data.common import AspectRatioGroupedDataset
    from detectron2.data.samplers import TrainingSampler

    from reid2.data.samplers import AspectRatioBatchSampler

    sizes = [(30, 20) if i % 3 else (20, 30) for i in range(11)]  # (w, h): a mix of landscape and portrait
    dicts = [{"i": i, "width": w, "height": h} for i, (w, h) in enumerate(sizes)]
    d2 = AspectRatioGroupedDataset(map(dicts.__getitem__, TrainingSampler(11, seed=7, shuffle=True)), 3)
    ref = [[d["i"] for d in b] for b in itertools.islice(d2, 12)]
    sampler = AspectRatioBatchSampler([w > h for w, h in sizes], 3, seed=7, rank=0, world_size=1)
    assert list(itertools.islice(iter(sampler), 12)) == ref
    sampler.start_at(5)
    assert list(itertools.islice(iter(sampler), 7)) == ref[5:]
    assert any(sizes[b[0]][0] < sizes[b[0]][1] for b in ref) and any(sizes[b[0]][0] > sizes[b[0]][1] for b in ref)


def test_identity_sampler_start_at_skips_batches():
    from reid2.data.samplers import IdentityBatchSampler

    s = IdentityBatchSampler([i // 4 for i in range(40)], None, 8, 4, seed=3, rank=0, world_size=1)
    it = iter(s)
    ref = [next(it) for _ in range(9)]
    s.start_at(4)
    it = iter(s)
    assert [next(it) for _ in range(5)] == ref[4:]
    with pytest.raises(ValueError, match=">= 0"):
        s.start_at(-1)
