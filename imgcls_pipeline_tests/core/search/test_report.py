from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from imgcls_pipeline.core.search import report
from imgcls_pipeline_tests.imaging import write_photo


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()
    return image


def tick_labels(axis) -> list[str]:
    return [label.get_text() for label in axis.get_ticklabels()]


def test_confusion_matrix_shows_true_rows_predicted_columns_and_counts():
    fig = report.confusion_matrix_figure([[3, 1], [0, 4]], ["cat", "dog"])
    ax = fig.axes[0]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("true class", "predicted class")
    assert tick_labels(ax.xaxis) == tick_labels(ax.yaxis) == ["cat", "dog"]
    # Counts sit in their cells (x = predicted column, y = true row); empty cells stay blank.
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert cells == {(0, 0): "3", (0, 1): "1", (1, 1): "4"}
    # Colour is the share of the true class: cat's row is 3/4 and 1/4, dog's 0 and 1.
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25], [0.0, 1.0]])
    decode(report.confusion_matrix_png([[3, 1], [0, 4]], ["cat", "dog"]))


def test_confusion_matrix_of_many_classes_drops_unreadable_labels_and_counts():
    many = [f"class_{i}" for i in range(150)]
    ax = report.confusion_matrix_figure(np.eye(150, dtype=int) * 5, many).axes[0]
    assert tick_labels(ax.xaxis) == [] and len(ax.texts) == 0
    forty = [f"class_{i}" for i in range(40)]
    ax = report.confusion_matrix_figure(np.eye(40, dtype=int), forty).axes[0]
    assert tick_labels(ax.yaxis) == forty and len(ax.texts) == 0


def test_training_curve_plots_loss_recall_and_the_phase_change():
    frame = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "phase": ["warmup", "warmup", "finetune", "finetune"],
            "margin": [0.0, 0.0, 0.5, 0.5],
            "lr": [1e-4] * 4,
            "train_loss": [5.0, 4.0, 6.0, 3.0],
            "val_recall@1": [0.2, 0.4, 0.5, None],
            "val_recall@5": [0.5, 0.6, 0.7, 0.8],
            "seconds": [10.0] * 4,
        }
    )
    loss_ax, recall_ax = report.training_curve_figure(frame).axes[:2]
    assert (loss_ax.get_title(), recall_ax.get_title()) == ("train loss", "validation")
    loss_line = loss_ax.get_lines()[0]
    assert list(loss_line.get_ydata()) == [5.0, 4.0, 6.0, 3.0]
    lines = {line.get_label(): line for line in recall_ax.get_lines()}
    assert list(lines["recall@5"].get_ydata()) == [0.5, 0.6, 0.7, 0.8]
    assert np.isnan(lines["recall@1"].get_ydata()[3])  # a missing value is a gap, not a zero
    # The fine-tune phase starts between epochs 2 and 3, on both panels.
    assert list(lines["finetune"].get_xdata()) == [2.5, 2.5]
    assert [t.get_text() for t in recall_ax.get_legend().get_texts()] == [
        "recall@1",
        "recall@5",
        "finetune",
    ]
    decode(report.training_curve_png(frame))


def test_training_curve_draws_the_learning_rate_and_the_margin_schedule():
    frame = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "phase": ["warmup", "finetune", "finetune"],
            "margin": [0.0, 0.5, 0.5],
            "lr": [1e-3, 5e-4, 1e-4],
            "train_loss": [3.0, 2.0, 1.0],
            "val_recall@1": [0.2, 0.4, 0.5],
        }
    )
    fig = report.training_curve_figure(frame)
    lr_ax = fig.axes[2]
    assert lr_ax.get_title() == "learning rate and margin"
    lines = {line.get_label(): line for line in lr_ax.get_lines()}
    assert list(lines["learning rate"].get_ydata()) == [1e-3, 5e-4, 1e-4]
    assert lines["finetune"].get_xdata()[0] == 1.5  # the phase change is marked here too
    (margin_ax,) = [ax for ax in fig.axes[3:] if ax.get_shared_x_axes().joined(ax, lr_ax)]
    assert list(margin_ax.get_lines()[0].get_ydata()) == [0.0, 0.5, 0.5]
    legend = [t.get_text() for t in lr_ax.get_legend().get_texts()]
    assert legend == ["learning rate", "margin"]


def test_training_curve_before_the_first_epoch_says_so():
    empty = pd.DataFrame(columns=["epoch", "phase", "train_loss", "val_recall@1"])
    loss_ax = report.training_curve_figure(empty).axes[0]
    assert [t.get_text() for t in loss_ax.texts] == ["no epochs yet"]
    decode(report.training_curve_png(empty))


def worst_rows(data_dir) -> list[dict]:
    write_photo(data_dir / "cat" / "c1_1.jpg", size=(300, 200), colour=(200, 40, 40))
    write_photo(data_dir / "dog" / "d1_1.png", colour=(40, 40, 200))
    neighbours = [
        {"image_path": "dog/d1_1.png", "class_name": "dog", "distance": 0.4},
        {
            "image_path": "cat/missing_1.jpg",
            "class_name": "a very long class name indeed",
            "distance": 0.61,
        },
    ]
    return [
        {
            "image_path": "cat/c1_1.jpg",
            "class_name": "cat",
            "predicted": "dog",
            "confidence": 0.7,
            "neighbours": neighbours,
        },
        {
            "image_path": "cat/gone_1.jpg",
            "class_name": "cat",
            "predicted": "cat",
            "confidence": 0.9,
            "neighbours": neighbours[:1],
        },
    ]


def test_worst_queries_png_draws_one_line_per_query_and_survives_missing_files(tmp_path):
    image = decode(report.worst_queries_png(worst_rows(tmp_path), tmp_path, thumb=64))
    cell_w, cell_h = 64 + 6, 64 + 2 * 13 + 6
    assert image.size == (3 * cell_w + 6, 2 * cell_h + 6)
    pixels = np.asarray(image.convert("RGB"))
    # The first query is reddish; the missing one is a grey placeholder.
    first = pixels[6 + 16 : 6 + 48, 6 + 16 : 6 + 48].mean(axis=(0, 1))
    assert first[0] > first[2] + 60
    placeholder = pixels[6 + cell_h + 16 : 6 + cell_h + 48, 6 + 16 : 6 + 48]
    assert (placeholder == 128).all()
    # The wrongly voted query is framed red, the right one green.
    assert tuple(pixels[6 + 32, 5]) == (214, 39, 40)
    assert tuple(pixels[6 + cell_h + 32, 5]) == (44, 160, 44)


def test_worst_queries_png_without_rows_is_not_a_blank_image(tmp_path):
    pixels = np.asarray(decode(report.worst_queries_png([], tmp_path)).convert("L"))
    assert (pixels < 100).any()  # the "no queries" note


def test_open_thumbnail_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    Image.new("RGB", (200, 100), "red").save(path, exif=exif)
    assert report.open_thumbnail(path, 50).size == (25, 50)


def test_open_thumbnail_turns_any_mode_into_rgb(tmp_path):
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("I;16", (40, 40), 30000).save(tmp_path / "deep.png")
    Image.new("P", (40, 40), 3).save(tmp_path / "palette.gif")
    for name in ["clear.png", "deep.png", "palette.gif"]:
        assert report.open_thumbnail(tmp_path / name, 32).mode == "RGB"
    assert report.open_thumbnail(tmp_path / "clear.png", 32).getpixel((0, 0)) == (255, 255, 255)


def test_open_thumbnail_shrinks_big_jpegs_and_replaces_broken_files(tmp_path):
    write_photo(tmp_path / "big.jpg", size=(3000, 2000))
    assert report.open_thumbnail(tmp_path / "big.jpg", 96).size == (96, 64)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert report.open_thumbnail(tmp_path / "broken.jpg", 96).getpixel((5, 5)) == (128, 128, 128)
