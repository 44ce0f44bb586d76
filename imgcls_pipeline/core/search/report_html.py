"""An evaluation report as one self-contained HTML page.

The figures are inside the page (base64 data URIs), so it opens from anywhere, offline, and can be
mailed or moved alone; the same PNGs also lie beside it for other tools.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from imgcls_pipeline.core.search.evaluation_store import (
    format_number,
    most_confused,
    per_class_rows,
    scalar_metrics,
)


def similarity_text(distance: float) -> str:
    """``sim 0.9754``: the cosine similarity (1 = identical) of two unit embeddings whose squared
    L2 distance is ``distance``, the number ``imgcls predict`` reports."""
    return f"sim {1.0 - distance / 2.0:.4f}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #666; }
"""


def evaluation_html(
    report: Mapping[str, Any],
    figures: Mapping[str, bytes],
    worst_rows: Sequence[Mapping[str, Any]],
) -> str:
    """``report`` is what ``evaluation_store.write_report`` wrote (metrics, ``split``, and
    ``settings`` or ``checkpoint``); ``figures`` maps a caption to its PNG bytes."""
    split = str(report.get("split", ""))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Evaluation: {escape(split)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation of the {escape(split)} split</h1>",
        _source(report),
        "<h2>Metrics</h2>",
        _table(["metric", "value"], [[k, v] for k, v in scalar_metrics(report).items()]),
    ]
    for caption, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts += [
            f"<h2>{escape(caption)}</h2>",
            f'<img alt="{escape(caption)}" src="data:image/png;base64,{data}">',
        ]
    confused = most_confused(report)
    if confused:
        parts += [
            "<h2>Most confused classes</h2>",
            _table(
                ["true class", "predicted as", "queries", "share of the true class"],
                [
                    [r["true_class"], r["predicted_class"], r["queries"], r["share"]]
                    for r in confused
                ],
            ),
        ]
    if worst_rows:
        parts += [
            "<h2>Worst queries, listed</h2>",
            '<p class="note">Wrong votes first, then the least confident; sim is the cosine '
            "similarity of the embeddings (1 = identical), as imgcls predict reports it.</p>",
            _table(
                ["query", "true class", "predicted", "confidence", "nearest gallery photos"],
                [
                    [
                        row["image_path"],
                        row["class_name"],
                        row["predicted"],
                        row["confidence"],
                        "; ".join(
                            f"{n['class_name']} ({similarity_text(n['distance'])}) {n['image_path']}"
                            for n in row["neighbours"]
                        ),
                    ]
                    for row in worst_rows
                ],
            ),
        ]
    classes = per_class_rows(report)
    if classes:
        parts += [
            "<h2>Per class (worst first)</h2>",
            _table(
                ["class", "queries", "accuracy", "recall@1"],
                [[r["class"], r["queries"], r["accuracy"], r["recall@1"]] for r in classes],
            ),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _source(report: Mapping[str, Any]) -> str:
    if "checkpoint" in report:
        return f'<p class="note">Checkpoint: {escape(str(report["checkpoint"]))}</p>'
    settings = report.get("settings")
    if isinstance(settings, Mapping) and settings:
        text = ", ".join(f"{k} = {v}" for k, v in settings.items())
        return f'<p class="note">Settings: {escape(text)}</p>'
    return ""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | None):
        return f"<td>{escape(str(value))}</td>"
    return f'<td class="number">{format_number(value)}</td>'
