"""Exact re-ID and person-search metrics, re-ranking, Detectron2 evaluators chosen by the dataset, results I/O."""
from .build import EVALUATOR_REGISTRY, build_evaluator, register_evaluator, reid_protocol
from .distance import compute_distance_matrix
from .features import compute_features, dataset_features
from .protocols import detection_ground_truth, get_queries
from .ps_evaluator import PersonSearchEvaluator
from .rank import evaluate_cuhk03_single_shot, evaluate_rank
from .reid_evaluator import ReIDEvaluator, pool_multi_query
from .rerank import re_ranking
from .results import (
    add_split_averages,
    flatten_results,
    format_mean_std,
    format_results_table,
    read_last_evaluation,
    write_metrics_json,
)
from .search import detection_performance, search_performance

__all__ = [
    "EVALUATOR_REGISTRY", "build_evaluator", "register_evaluator", "reid_protocol",
    "compute_distance_matrix", "compute_features", "dataset_features", "evaluate_rank", "evaluate_cuhk03_single_shot",
    "re_ranking",
    "search_performance", "detection_performance", "get_queries", "detection_ground_truth",
    "PersonSearchEvaluator", "ReIDEvaluator", "pool_multi_query",
    "add_split_averages", "flatten_results", "format_mean_std", "format_results_table", "read_last_evaluation",
    "write_metrics_json",
]
