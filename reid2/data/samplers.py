"""Batch samplers for re-ID training: P identities x K images, or plain random batches.

They are *batch* samplers (each yields the indices of one batch), so a DataLoader hands whole
batches to its workers and P x K batches survive any ``num_workers`` — unlike Detectron2
v0.6's loader, which shards a flat index stream round-robin over workers. Both are infinite,
deterministic given the seed, and distributed-aware: every rank draws the same global batch
from the same random stream and keeps a disjoint share of it, so all ranks run the same
number of iterations.
"""
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence

import numpy as np
from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["IdentityBatchSampler", "RandomBatchSampler"]


def _dist_info(rank, world_size):
    rank = comm.get_rank() if rank is None else rank
    world_size = comm.get_world_size() if world_size is None else world_size
    return rank, world_size


class IdentityBatchSampler(Sampler[List[int]]):
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

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        p = self.num_ids_per_batch
        while True:
            order = rng.permutation(self.pids)
            for start in range(0, len(order) - p + 1, p):
                chosen = order[start:start + p]
                picks = [self._pick(rng, int(pid)) for pid in chosen]  # same draws on every rank
                mine = picks[self.rank::self.world_size]
                yield [i for group in mine for i in group]


class RandomBatchSampler(Sampler[List[int]]):
    """Infinite random batches (each epoch a fresh permutation), split evenly over ranks."""

    def __init__(self, size: int, batch_size: int, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        self.rank, self.world_size = _dist_info(rank, world_size)
        if batch_size % self.world_size != 0:
            raise ValueError(f"batch size {batch_size} not divisible by {self.world_size} processes")
        if size < batch_size:
            raise ValueError(f"dataset of {size} images is smaller than one batch ({batch_size})")
        self.size, self.batch_size, self.seed = size, batch_size, int(seed)

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng(self.seed)
        per_rank = self.batch_size // self.world_size
        while True:
            order = rng.permutation(self.size)
            for start in range(0, self.size - self.batch_size + 1, self.batch_size):
                batch = order[start:start + self.batch_size]
                yield [int(i) for i in batch[self.rank * per_rank:(self.rank + 1) * per_rank]]
