#!/usr/bin/env python
"""Check registered datasets before training on them: every image decoded once, boxes, ids and cameras validated.

Examples:
  python tools/check_dataset.py market1501_train market1501_test
  python tools/check_dataset.py cuhk_sysu_train cuhk_sysu_test prw_test
  REID2_DATASETS=/data python tools/check_dataset.py synthetic_market_test synthetic_cuhk_sysu_test

For each NAME (a re-ID or person-search set registered in reid2; datasets are read from $REID2_DATASETS,
default ./datasets) it reports as errors:
  - images that are missing, unreadable or truncated (each file is fully decoded once);
  - person search: a decoded size other than the record's height/width, and boxes of non-positive size or
    reaching outside the image (the loaders drop or clip those with a warning; here they are errors to fix);
  - ids that are not integers >= -1 (re-ID pid, person-search person_id; -1 = junk / unlabelled);
  - cameras: camid not an integer >= 0 where the dataset has cameras (person-search sets without cameras use -1);
  - queries: re-ID query ids absent from the gallery (protocols market, cuhk03_classic, split_average); person
    search query boxes outside their image and queries whose gallery holds no box of the person.
It prints a summary table (one row per dataset) and the first errors of each kind, and exits 1 when any
dataset has an error, 2 on a usage error (an unregistered name).
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import logging
import sys
from collections import OrderedDict

logger = logging.getLogger("reid2.check_dataset")
# protocols whose every query needs its identity in the gallery (else the query has no true match)
QUERY_IN_GALLERY_PROTOCOLS = ("market", "cuhk03_classic", "split_average")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", metavar="NAME", help="registered dataset names (see reid2.data.datasets)")
    p.add_argument("--max-errors", type=int, default=5, metavar="N", help="errors listed per kind (default 5)")
    return p


class Report:
    """Counts and the first messages of each kind of error of one dataset."""

    def __init__(self, name, max_errors):
        self.name, self.max_errors = name, max_errors
        self.counts = OrderedDict()
        self.errors = OrderedDict()  # kind → [messages]

    def count(self, key, n=1):
        self.counts[key] = self.counts.get(key, 0) + n

    def error(self, kind, message):
        messages = self.errors.setdefault(kind, [])
        self.count("errors")
        if len(messages) < self.max_errors:
            messages.append(message)
        elif len(messages) == self.max_errors:
            messages.append("...")

    @property
    def num_errors(self):
        return self.counts.get("errors", 0)


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _decode(report, file_name):
    """(width, height) of the decoded image, or None after recording the error."""
    from reid2.utils.files import read_image_rgb

    try:
        img = read_image_rgb(file_name)
    except OSError as e:
        report.error("images", str(e))
        return None
    return img.size


def _check_images(report, files):
    sizes = {}
    for file_name in sorted(set(files)):
        sizes[file_name] = _decode(report, file_name)
    report.count("images", len(sizes))
    return sizes


def _check_cameras(report, records):
    camids = [r.get("camid", -1) for r in records]
    if all(c == -1 for c in camids) and "pid" not in records[0]:
        return  # a person-search set without cameras (CUHK-SYSU)
    for r, camid in zip(records, camids):
        if not _is_int(camid, 0):
            report.error("cameras", f"{r['file_name']}: camid {camid!r} (expected an int >= 0)")
    report.count("cameras", len({c for c in camids if isinstance(c, int)}))


def check_reid(report, dicts, metadata):
    _check_images(report, [d["file_name"] for d in dicts])
    for d in dicts:
        if not _is_int(d.get("pid"), -1):
            report.error("ids", f"{d['file_name']}: pid {d.get('pid')!r} (expected an int >= -1)")
    report.count("ids", len({d.get("pid") for d in dicts}))
    _check_cameras(report, dicts)
    query = [d for d in dicts if d.get("split") == "query"]
    report.count("queries", len(query))
    if query and metadata.get("protocol", "market") in QUERY_IN_GALLERY_PROTOCOLS:
        gallery_pids = {d.get("pid") for d in dicts if d.get("split") == "gallery"}
        for d in query:
            if d.get("pid") not in gallery_pids:
                report.error("queries", f"{d['file_name']}: query pid {d.get('pid')} has no gallery image")


def check_person_search(report, name, dicts, metadata):
    sizes = _check_images(report, [r["file_name"] for r in dicts])
    boxes = 0
    for r in dicts:
        size = sizes.get(r["file_name"])
        if size is not None and size != (r.get("width"), r.get("height")):
            report.error("sizes", f"{r['file_name']}: decoded {size[0]}x{size[1]}, annotated "
                         f"{r.get('width')}x{r.get('height')}")
        for box, action in r.get("bad_boxes", []):
            report.error("boxes", f"{r['file_name']}: box {box} (the loader: {action})")
        boxes += len(r["annotations"]) + len(r.get("bad_boxes", []))
        for ann in r["annotations"]:
            if not _is_int(ann.get("person_id"), -1):
                report.error("ids", f"{r['file_name']}: person_id {ann.get('person_id')!r} (expected an int >= -1)")
    report.count("boxes", boxes)
    report.count("ids", len({a.get("person_id") for r in dicts for a in r["annotations"]} - {-1}))
    _check_cameras(report, dicts)
    if metadata.get("query_loader") is None:
        return
    from reid2.evaluation.protocols import get_queries

    try:
        queries = get_queries(name)
    except (OSError, ValueError) as e:
        report.error("queries", str(e))
        return
    report.count("queries", len(queries))
    for number, q in enumerate(queries):
        if all(entry["box"] is None for entry in q["gallery"]):
            report.error("queries", f"query {number} ({q['query'].get('file_name')}, pid {q['query'].get('pid')}): "
                         "no gallery image holds the person")


def check(name, max_errors=5) -> Report:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    report = Report(name, max_errors)
    try:
        dicts = DatasetCatalog.get(name)
    except (OSError, ValueError, KeyError) as e:
        report.error("loading", f"{type(e).__name__}: {e}")
        return report
    report.kind = "person search" if dicts and "annotations" in dicts[0] else "re-ID"
    if not dicts:
        report.error("loading", "the dataset is empty")
        return report
    metadata = MetadataCatalog.get(name)
    if report.kind == "re-ID":
        check_reid(report, dicts, metadata)
    else:
        check_person_search(report, name, dicts, metadata)
    return report


COLUMNS = ("images", "boxes", "ids", "cameras", "queries", "errors")


def format_table(reports) -> str:
    rows = [("dataset", "kind", *COLUMNS)]
    for r in reports:
        rows.append((r.name, getattr(r, "kind", "?"), *(str(r.counts.get(c, "-")) for c in COLUMNS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from detectron2.data import DatasetCatalog
    from detectron2.utils.logger import setup_logger

    import reid2.data  # noqa: F401  (registers the datasets)

    setup_logger(name="reid2", abbrev_name="reid2")
    unknown = [n for n in args.names if n not in DatasetCatalog.list()]
    if unknown:
        print(f"error: not a registered dataset: {', '.join(unknown)} (registered: "
              f"{', '.join(sorted(DatasetCatalog.list()))})", file=sys.stderr)
        return 2
    reports = [check(name, args.max_errors) for name in args.names]
    print(format_table(reports))
    for r in reports:
        for kind, messages in r.errors.items():
            print(f"\n{r.name}: {kind} errors:")
            print("\n".join(f"  {m}" for m in messages))
    bad = [r.name for r in reports if r.num_errors]
    print(f"\n{len(reports) - len(bad)} of {len(reports)} datasets clean" + (f"; errors in {', '.join(bad)}" if bad
                                                                                else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
