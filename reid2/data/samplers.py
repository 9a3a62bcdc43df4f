"""Batch samplers for re-ID training: P identities x K images, or plain random batches.

They are *batch* samplers (each yields the indices of one batch), so a DataLoader hands whole
batches to its workers and P x K batches survive any ``num_workers`` — unlike Detectron2
v0.6's loader, which shards a flat index stream round-robin over workers. Both are infinite,
deterministic given the seed, and distributed-aware: every rank draws the same global batch
from the same random stream and keeps a disjoint share of it, so all ranks run the same
number of iterations.
"""
import itertools
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["IdentityBatchSampler", "RandomBatchSampler", "AspectRatioBatchSampler", "ResumableBatchSampler"]


def _dist_info(rank, world_size):
    rank = comm.get_rank() if rank is None else rank
    world_size = comm.get_world_size() if world_size is None else world_size
    return rank, world_size


class ResumableBatchSampler(Sampler[List[int]]):
    """An infinite batch sampler whose stream is a function of its seed only, and that can start at batch ``n``.

    ``start_at(n)`` makes the next ``iter()`` skip the first ``n`` batches (replaying their index draws, which
    loads no image), so a resumed run continues with the batch the interrupted run would have drawn next. The
    trainer checkpoints the number of batches it consumed (not the sampler's own count: a DataLoader with
    workers draws batches ahead).
    """

    _start = 0

    def start_at(self, position: int) -> None:
        if position < 0:
            raise ValueError(f"batch position must be >= 0, got {position}")
        self._start = int(position)

    def _batches(self) -> Iterator[List[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[List[int]]:
        return itertools.islice(self._batches(), self._start, None)


class IdentityBatchSampler(ResumableBatchSampler):
    """Yields batches of ``P = batch_size / num_instances`` identities with K images each.

    ``batch_size`` is the global batch (all ranks); each rank gets ``P / world_size``
    identities of every global batch. An identity with fewer than K images is sampled with
    replacement. With ``camera_balanced`` the K images of an identity are taken round-robin
    over its cameras (in random order), so cross-camera positives appear in every batch.
    """

    def __init__(self, pids: Sequence[int], camids: Optional[Sequence[int]], batch_size: int,
                 num_instances: int, seed: int = 0, camera_balanced: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if num_instances < 1 or batch_size % num_instances != 0:
            raise ValueError(
                f"batch size {batch_size} must be a multiple of DATALOADER.NUM_INSTANCES={num_instances}")
        self.rank, self.world_size = _dist_info(rank, world_size)
        self.num_ids_per_batch = batch_size // num_instances
        if self.num_ids_per_batch % self.world_size != 0:
            raise ValueError(
                f"P = {self.num_ids_per_batch} identities per batch cannot be split over "
                f"{self.world_size} processes; make IMS_PER_BATCH / NUM_INSTANCES a multiple of it")
        self.num_instances = num_instances
        self.seed = int(seed)
        self.camera_balanced = camera_balanced
        self.index_by_pid = defaultdict(list)
        self.cams = np.asarray(camids if camids is not None else np.zeros(len(pids)), dtype=np.int64)
        for idx, pid in enumerate(pids):
            self.index_by_pid[int(pid)].append(idx)
        self.pids = np.array(sorted(self.index_by_pid), dtype=np.int64)
        if len(self.pids) < self.num_ids_per_batch:
            raise ValueError(
                f"the training set has {len(self.pids)} identities, fewer than the "
                f"{self.num_ids_per_batch} needed per batch (IMS_PER_BATCH / NUM_INSTANCES)")

    def _pick(self, rng: np.random.Generator, pid: int) -> List[int]:
        idxs = np.asarray(self.index_by_pid[pid])
        k = self.num_instances
        if self.camera_balanced:
            by_cam = defaultdict(list)
            for i in rng.permutation(idxs):
                by_cam[int(self.cams[i])].append(int(i))
            queues = [by_cam[c] for c in rng.permutation(sorted(by_cam))]
            picked, round_ = [], 0
            while len(picked) < k:
                for q in queues:
                    if len(picked) < k:
                        picked.append(q[round_ % len(q)])
                round_ += 1
            return picked
        replace = len(idxs) < k
        return [int(i) for i in rng.choice(idxs, size=k, replace=replace)]

    def _batches(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        p = self.num_ids_per_batch
        while True:
            order = rng.permutation(self.pids)
            for start in range(0, len(order) - p + 1, p):
                chosen = order[start:start + p]
                picks = [self._pick(rng, int(pid)) for pid in chosen]  # same draws on every rank
                mine = picks[self.rank::self.world_size]
                yield [i for group in mine for i in group]


class RandomBatchSampler(ResumableBatchSampler):
    """Infinite random batches (each epoch a fresh permutation), split evenly over ranks."""

    def __init__(self, size: int, batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        self.rank, self.world_size = _dist_info(rank, world_size)
        if batch_size % self.world_size != 0:
            raise ValueError(f"batch size {batch_size} not divisible by {self.world_size} processes")
        if size < batch_size:
            raise ValueError(f"dataset of {size} images is smaller than one batch ({batch_size})")
        self.size, self.batch_size, self.seed = size, batch_size, int(seed)

    def _batches(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        per_rank = self.batch_size // self.world_size
        while True:
            order = rng.permutation(self.size)
            for start in range(0, self.size - self.batch_size + 1, self.batch_size):
                batch = order[start:start + self.batch_size]
                yield [int(i) for i in batch[self.rank * per_rank:(self.rank + 1) * per_rank]]


class AspectRatioBatchSampler(ResumableBatchSampler):
    """Detectron2's person-search training batches as index lists: ``TrainingSampler``'s stream (a fresh
    ``torch.randperm`` per epoch from ``seed``, rank ``r`` keeping every ``world_size``-th index) grouped, like
    ``AspectRatioGroupedDataset``, into landscape (w > h) and portrait batches.

    Grouping the indices (not the loaded images) keeps the buffered, half-filled groups a function of the
    position, so ``start_at`` resumes exactly, and makes the batches independent of ``num_workers`` (Detectron2
    v0.6 groups whatever its workers return first). With 0 workers the batches equal Detectron2's.
    """

    def __init__(self, landscape: Sequence[bool], batch_size: int, seed: int, group: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        self.rank, self.world_size = _dist_info(rank, world_size)
        if batch_size % self.world_size != 0:
            raise ValueError(f"batch size {batch_size} not divisible by {self.world_size} processes")
        if not len(landscape):
            raise ValueError("the person-search training set is empty")
        self.landscape = np.asarray(landscape, dtype=bool)
        self.batch_size = batch_size // self.world_size
        self.seed, self.group = int(seed), group

    def _indices(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            yield from torch.randperm(len(self.landscape), generator=g).tolist()

    def _batches(self) -> Iterator[List[int]]:
        stream = itertools.islice(self._indices(), self.rank, None, self.world_size)
        buckets = [[], []]
        for i in stream:
            bucket = buckets[0 if (self.group and self.landscape[i]) else 1]
            bucket.append(i)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                del bucket[:]
