"""Time and memory of ``re_ranking`` vs the reference k-reciprocal code (torchreid / fast-reid).

Inputs: euclidean distances of random ``--dim``-d features clustered around one centre per identity
(~21 images per identity, as Market-1501). Every measurement runs in a fresh subprocess:

* time: one call, without memory tracing;
* peak RSS above the inputs: ``ru_maxrss`` after the call minus the resident size before it (the caller's
  three input matrices, about N² × 4 bytes, are not counted);
* tracemalloc peak: a second call under ``tracemalloc`` (numpy reports its buffers to it).

The reference (copied in ``tests/reference.py``) runs at ``--num-query`` + ``--num-gallery`` (default
N = 4,000) and its result is compared with reid2's; at Market-1501 scale (``--market``: 3,368 + 15,913)
only reid2 runs and the reference figures are extrapolated, labelled as such: memory as N² (its dense N×N
arrays), time between N (its Python loops) and N² (its argsort and dense passes), the range printed.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_rerank [--num-query 700 --num-gallery 3300] [--market]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from reid2.evaluation.distance import compute_distance_matrix
from reid2.evaluation.rerank import re_ranking

MARKET = (3368, 15913)


def build_inputs(num_query, num_gallery, dim, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, max(1, (num_query + num_gallery) // 21), num_query + num_gallery)
    feats = rng.standard_normal((ids.max() + 1, dim), dtype=np.float32)[ids] \
        + rng.standard_normal((len(ids), dim), dtype=np.float32)
    query, gallery = feats[:num_query], feats[num_query:]
    return (compute_distance_matrix(query, gallery), compute_distance_matrix(query, query),
            compute_distance_matrix(gallery, gallery))


def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(method, num_query, num_gallery, dim, output):
    """Measure one method on fresh inputs; prints a JSON line, saves the result to ``output``."""
    if method == "reference":
        from tests.reference import reference_re_ranking as method_fn
    else:
        method_fn = re_ranking
    inputs = build_inputs(num_query, num_gallery, dim)
    before = resident_mib()
    start = time.perf_counter()
    result = method_fn(*inputs)
    seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    np.save(output, result)
    del result
    tracemalloc.start()
    method_fn(*inputs)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    print(json.dumps(dict(seconds=seconds, peak_rss_mib=peak_rss, traced_peak_mib=traced_peak)))


def measure(method, num_query, num_gallery, dim, output):
    command = [sys.executable, __file__, "--worker", method, "--num-query", str(num_query),
               "--num-gallery", str(num_gallery), "--dim", str(dim), "--output", output]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-query", type=int, default=700)
    parser.add_argument("--num-gallery", type=int, default=3300)
    parser.add_argument("--dim", type=int, default=128, help="feature dimension (only the inputs depend on it)")
    parser.add_argument("--market", action="store_true", help="also run reid2 at Market-1501 scale (3,368 + 15,913)")
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.num_query, args.num_gallery, args.dim, args.output)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        size = (args.num_query, args.num_gallery)
        reference = measure("reference", *size, args.dim, f"{tmp}/reference.npy")
        ours = measure("ours", *size, args.dim, f"{tmp}/ours.npy")
        max_diff = float(np.abs(np.load(f"{tmp}/reference.npy") - np.load(f"{tmp}/ours.npy")).max())
        rows += [(size, "reference (measured)", reference), (size, "reid2 re_ranking", ours)]
        if args.market:
            linear = sum(MARKET) / sum(size)
            extrapolated = {key: value * linear ** 2 for key, value in reference.items()}
            extrapolated["seconds"] = (reference["seconds"] * linear, reference["seconds"] * linear ** 2)
            rows.append((MARKET, "reference (extrapolated, see --help)", extrapolated))
            rows.append((MARKET, "reid2 re_ranking", measure("ours", *MARKET, args.dim, f"{tmp}/market.npy")))
    print(f"max |reid2 - reference| at N={sum(size)}: {max_diff:.2e}")
    print(f"{'query+gallery':>14}  {'method':<38} {'seconds':>11} {'peak RSS MiB':>13} {'tracemalloc MiB':>16}")
    for (nq, ng), name, m in rows:
        seconds = m["seconds"]
        seconds = f"{seconds[0]:.0f}-{seconds[1]:.0f}" if isinstance(seconds, tuple) else f"{seconds:.2f}"
        print(f"{f'{nq}+{ng}':>14}  {name:<38} {seconds:>11} {m['peak_rss_mib']:13.0f} {m['traced_peak_mib']:16.0f}")
    for (nq, ng) in dict.fromkeys(row[0] for row in rows):
        ref, mine = [m for s, _, m in rows if s == (nq, ng)]
        speedup = np.divide(ref["seconds"], mine["seconds"])
        speedup = "-".join(f"{x:.0f}" for x in speedup) if speedup.ndim else f"{speedup:.1f}"
        print(f"{nq}+{ng}: reid2 is {speedup}x faster, "
              f"{ref['traced_peak_mib'] / mine['traced_peak_mib']:.1f}x less traced memory")


if __name__ == "__main__":
    main()
