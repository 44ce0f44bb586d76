"""What a user sees of a training or an evaluation: PNG figures (the metrics tables are
``evaluation_store``'s; ``report_files`` writes the figures to disk).

Figures are drawn on matplotlib ``Figure`` objects (Agg canvas, no pyplot global state, safe in
threads) or with Pillow, and returned as PNG bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from imgcls_pipeline.core.data.images import load_rgb
from imgcls_pipeline.core.search.report_html import similarity_text

# Beyond these sizes per-cell numbers and class tick labels become unreadable clutter.
ANNOTATE_MAX_CLASSES = 20
TICK_LABEL_MAX_CLASSES = 60
_PAD = 6
_CAPTION_LINES = 2
_LINE_HEIGHT = 13
_GREY = (128, 128, 128)
_RED = (214, 39, 40)
_GREEN = (44, 160, 44)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str]
) -> bytes:
    return _png(confusion_matrix_figure(matrix, classes))


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str]
) -> Figure:
    """Rows = true class, columns = predicted; colour is the share of the row, so small classes
    stand out as much as large ones. Counts are written in the cells only for a few classes."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.3 * n, 20)
    fig = Figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= TICK_LABEL_MAX_CLASSES:
        size = 9 if n <= ANNOTATE_MAX_CLASSES else 6
        ax.set_xticks(range(n), labels=classes, rotation=90, fontsize=size)
        ax.set_yticks(range(n), labels=classes, fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= ANNOTATE_MAX_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[row, col] > 0.5 else "black"
                ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    return fig


def training_curve_png(metrics_frame: pd.DataFrame) -> bytes:
    return _png(training_curve_figure(metrics_frame))


def training_curve_figure(metrics_frame: pd.DataFrame) -> Figure:
    """Train loss, validation Recall@K, and the learning rate with the ArcFace margin, per epoch,
    from the training ``metrics.csv``; a dashed line marks where the phase (warm-up → fine-tune)
    changes. The learning rate is the backbone's (the head's is ``head_lr_multiplier`` times it)
    at the start of the epoch."""
    fig = Figure(figsize=(15, 4), dpi=100, layout="constrained")
    loss_ax, recall_ax, lr_ax = fig.subplots(1, 3, sharex=True)
    if metrics_frame.empty:
        loss_ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center")
        return fig
    epochs = pd.to_numeric(metrics_frame["epoch"], errors="coerce")
    loss_ax.plot(epochs, pd.to_numeric(metrics_frame["train_loss"], errors="coerce"), marker=".")
    loss_ax.set_title("train loss")
    for column in [c for c in metrics_frame.columns if c.startswith("val_recall@")]:
        values = pd.to_numeric(metrics_frame[column], errors="coerce")
        recall_ax.plot(epochs, values, marker=".", label=column.removeprefix("val_"))
    recall_ax.set_title("validation")
    recall_ax.set_ylim(0, 1.02)
    _plot_schedule(lr_ax, epochs, metrics_frame)
    if "phase" in metrics_frame:
        phase = metrics_frame["phase"]
        changed = phase.ne(phase.shift())
        changed.iloc[0] = False
        for epoch, name in zip(epochs[changed], phase[changed], strict=True):
            for ax in (loss_ax, recall_ax, lr_ax):
                ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=1, label=name)
    if recall_ax.has_data():
        recall_ax.legend(loc="lower right")
    for ax in (loss_ax, recall_ax, lr_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig


def _plot_schedule(ax: Axes, epochs: pd.Series, metrics_frame: pd.DataFrame) -> None:
    """The learning rate on ``ax``; the margin, whose scale differs, on a second y axis."""
    ax.set_title("learning rate and margin")
    if "lr" in metrics_frame:
        lr = pd.to_numeric(metrics_frame["lr"], errors="coerce")
        ax.plot(epochs, lr, marker=".", color="tab:purple", label="learning rate")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if "margin" in metrics_frame:
        margin_ax = ax.twinx()
        margin = pd.to_numeric(metrics_frame["margin"], errors="coerce")
        margin_ax.step(epochs, margin, where="mid", color="tab:orange", label="margin")
        margin_ax.set_ylabel("ArcFace margin")
        top = margin.max(skipna=True)
        margin_ax.set_ylim(0, max(float(top) if pd.notna(top) else 0.0, 0.1) * 1.15)
        handles = ax.get_lines() + margin_ax.get_lines()
        ax.legend(handles, [h.get_label() for h in handles], loc="upper right")


def worst_queries_png(
    rows: Sequence[Mapping[str, Any]], data_dir: str | os.PathLike[str], thumb: int = 96
) -> bytes:
    """One line per row of ``evaluation.worst_query_rows``: the query image, then its nearest
    gallery images captioned with class and similarity (as ``imgcls predict`` shows it); red
    frames mark wrong classes."""
    font = ImageFont.load_default()
    columns = 1 + max((len(row["neighbours"]) for row in rows), default=0)
    cell_w, cell_h = thumb + _PAD, thumb + _CAPTION_LINES * _LINE_HEIGHT + _PAD
    canvas = Image.new("RGB", (columns * cell_w + _PAD, max(len(rows), 1) * cell_h + _PAD), "white")
    draw = ImageDraw.Draw(canvas)
    if not rows:
        draw.text((_PAD, _PAD), "no queries", fill="black", font=font)
    for line, row in enumerate(rows):
        y = _PAD + line * cell_h
        query_ok = row["predicted"] == row["class_name"]
        captions = [f"true {row['class_name']}", f"pred {row['predicted']} {row['confidence']:.2f}"]
        _draw_cell(
            canvas,
            draw,
            font,
            (_PAD, y),
            thumb,
            Path(data_dir) / row["image_path"],
            captions,
            _GREEN if query_ok else _RED,
        )
        for column, neighbour in enumerate(row["neighbours"], start=1):
            same = neighbour["class_name"] == row["class_name"]
            captions = [str(neighbour["class_name"]), similarity_text(neighbour["distance"])]
            _draw_cell(
                canvas,
                draw,
                font,
                (_PAD + column * cell_w, y),
                thumb,
                Path(data_dir) / neighbour["image_path"],
                captions,
                _GREEN if same else _RED,
            )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _draw_cell(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    origin: tuple[int, int],
    thumb: int,
    path: Path,
    captions: list[str],
    frame_colour: tuple[int, int, int],
) -> None:
    x, y = origin
    image = open_thumbnail(path, thumb)
    canvas.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
    draw.rectangle((x - 2, y - 2, x + thumb + 1, y + thumb + 1), outline=frame_colour, width=2)
    for line, text in enumerate(captions):
        fitted = _fit(draw, font, text, thumb)
        draw.text((x, y + thumb + 2 + line * _LINE_HEIGHT), fitted, fill="black", font=font)


def _fit(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    text: str,
    width: int,
) -> str:
    """``text``, cut with '..' to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def open_thumbnail(path: str | os.PathLike[str], size: int) -> Image.Image:
    """An RGB thumbnail no larger than ``size``², upright per EXIF; a grey square if the file
    cannot be read (a report must not fail on one bad photo)."""
    try:
        image = load_rgb(path, size)
    except Exception:  # Pillow raises many exception types for broken files
        return Image.new("RGB", (size, size), _GREY)
    image.thumbnail((size, size))
    return image
