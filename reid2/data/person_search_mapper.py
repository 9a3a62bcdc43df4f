"""Person-search data: a Detectron2 mapper that keeps the person ids, and the train / batched test loaders.

Detectron2's ``DatasetMapper`` turns annotations into ``Instances`` with ``gt_boxes`` and ``gt_classes``
only; OIM also needs each box's ``person_id``, carried here as ``gt_pids`` (≥ 0 labelled, -1 unlabelled).
Augmentation is Detectron2's ``build_augmentation``: shortest-edge resize (INPUT.MIN_SIZE_TRAIN /
MAX_SIZE_TRAIN, or the TEST sizes) and, in training, horizontal flip (INPUT.RANDOM_FLIP).
"""
import logging

import torch
from detectron2.data import DatasetMapper, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data import detection_utils as utils
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from .bad_images import BadImageCounter, NonEmptyBatches, load_or_replace
from .samplers import AspectRatioBatchSampler

__all__ = ["NamedImageDatasetMapper", "PersonSearchDatasetMapper", "build_person_search_train_loader",
           "build_person_search_test_loader"]


class NamedImageDatasetMapper(DatasetMapper):
    """``DatasetMapper`` whose image errors name the file: Detectron2's ``read_image`` raises PIL's bare
    ``OSError: image file is truncated`` (or cannot identify the image) without saying which one."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except OSError as e:
            name = dataset_dict.get("file_name", "?")
            if name in str(e):
                raise
            raise OSError(f"cannot read image {name}: {e}") from e


class PersonSearchDatasetMapper(NamedImageDatasetMapper):
    """``DatasetMapper`` whose training ``instances`` also hold ``gt_pids`` (int64, one per box)."""

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        annotations = [
            utils.transform_instance_annotations(obj, transforms, image_shape)
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        missing = [i for i, obj in enumerate(annotations) if "person_id" not in obj]
        if missing:
            raise ValueError(f"{dataset_dict.get('file_name')}: annotations {missing} have no 'person_id' "
                             "(person-search dicts need it: >= 0 labelled, -1 unlabelled)")
        instances = utils.annotations_to_instances(annotations, image_shape)
        instances.gt_pids = torch.tensor([obj["person_id"] for obj in annotations], dtype=torch.int64)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)


class _MappedImages(torch.utils.data.Dataset):
    """``mapper(dicts[i])``; with ``skip_bad_images`` an unreadable image is counted and replaced by the next
    readable one of the same aspect group (training: Detectron2's ``MapDataset`` would draw a random one, which
    breaks exact resume) or dropped (test: None, left out by the collate function)."""

    def __init__(self, dicts, mapper, skip_bad_images, landscape=None):
        self.dicts, self.mapper, self.skip, self.landscape = dicts, mapper, skip_bad_images, landscape
        kind = "training" if landscape is not None else "test"
        self.bad_images = BadImageCounter(f"person-search {kind} images")

    def __len__(self):
        return len(self.dicts)

    def _load(self, index):
        return self.mapper(dict(self.dicts[index]))  # the mapper pops keys: give it a copy

    def __getitem__(self, index):
        if not self.skip:
            return self._load(index)
        order = None
        if self.landscape is not None:
            same = [i for i, flag in enumerate(self.landscape) if flag == self.landscape[index]]
            order = (same, range(len(self.dicts)))
        return load_or_replace(self._load, index, order, lambda i: self.dicts[i]["file_name"], self.bad_images)


def _is_landscape(d):
    if "width" in d and "height" in d:
        return d["width"] > d["height"]
    from PIL import Image

    with Image.open(d["file_name"]) as img:  # the header only
        return img.width > img.height


def build_person_search_train_loader(cfg):
    """Detectron2's training batches (``TrainingSampler`` stream, aspect-ratio groups) over the person-search
    mapper, drawn by :class:`AspectRatioBatchSampler`: resumable at any batch and the same for any number of
    workers. Other ``DATALOADER.SAMPLER_TRAIN`` values use Detectron2's loader (no exact resume)."""
    mapper = PersonSearchDatasetMapper(cfg, is_train=True)
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        logging.getLogger(__name__).warning(
            "DATALOADER.SAMPLER_TRAIN %s: Detectron2's loader, a resumed run will not see the same batches",
            cfg.DATALOADER.SAMPLER_TRAIN)
        return build_detection_train_loader(cfg, mapper=mapper)
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    landscape = [_is_landscape(d) for d in dicts]
    sampler = AspectRatioBatchSampler(landscape, cfg.SOLVER.IMS_PER_BATCH,
                                      seed=comm.shared_random_seed(), group=cfg.DATALOADER.ASPECT_RATIO_GROUPING)
    if cfg.DATALOADER.SKIP_BAD_IMAGES:
        dataset = _MappedImages(dicts, mapper, True, landscape)
    else:
        dataset = MapDataset(DatasetFromList(dicts, copy=False), mapper)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=trivial_batch_collator,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS, worker_init_fn=worker_init_reset_seed,
                                       persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0)


def trivial_batch_collator(batch):
    """The list of mapped dicts, without the images skipped as unreadable (None)."""
    return [item for item in batch if item is not None]


def build_person_search_test_loader(cfg, dataset_name, batch_size=None):
    """Every image of ``dataset_name`` once, split over the processes, ``batch_size`` images per batch
    (default TEST.PERSON_SEARCH.IMS_PER_BATCH); each item is a list of mapped dicts, as the model takes.
    With ``DATALOADER.SKIP_BAD_IMAGES`` an unreadable image is left out (no detections: its ground truths and
    gallery entries count as missed)."""
    batch_size = batch_size or cfg.TEST.PERSON_SEARCH.IMS_PER_BATCH
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    skip = cfg.DATALOADER.SKIP_BAD_IMAGES
    mapper = NamedImageDatasetMapper(cfg, is_train=False)
    dataset = _MappedImages(dicts, mapper, True) if skip else MapDataset(DatasetFromList(dicts, copy=False), mapper)
    batch_sampler = torch.utils.data.BatchSampler(InferenceSampler(len(dataset)), batch_size, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=trivial_batch_collator,
                                         num_workers=cfg.DATALOADER.NUM_WORKERS)
    return NonEmptyBatches(loader) if skip else loader
