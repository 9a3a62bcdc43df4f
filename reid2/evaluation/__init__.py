"""Exact re-ID and person-search metrics, re-ranking, and Detectron2 evaluators."""
from .distance import compute_distance_matrix
from .protocols import detection_ground_truth, get_queries
from .rank import evaluate_cuhk03_single_shot, evaluate_rank
from .reid_evaluator import ReIDEvaluator, pool_multi_query
from .rerank import re_ranking
from .search import detection_performance, search_performance

__all__ = [
    "compute_distance_matrix", "evaluate_rank", "evaluate_cuhk03_single_shot", "re_ranking",
    "search_performance", "detection_performance", "get_queries", "detection_ground_truth",
    "ReIDEvaluator",
    "pool_multi_query",
]
