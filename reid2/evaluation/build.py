"""``build_evaluator(cfg, dataset_name, model=None)``: the evaluator a test set declares in its metadata.

As in Detectron2's ``tools/train_net.py``, the dataset's ``evaluator_type`` picks the evaluator ("reid",
"person_search"), and the dataset's ``protocol`` picks how it scores. A config value that disagrees with the
dataset (``TEST.REID.PROTOCOL``) is used, with a warning that names both; the default ``""`` follows the
dataset. A downstream package adds an evaluator type with ``@register_evaluator("my_type")`` on a
``builder(cfg, dataset_name, model)`` function.
"""
import logging

from detectron2.data import MetadataCatalog

from .ps_evaluator import PersonSearchEvaluator
from .reid_evaluator import ReIDEvaluator

__all__ = ["EVALUATOR_REGISTRY", "RANK_PROTOCOLS", "build_evaluator", "register_evaluator", "reid_protocol"]

# evaluator_type -> builder ``fn(cfg, dataset_name, model) -> DatasetEvaluator``.
EVALUATOR_REGISTRY = {}


def register_evaluator(evaluator_type: str):
    """Decorator: ``fn(cfg, dataset_name, model)`` builds the evaluator of test sets of ``evaluator_type``."""
    def deco(fn):
        if evaluator_type in EVALUATOR_REGISTRY:
            raise KeyError(f"evaluator_type {evaluator_type!r} is already registered")
        EVALUATOR_REGISTRY[evaluator_type] = fn
        return fn
    return deco

# Dataset metadata ``protocol`` -> the ranking protocol of ``reid2.evaluation.rank``.
RANK_PROTOCOLS = {
    "market": "market",  # per-query removal of same-identity same-camera gallery images (Market, Duke, MSMT, CUHK03-NP)
    "cuhk03_classic": "cuhk03_classic",  # single-gallery-shot, repeated sampling (CUHK03 classic, 20 trials)
    "split_average": "market",  # VIPeR / CUHK01 random-split trials (cross-camera), averaged over splits
}


def reid_protocol(cfg, dataset_name) -> str:
    """The ranking protocol for ``dataset_name``: its metadata's, or ``TEST.REID.PROTOCOL`` (with a warning) when
    the config names another one."""
    declared = MetadataCatalog.get(dataset_name).get("protocol", None)
    if declared is not None and declared not in RANK_PROTOCOLS:
        raise ValueError(f"dataset {dataset_name!r} declares protocol {declared!r}; known: {sorted(RANK_PROTOCOLS)}")
    from_dataset = RANK_PROTOCOLS.get(declared)
    configured = cfg.TEST.REID.PROTOCOL
    if not configured:
        if from_dataset is None:
            logging.getLogger(__name__).warning(
                "dataset %r declares no 'protocol' in its metadata and TEST.REID.PROTOCOL is empty: using 'market' "
                "(set the metadata or the key to one of %s)", dataset_name, sorted(set(RANK_PROTOCOLS.values())))
            return "market"
        return from_dataset
    if from_dataset is not None and configured != from_dataset:
        logging.getLogger(__name__).warning(
            "TEST.REID.PROTOCOL=%r overrides the protocol %r that dataset %r declares", configured, from_dataset,
            dataset_name)
    return configured


@register_evaluator("reid")
def _build_reid_evaluator(cfg, dataset_name, model=None):
    return ReIDEvaluator.from_config(cfg, dataset_name, protocol=reid_protocol(cfg, dataset_name))


@register_evaluator("person_search")
def _build_person_search_evaluator(cfg, dataset_name, model=None):
    return PersonSearchEvaluator.from_config(cfg, dataset_name, model=model)


def build_evaluator(cfg, dataset_name, model=None):
    """The evaluator of test set ``dataset_name`` (metadata ``evaluator_type``); ``model`` is needed by evaluators
    that call the model themselves (person search embeds its queries)."""
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if evaluator_type is None:
        raise ValueError(f"dataset {dataset_name!r} has no 'evaluator_type' in its metadata; register it with "
                         "reid2.data.datasets.register_reid_dataset or set MetadataCatalog.get(name).evaluator_type "
                         f"to one of {sorted(EVALUATOR_REGISTRY)}")
    if evaluator_type not in EVALUATOR_REGISTRY:
        raise ValueError(f"dataset {dataset_name!r} declares evaluator_type {evaluator_type!r}; registered: "
                         f"{sorted(EVALUATOR_REGISTRY)}")
    return EVALUATOR_REGISTRY[evaluator_type](cfg, dataset_name, model)
