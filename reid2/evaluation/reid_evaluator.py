"""``ReIDEvaluator``: features of query + gallery images → CMC / mAP / mINP (Detectron2 evaluator)."""
import logging
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .distance import compute_distance_matrix
from .rank import evaluate_cuhk03_single_shot, evaluate_rank
from .rerank import re_ranking

__all__ = ["ReIDEvaluator", "pool_multi_query"]


class ReIDEvaluator(DatasetEvaluator):
    """Collects the embeddings the model returns for a test set of query and gallery dicts.

    ``process(inputs, outputs)``: ``inputs`` is a batch dict from ``build_reid_test_loader``
    (``targets`` = pids, ``camids``, ``splits``), ``outputs`` the (N, D) embeddings.
    ``evaluate()`` gathers everything on the main process, optionally L2-normalises, computes
    the distance matrix (euclidean or cosine), optionally re-ranks, and applies the protocol:

    * ``"market"``: the Market-1501 protocol of ``evaluate_rank`` (same-pid-same-camera gallery
      items removed per query, junk already dropped by the loaders, distractors negatives).
      Datasets without camera ids: give query and gallery different camids (e.g. 0 and 1), so
      nothing is removed.
    * ``"cuhk03_classic"``: CUHK03's single-gallery-shot CMC averaged over 10 draws.

    Returns ``{"reid": {"Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP"}}`` in percent.
    """

    def __init__(self, dataset_name, metric="euclidean", normalize=True, rerank=None,
                 protocol="market", max_rank=50, ranks=(1, 5, 10, 20), multi_query_pooling=None):
        self.dataset_name = dataset_name
        self.multi_query_pooling = multi_query_pooling  # None, or "avg" / "max" for multi-query test sets
        self.metric, self.normalize, self.protocol = metric, normalize, protocol
        self.rerank = rerank  # None or dict(k1=.., k2=.., lambda_value=..)
        self.max_rank, self.ranks = max_rank, ranks
        self._logger = logging.getLogger(__name__)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, protocol=None):
        """``protocol``: the ranking protocol (``reid2.evaluation.build`` takes it from the dataset's metadata)."""
        t = cfg.TEST.REID
        rerank = None
        if t.RERANK.ENABLED:
            rerank = dict(k1=t.RERANK.K1, k2=t.RERANK.K2, lambda_value=t.RERANK.LAMBDA)
        multi_query = MetadataCatalog.get(dataset_name).get("multi_query", False)
        return cls(dataset_name, metric=t.METRIC, normalize=t.NORMALIZE_FEATS, rerank=rerank,
                   protocol=protocol or t.PROTOCOL or "market", max_rank=t.MAX_RANK,
                   multi_query_pooling=t.MULTI_QUERY_POOLING if multi_query else None)

    def reset(self):
        self._feats, self._pids, self._camids, self._splits = [], [], [], []

    def process(self, inputs, outputs):
        feats = outputs["features"] if isinstance(outputs, dict) else outputs
        self._feats.append(feats.detach().float().cpu())
        self._pids.append(inputs["targets"].cpu())
        self._camids.append(inputs["camids"].cpu())
        self._splits.extend(inputs["splits"])

    def _gather(self):
        local = (torch.cat(self._feats) if self._feats else torch.zeros(0),
                 torch.cat(self._pids) if self._pids else torch.zeros(0, dtype=torch.long),
                 torch.cat(self._camids) if self._camids else torch.zeros(0, dtype=torch.long),
                 list(self._splits))
        if comm.get_world_size() == 1:
            return local
        parts = comm.gather(local, dst=0)
        if not comm.is_main_process():
            return None
        parts = [p for p in parts if len(p[3])]
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                torch.cat([p[2] for p in parts]), [s for p in parts for s in p[3]])

    def evaluate(self):
        gathered = self._gather()
        if gathered is None:
            return {}
        feats, pids, camids, splits = gathered
        splits = np.asarray(splits)
        q, g = splits == "query", splits == "gallery"
        if not q.any() or not g.any():
            raise ValueError(
                f"{self.dataset_name}: the test set needs dicts with split 'query' and 'gallery' "
                f"(got {sorted(set(splits.tolist()))})")
        if self.normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        qf, gf = feats[torch.from_numpy(q)], feats[torch.from_numpy(g)]
        pids, camids = pids.numpy(), camids.numpy()
        q_pids, q_camids = pids[q], camids[q]
        if self.multi_query_pooling:
            qf, q_pids, q_camids = pool_multi_query(qf, q_pids, q_camids, self.multi_query_pooling)
            if self.normalize:
                qf = torch.nn.functional.normalize(qf, dim=1)
        distmat = compute_distance_matrix(qf, gf, metric=self.metric)
        if self.rerank is not None:
            self._logger.info("re-ranking (k1=%d, k2=%d, lambda=%.2f)", self.rerank["k1"],
                              self.rerank["k2"], self.rerank["lambda_value"])
            distmat = re_ranking(distmat, compute_distance_matrix(qf, qf, metric=self.metric),
                                 compute_distance_matrix(gf, gf, metric=self.metric), **self.rerank)
        args = (distmat, q_pids, pids[g], q_camids, camids[g])
        if self.protocol == "market":
            res = evaluate_rank(*args, max_rank=self.max_rank)
        elif self.protocol == "cuhk03_classic":
            res = evaluate_cuhk03_single_shot(*args, max_rank=self.max_rank)
        else:
            raise ValueError(f"TEST.REID.PROTOCOL must be 'market' or 'cuhk03_classic', got {self.protocol!r}")
        cmc = res["cmc"]
        out = OrderedDict()
        for r in self.ranks:
            out[f"Rank-{r}"] = 100.0 * float(cmc[min(r, len(cmc)) - 1])
        out["mAP"] = 100.0 * float(res["mAP"])
        if "mINP" in res:
            out["mINP"] = 100.0 * float(res["mINP"])
        self._logger.info("%s: %d queries (%d valid), %d gallery images", self.dataset_name,
                          len(q_pids), int(res.get("num_valid_queries", len(q_pids))), int(g.sum()))
        return OrderedDict(reid=out)


def pool_multi_query(feats, pids, camids, pooling="avg"):
    """One query per (pid, camid): the mean ("avg") or element-wise max ("max") of its images' features.

    Market-1501's multiple-query setting (Zheng et al., ICCV'15) pools the hand-drawn ``gt_bbox`` images of a
    query's identity and camera. Returns (pooled feats, pids, camids), groups in order of first appearance.
    """
    if pooling not in ("avg", "max"):
        raise ValueError(f"TEST.REID.MULTI_QUERY_POOLING must be 'avg' or 'max', got {pooling!r}")
    keys = np.stack([np.asarray(pids), np.asarray(camids)], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first)  # groups in order of first appearance
    rank_of_group = np.empty_like(order)
    rank_of_group[order] = np.arange(len(order))
    group = torch.from_numpy(rank_of_group[inverse])
    n = len(order)
    if pooling == "avg":
        pooled = torch.zeros(n, feats.shape[1], dtype=feats.dtype).index_add_(0, group, feats)
        pooled /= torch.bincount(group, minlength=n).unsqueeze(1).to(feats.dtype)
    else:
        pooled = torch.full((n, feats.shape[1]), float("-inf"), dtype=feats.dtype)
        pooled = pooled.scatter_reduce(0, group.unsqueeze(1).expand_as(feats), feats, reduce="amax")
    firsts = first[order]
    return pooled, np.asarray(pids)[firsts], np.asarray(camids)[firsts]
