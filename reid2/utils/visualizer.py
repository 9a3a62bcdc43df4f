"""Pictures of re-ID and person-search results (PIL; matplotlib for curves), with sizes fixed by the layout.

* :func:`rank_grid`: one row per query: the query crop, then its top-k gallery crops, each framed green
  (correct) / red (wrong) / grey (unknown) with the distance under it. Size: :func:`rank_grid_size`.
* :func:`search_grid`: one row per query: the query crop, then the top-k gallery scenes (letter-boxed into a
  fixed cell) with the matched box drawn and its similarity. Size: :func:`search_grid_size`.
* :func:`draw_detections`: boxes and scores on a scene (same size as the scene).
* :func:`plot_cmc`: CMC curves of several result sets in one PNG of ``figsize × dpi`` pixels.
"""
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["GREEN", "RED", "GREY", "rank_grid", "rank_grid_size", "search_grid", "search_grid_size",
           "draw_detections", "plot_cmc", "letterbox", "RankCell", "SearchCell"]

GREEN, RED, GREY, BLUE = (0, 170, 0), (220, 0, 0), (150, 150, 150), (30, 90, 255)
BORDER, PAD, GAP, TEXT_H = 3, 4, 12, 14


def _font():
    return ImageFont.load_default()


def _text(draw, xy, text, fill=(0, 0, 0)):
    draw.text(xy, text, fill=fill, font=_font())


def _framed(img: Image.Image, size, color) -> Image.Image:
    """``img`` resized to ``size`` (w, h) with a ``BORDER``-pixel frame of ``color`` around it."""
    w, h = size
    out = Image.new("RGB", (w + 2 * BORDER, h + 2 * BORDER), color)
    out.paste(img.convert("RGB").resize((w, h), Image.BILINEAR), (BORDER, BORDER))
    return out


def letterbox(img: Image.Image, size, fill=(255, 255, 255)):
    """``img`` scaled to fit ``size`` (w, h), centred on ``fill``; returns (image, scale, (dx, dy))."""
    w, h = size
    scale = min(w / img.width, h / img.height)
    nw, nh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    out = Image.new("RGB", (w, h), fill)
    dx, dy = (w - nw) // 2, (h - nh) // 2
    out.paste(img.convert("RGB").resize((nw, nh), Image.BILINEAR), (dx, dy))
    return out, scale, (dx, dy)


class RankCell:
    """One gallery item of a ranked list: image (file or PIL), value shown under it, correctness (None = unknown)."""

    def __init__(self, image, value: float, correct: Optional[bool] = None, label: str = ""):
        self.image, self.value, self.correct, self.label = image, value, correct, label


def _open(image):
    if isinstance(image, Image.Image):
        return image
    with Image.open(image) as img:
        return img.convert("RGB")


def _color(correct):
    return GREY if correct is None else (GREEN if correct else RED)


def rank_grid_size(num_rows: int, topk: int, cell=(64, 128)):
    """(width, height) of :func:`rank_grid`'s image."""
    cw, ch = cell[0] + 2 * BORDER, cell[1] + 2 * BORDER + TEXT_H
    return PAD + cw + GAP + topk * (cw + PAD), PAD + num_rows * (ch + PAD)


def rank_grid(queries: Sequence, ranked: Sequence[Sequence[RankCell]], topk: int, cell=(64, 128),
              value_fmt="{:.3f}", query_labels: Sequence[str] = None) -> Image.Image:
    """Query crops (files or PIL) and their ranked gallery cells (only the first ``topk`` are drawn)."""
    width, height = rank_grid_size(len(queries), topk, cell)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    cw, ch = cell[0] + 2 * BORDER, cell[1] + 2 * BORDER + TEXT_H
    for row, (query, cells) in enumerate(zip(queries, ranked)):
        y = PAD + row * (ch + PAD)
        canvas.paste(_framed(_open(query), cell, BLUE), (PAD, y))
        label = query_labels[row] if query_labels else "query"
        _text(draw, (PAD + 2, y + cell[1] + 2 * BORDER + 1), label[:10], BLUE)
        for k, c in enumerate(list(cells)[:topk]):
            x = PAD + cw + GAP + k * (cw + PAD)
            canvas.paste(_framed(_open(c.image), cell, _color(c.correct)), (x, y))
            _text(draw, (x + 2, y + cell[1] + 2 * BORDER + 1), (c.label or value_fmt.format(c.value))[:10],
                  _color(c.correct))
    return canvas


class SearchCell:
    """One gallery scene of a search result: image, matched box (xyxy, original pixels) or None, similarity,
    correctness, and optionally the ground-truth box (drawn dashed-thin in blue)."""

    def __init__(self, image, box, similarity: float, correct: Optional[bool] = None, gt_box=None):
        self.image, self.box, self.similarity, self.correct, self.gt_box = image, box, similarity, correct, gt_box


def search_grid_size(num_rows: int, topk: int, scene=(240, 180), query_width=None):
    """(width, height) of :func:`search_grid`'s image; the query crop cell is ``query_width`` × scene height
    (default: scene height / 2)."""
    qw = query_width or scene[1] // 2
    sw, sh = scene[0] + 2 * BORDER, scene[1] + 2 * BORDER + TEXT_H
    return PAD + qw + 2 * BORDER + GAP + topk * (sw + PAD), PAD + num_rows * (sh + PAD)


def search_grid(query_crops: Sequence, ranked: Sequence[Sequence[SearchCell]], topk: int, scene=(240, 180),
                query_width=None) -> Image.Image:
    """Query crops beside their top-k gallery scenes (letter-boxed, matched box green/red, similarity below)."""
    qw = query_width or scene[1] // 2
    width, height = search_grid_size(len(query_crops), topk, scene, qw)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    sw, sh = scene[0] + 2 * BORDER, scene[1] + 2 * BORDER + TEXT_H
    for row, (query, cells) in enumerate(zip(query_crops, ranked)):
        y = PAD + row * (sh + PAD)
        crop, _, _ = letterbox(_open(query), (qw, scene[1]))
        canvas.paste(_framed(crop, (qw, scene[1]), BLUE), (PAD, y))
        _text(draw, (PAD + 2, y + scene[1] + 2 * BORDER + 1), "query", BLUE)
        for k, c in enumerate(list(cells)[:topk]):
            x = PAD + qw + 2 * BORDER + GAP + k * (sw + PAD)
            img, scale, (dx, dy) = letterbox(_open(c.image), scene)
            d = ImageDraw.Draw(img)
            if c.gt_box is not None:
                d.rectangle(_scaled(c.gt_box, scale, dx, dy), outline=BLUE, width=1)
            if c.box is not None:
                d.rectangle(_scaled(c.box, scale, dx, dy), outline=_color(c.correct), width=3)
            canvas.paste(_framed(img, scene, _color(c.correct)), (x, y))
            _text(draw, (x + 2, y + scene[1] + 2 * BORDER + 1), f"sim {c.similarity:.3f}", _color(c.correct))
    return canvas


def _scaled(box, scale, dx, dy):
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1 * scale + dx, y1 * scale + dy, x2 * scale + dx, y2 * scale + dy]


def draw_detections(image, boxes, scores, det_thresh=0.5, labels: List[str] = None, color=GREEN) -> Image.Image:
    """A copy of the scene with every detection scored >= ``det_thresh`` drawn with its score (or label)."""
    img = _open(image).copy()
    draw = ImageDraw.Draw(img)
    boxes, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores).reshape(-1)
    for i in np.argsort(-scores):
        if scores[i] < det_thresh:
            continue
        x1, y1, x2, y2 = boxes[i]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        text = labels[i] if labels else f"{scores[i]:.2f}"
        tw = 6 * len(text) + 2
        draw.rectangle([x1, max(0, y1 - TEXT_H), x1 + tw, max(0, y1 - TEXT_H) + TEXT_H - 2], fill=color)
        _text(draw, (x1 + 1, max(0, y1 - TEXT_H)), text, (255, 255, 255))
    return img


def plot_cmc(curves: dict, path, max_rank=50, title="CMC", figsize=(6.4, 4.8), dpi=100):
    """Plot ``{label: cmc array (fraction or percent)}`` for ranks 1..max_rank into a PNG of exactly
    ``figsize × dpi`` pixels (640 × 480 by default); returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    for label, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=np.float64).reshape(-1)[:max_rank]
        if cmc.size and cmc.max() <= 1.0 + 1e-9:
            cmc = 100.0 * cmc
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, cmc, marker="o" if len(cmc) <= 20 else None, markersize=3,
                label=f"{label} (R1 {cmc[0]:.1f}%)" if len(cmc) else label)
    ax.set_xlim(1, max_rank)
    ax.set_ylim(0, 100)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
