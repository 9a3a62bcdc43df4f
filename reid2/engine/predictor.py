"""Load a trained reid2 model from a config + checkpoint and run it on image files (the user tools' core).

Used by ``tools/extract_features.py``, ``tools/demo.py``, ``tools/visualize_results.py`` and ``tools/export.py``:

* :func:`load_model` builds any registered meta-architecture (re-ID, DSA, person search) from a config file,
  loads the checkpoint and puts it in eval mode. It needs no training set: the size of the classifier / OIM
  lookup table is read from the checkpoint when the config would otherwise count the training identities.
* :class:`ReIDEmbedder` embeds person crops (file names, PIL images, optionally a crop box) in batches with the
  test transform of ``cfg.INPUT.REID``.
* :class:`PersonSearchPredictor` detects people in scenes (boxes, scores, ``reid_feats``) and embeds given boxes,
  with the test-time resize of Detectron2's ``DatasetMapper``.

Every missing file raises ``FileNotFoundError`` naming the path. Checkpoints load through
``reid2.utils.serialization`` (tensors and arrays only, unless ``REID2_TRUST_PICKLE=1``).
"""
import logging
import os
from typing import List, Sequence

import numpy as np
import torch

from reid2.evaluation import compute_features
from reid2.utils.arrays import l2_normalize
from reid2.utils.files import IMAGE_EXTENSIONS, list_images, read_image, require_dir, require_file
from reid2.utils.modules import unwrap_model
from reid2.utils.serialization import load_checkpoint_file

__all__ = ["load_model", "build_cfg", "model_task", "ReIDEmbedder", "PersonSearchPredictor", "build_embedder",
           "read_image", "list_images", "l2_normalize", "IMAGE_EXTENSIONS", "require_file", "require_dir"]

logger = logging.getLogger(__name__)


def _checkpoint_state(weights):
    """The checkpoint's state dict, read as the checkpointer reads it (never running code from the file)."""
    state = load_checkpoint_file(weights)["model"]
    return state if isinstance(state, dict) else {}


def build_cfg(config_file, opts=(), weights=None, device=None):
    """reid2 config from a file + ``KEY VALUE`` overrides (the file's ``REID2.IMPORTS`` imported first)."""
    from reid2.config import load_config

    from .defaults import resolve_device

    cfg = load_config(require_file(config_file, "config file"), opts)
    if weights is not None:
        cfg.MODEL.WEIGHTS = os.fspath(weights)
    if device:
        cfg.MODEL.DEVICE = device
    resolve_device(cfg)
    return cfg


def load_model(config_file, weights=None, opts=(), device=None):
    """(cfg, model in eval mode) from a config file and a checkpoint (``weights`` or cfg's MODEL.WEIGHTS).

    The checkpoint must fill the whole model (except the keys the model declares optional), else
    :class:`~reid2.engine.checkpoint.WeightsMismatchError` names the file and the first keys. No weights is an
    error; ``weights="random"`` (``--weights random`` / ``MODEL.WEIGHTS random``) asks for an untrained model.
    """
    from detectron2.modeling import build_model

    from .checkpoint import RANDOM_WEIGHTS, AtomicCheckpointer, WeightsMismatchError

    cfg = build_cfg(config_file, opts, weights, device)
    path = cfg.MODEL.WEIGHTS
    state = None
    if not path:
        raise WeightsMismatchError("no checkpoint given: pass --weights PATH (or MODEL.WEIGHTS PATH); "
                                   "--weights random evaluates an untrained model on purpose")
    if path != RANDOM_WEIGHTS:
        require_file(path, "checkpoint (MODEL.WEIGHTS / --weights)")
        state = _checkpoint_state(path)
    _set_class_counts(cfg, state)
    model = build_model(cfg)
    AtomicCheckpointer(model).load(path)  # checks that the weights fill the model
    model.eval()
    logger.info("loaded %s (%s) from %s on %s", cfg.MODEL.META_ARCHITECTURE, model_task(model), path,
                cfg.MODEL.DEVICE)
    return cfg, model


def _set_class_counts(cfg, state):
    """Fill identity counts the config leaves to the training set (0) from the checkpoint, so no training
    data is needed at inference; 1 when neither the checkpoint nor a readable training set has them (the
    classifier is then unused).

    The meta-architecture declares them: ``class_count_keys`` maps a config key to the state-dict entries whose
    first dimension is that count (e.g. ``ReIDBaseline``: MODEL.REID.NUM_CLASSES → ``classifier.weight``).
    """
    from detectron2.modeling import META_ARCH_REGISTRY

    from reid2.data import num_train_identities

    declared = getattr(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), "class_count_keys", {})
    cfg.defrost()
    for key, entries in declared.items():
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        if node[name] > 0:
            continue
        rows = next((int(state[k].shape[0]) for k in entries if state and k in state), None)
        if rows is None:
            try:  # the training set's count when it is registered and readable
                rows = num_train_identities(cfg, key)
            except Exception:
                rows = 1
        node[name] = rows
    cfg.freeze()


def model_task(model) -> str:
    """``"person_search"`` for detectors with ``embed_boxes``, ``"reid"`` for crop embedders."""
    model = unwrap_model(model)
    return "person_search" if hasattr(model, "embed_boxes") else "reid"


class ReIDEmbedder:
    """Crop images → (N, D) float32 embeddings with a re-ID model (its test transform, batched, no grad)."""

    def __init__(self, cfg, model, batch_size=None):
        from reid2.data.transforms import build_reid_transforms

        self.cfg, self.model = cfg, model
        self.transform = build_reid_transforms(cfg, is_train=False)
        self.batch_size = batch_size or cfg.TEST.IMS_PER_BATCH

    def embed_tensors(self, images: torch.Tensor) -> np.ndarray:
        return compute_features(self.model, [images])

    def embed(self, items, boxes=None, progress=None) -> np.ndarray:
        """``items``: file names or PIL images; ``boxes``: optional xyxy crop per item (None = whole image)."""
        boxes = boxes if boxes is not None else [None] * len(items)
        return compute_features(self.model, self._batches(items, boxes, progress))

    def _batches(self, items, boxes, progress):
        for start in range(0, len(items), self.batch_size):
            batch = []
            for item, box in zip(items[start:start + self.batch_size], boxes[start:start + self.batch_size]):
                img = read_image(item, box) if isinstance(item, (str, os.PathLike)) else item
                if box is not None and not isinstance(item, (str, os.PathLike)):
                    img = img.crop(tuple(int(round(v)) for v in box))
                batch.append(self.transform(img))
            yield torch.stack(batch)
            if progress is not None:
                progress.update(len(batch))


class PersonSearchPredictor:
    """Scenes → detections with identity embeddings; boxes in a scene → embeddings (a ``PersonSearchRCNN``)."""

    def __init__(self, cfg, model, batch_size=None):
        from reid2.data.person_search_mapper import NamedImageDatasetMapper as DatasetMapper

        self.cfg, self.model = cfg, model
        self.mapper = DatasetMapper(cfg, is_train=False)
        self.batch_size = batch_size or cfg.TEST.PERSON_SEARCH.IMS_PER_BATCH

    def _inputs(self, files):
        return [self.mapper({"file_name": require_file(f, "image"), "image_id": os.path.basename(f)}) for f in files]

    @torch.no_grad()
    def detect(self, files: Sequence[str], progress=None) -> List[dict]:
        """Per file ``{"boxes" (n,4) xyxy original pixels, "scores" (n,), "feats" (n,D) or None}``."""
        out = []
        for start in range(0, len(files), self.batch_size):
            batch = list(files[start:start + self.batch_size])
            for result in self.model(self._inputs(batch)):
                inst = result["instances"].to("cpu")
                out.append({"boxes": inst.pred_boxes.tensor.numpy().astype(np.float32),
                            "scores": inst.scores.numpy().astype(np.float32),
                            "feats": inst.reid_feats.float().numpy() if inst.has("reid_feats") else None})
            if progress is not None:
                progress.update(len(batch))
        return out

    @torch.no_grad()
    def embed_boxes(self, file, boxes) -> np.ndarray:
        """(n, D) embeddings of xyxy ``boxes`` (original pixels) in image ``file``."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        feats = self.model.embed_boxes(self._inputs([file]), [boxes])[0]
        return feats.float().cpu().numpy()


def build_embedder(cfg, model, batch_size=None):
    return PersonSearchPredictor(cfg, model, batch_size) if model_task(model) == "person_search" \
        else ReIDEmbedder(cfg, model, batch_size)
