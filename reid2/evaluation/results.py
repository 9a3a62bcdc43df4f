"""Evaluation results I/O: the table printed after a test, ``metrics.json`` lines, and split averages.

Results are Detectron2's nested ``{dataset: {task: {metric: value}}}``; flattening reuses Detectron2's
``flatten_results_dict`` (``"dataset/task/metric"`` keys, the form EvalHook and ``metrics.json`` use).
"""
import json
import logging
import math
import os
import statistics
from collections import OrderedDict

from detectron2.data import MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict
from tabulate import tabulate

__all__ = ["add_split_averages", "flatten_results", "format_mean_std", "format_results_table", "read_last_evaluation",
           "write_metrics_json"]


def flatten_results(results) -> "OrderedDict[str, float]":
    """{"a": {"b": 1.0}} → {"a/b": 1.0}, in the results' order."""
    return OrderedDict(flatten_results_dict(results))


def format_results_table(results) -> str:
    """One row per dataset/task, one column per metric (a Markdown pipe table)."""
    rows, headers = [], ["dataset / task"]
    for name, value in flatten_results(results).items():
        group, _, metric = name.rpartition("/")
        if metric not in headers:
            headers.append(metric)
        if not rows or rows[-1][0] != group:
            rows.append([group])
        row = rows[-1]
        row.extend([""] * (headers.index(metric) + 1 - len(row)))
        row[headers.index(metric)] = f"{value:.2f}" if isinstance(value, float) else value
    return tabulate(rows, headers=headers, tablefmt="pipe")


def format_mean_std(values, digits: int = 2) -> str:
    """"m ± s" over the finite ``values`` with the sample standard deviation (n − 1), as seed tables report them;
    only "m" for one value (one seed shows no spread) and "-" for none."""
    values = [float(v) for v in values if math.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def add_split_averages(results):
    """Test sets of one split protocol (metadata ``split_family``, e.g. the 10 VIPeR or 20 CUHK03-classic trials)
    get a ``<family>_mean`` entry: the mean of every metric the splits share. Needs at least two splits."""
    groups = OrderedDict()
    for name, res in results.items():
        family = MetadataCatalog.get(name).get("split_family", None) if name in MetadataCatalog else None
        if family and isinstance(res, dict):
            groups.setdefault(family, []).append(flatten_results(res))
    for family, flats in groups.items():
        if len(flats) < 2:
            continue
        keys = [k for k in flats[0] if all(k in f for f in flats)]
        nested = OrderedDict()
        for key in keys:
            task, _, metric = key.rpartition("/")
            nested.setdefault(task or "mean", OrderedDict())[metric] = float(sum(f[key] for f in flats) / len(flats))
        results[f"{family}_mean"] = nested
    return results


def write_metrics_json(output_dir, results, iteration=None):
    """Append the flattened results as one JSON line to ``OUTPUT_DIR/metrics.json``.

    Detectron2's training log ``metrics.json`` is JSON-lines (one dict per logged iteration), so an evaluation
    is one more line of the same file: ``{"evaluation": true, "iteration": .., "<dataset>/<task>/<metric>":
    value, ...}`` (``iteration`` null for an ``--eval-only`` run). The last such line holds the latest results.
    """
    os.makedirs(output_dir, exist_ok=True)
    line = {"evaluation": True, "iteration": iteration}
    line.update({k: float(v) for k, v in flatten_results(results).items()})
    path = os.path.join(output_dir, "metrics.json")
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    logging.getLogger("reid2").info("Appended evaluation results to %s", path)
    return path


def read_last_evaluation(output_dir):
    """The most recent evaluation line of ``OUTPUT_DIR/metrics.json`` (a flat dict), or None."""
    path = os.path.join(output_dir, "metrics.json")
    last = None
    if os.path.exists(path):
        with open(path) as f:
            for raw in f:
                raw = raw.strip()
                if raw:
                    entry = json.loads(raw)
                    if entry.get("evaluation"):
                        last = entry
    return last
