"""``PersonSearchEvaluator``: detection AP / recall and search mAP / top-k of a person-search model.

``process`` keeps every test image's detections (boxes, scores, ``reid_feats``) by ``image_id``.
``evaluate`` then embeds each protocol query's box in its query image with ``model.embed_boxes`` (the model
is given at construction or through :meth:`set_model`; Detectron2's ``inference_on_dataset`` calls
``evaluate`` after leaving eval mode, so the evaluator switches it again), ranks the gallery with
:func:`~reid2.evaluation.search.search_performance` and scores the detector with
:func:`~reid2.evaluation.search.detection_performance` on every ground-truth box.

Under several processes each one embeds a share of the query images; everything is gathered on the main
process, which alone returns results (Detectron2's convention). Results are percentages:
``{"search": {"mAP", "top1", "top5", "top10"}, "detection": {"AP", "recall"}}``; a detector without
identity branch (no ``reid_feats``) gets the detection part only.
"""
import itertools
import logging
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm

from reid2.data.bad_images import BadImageCounter
from reid2.data.person_search_mapper import NamedImageDatasetMapper
from reid2.utils.modules import unwrap_model
from reid2.utils.progress import progress_bar

from .protocols import detection_ground_truth, get_queries
from .search import detection_performance, search_performance

__all__ = ["PersonSearchEvaluator"]


class PersonSearchEvaluator(DatasetEvaluator):
    """Detection + search evaluation of a registered person-search test set.

    Args:
        dataset_name: a test set with ``evaluator_type="person_search"`` (its metadata holds the queries).
        query_mapper: dataset dict → model input for query images (the test-time ``DatasetMapper``).
        model: the model with ``embed_boxes`` (DDP wrapper accepted); may be set later with :meth:`set_model`.
        det_thresh: detections scored below it are ignored (search, and detection unless the next is given).
        detection_thresh: the detection evaluation's own threshold (``None`` = ``det_thresh``, as the original
            OIM eval; SeqNet/NAE/COAT use 0.01).
        gallery_size: protocol gallery size; ``None`` = the dataset's default, -1 = full set.
        ims_per_batch: query images per ``embed_boxes`` call.
        skip_bad_images: ``DATALOADER.SKIP_BAD_IMAGES``: a query whose image cannot be read is left out (counted,
            with a warning) instead of an error naming the image.
    """

    def __init__(self, dataset_name, query_mapper, model=None, det_thresh=0.5, gallery_size=None, ims_per_batch=2,
                 detection_thresh=None, skip_bad_images=False):
        self.dataset_name = dataset_name
        self.skip_bad_images = skip_bad_images
        self.query_mapper = query_mapper
        self.det_thresh, self.gallery_size, self.ims_per_batch = det_thresh, gallery_size, ims_per_batch
        self.detection_thresh = det_thresh if detection_thresh is None else detection_thresh
        self._model = None
        if model is not None:
            self.set_model(model)
        self._logger = logging.getLogger(__name__)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, model=None):
        t = cfg.TEST.PERSON_SEARCH
        return cls(dataset_name, NamedImageDatasetMapper(cfg, is_train=False), model=model, det_thresh=t.DET_THRESH,
                   gallery_size=t.GALLERY_SIZE or None, ims_per_batch=t.IMS_PER_BATCH,
                   detection_thresh=t.DETECTION_EVAL_THRESH if t.DETECTION_EVAL_THRESH >= 0 else None,
                   skip_bad_images=cfg.DATALOADER.SKIP_BAD_IMAGES)

    def set_model(self, model) -> None:
        """The model whose ``embed_boxes`` embeds the queries (``model.module`` of a DDP wrapper is used)."""
        self._model = unwrap_model(model)

    def reset(self):
        self._detections = {}

    def process(self, inputs, outputs):
        for inputs_per_image, output in zip(inputs, outputs):
            instances = output["instances"].to("cpu")
            feats = instances.reid_feats.float().numpy() if instances.has("reid_feats") else None
            self._detections[inputs_per_image["image_id"]] = (
                instances.pred_boxes.tensor.numpy(), instances.scores.numpy(), feats)

    def evaluate(self):
        detections = self._gather_detections()
        with_reid = detections is not None and any(d[2] is not None for d in detections.values())
        with_reid = comm.all_gather(with_reid)[0]  # every rank must take part in the query pass
        query_feats = self._embed_queries() if with_reid else None
        if not comm.is_main_process():
            return {}
        results = OrderedDict()
        if with_reid:
            queries = [{"feat": query_feats[i], "gallery": q["gallery"]} for i, q in enumerate(self._queries)
                       if i in query_feats]  # a query is missing only when its image was skipped as unreadable
            search = search_performance(queries, detections, det_thresh=self.det_thresh)
            results["search"] = {k: 100.0 * v for k, v in search.items()}
        gt_boxes, _ = detection_ground_truth(DatasetCatalog.get(self.dataset_name))
        detection = detection_performance(gt_boxes, detections, det_thresh=self.detection_thresh)
        results["detection"] = {k: 100.0 * v for k, v in detection.items()}
        self._logger.info("%s: %d images evaluated, %s queries", self.dataset_name, len(detections),
                          len(self._queries) if with_reid else "no")
        return results

    def _gather_detections(self):
        """image_id → (boxes, scores, feats) of all ranks on the main process; None elsewhere."""
        parts = comm.gather(self._detections, dst=0)
        if not comm.is_main_process():
            return None
        merged = {}
        for part in parts:
            merged.update(part)
        return merged

    def _embed_queries(self) -> dict:
        """query index → embedding (D,) on the main process; each rank embeds a share of the query images."""
        if self._model is None:
            raise RuntimeError("PersonSearchEvaluator needs the model to embed the queries: pass model= or "
                               "call set_model(model) before evaluate()")
        self._queries = get_queries(self.dataset_name, self.gallery_size)
        if not self._queries:
            raise ValueError(f"{self.dataset_name}: the protocol has no query")
        by_image = defaultdict(list)  # query file → indices of its queries
        for i, q in enumerate(self._queries):
            by_image[q["query"]["file_name"]].append(i)
        files = sorted(by_image)[comm.get_rank()::comm.get_world_size()]
        local, bad = {}, BadImageCounter(f"{self.dataset_name} query images")
        with inference_context(self._model), torch.no_grad():
            for start in progress_bar(range(0, len(files), self.ims_per_batch), desc="query features", unit="batch"):
                batch, inputs = [], []
                for f in files[start:start + self.ims_per_batch]:
                    mapped = self._map_query_image(f, by_image[f], bad)
                    if mapped is not None:
                        batch.append(f)
                        inputs.append(mapped)
                if not batch:
                    continue
                boxes = [np.stack([self._queries[i]["query"]["box"] for i in by_image[f]]) for f in batch]
                for f, feats in zip(batch, self._model.embed_boxes(inputs, boxes)):
                    local.update(zip(by_image[f], feats.float().cpu().numpy()))
        if bad.count and bad.count != 1:
            bad.warn()
        gathered = comm.gather(local, dst=0)
        return dict(itertools.chain.from_iterable(part.items() for part in gathered)) if gathered else {}

    def _map_query_image(self, file_name, query_indices, bad):
        """The mapped query image; None when it is unreadable and ``skip_bad_images`` (its queries left out)."""
        try:
            return self.query_mapper({"file_name": file_name, "image_id": file_name})
        except FileNotFoundError:
            raise
        except OSError as e:
            if not self.skip_bad_images:
                raise
            bad.skipped(f"{file_name} (queries {query_indices})", e)
            return None
