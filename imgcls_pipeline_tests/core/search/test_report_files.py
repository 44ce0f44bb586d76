import base64
import io
import os
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image

from imgcls_pipeline.core.search import evaluation_store, report_files
from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline_tests.imaging import write_photo

METRICS = {
    "recall@1": 0.8541666666666666,
    "accuracy": 0.75,
    "map@r": None,
    "num_queries": 4,
    "per_class": {
        "cat": {"accuracy": 1.0, "recall@1": 1.0, "count": 2},
        "<b>dog</b>": {"accuracy": 0.5, "recall@1": 0.5, "count": 2},
    },
    "confusion_matrix": [[1, 1], [0, 2]],
    "classes": ["<b>dog</b>", "cat"],
}


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image.size


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_an_evaluation_writes_its_figures_and_one_self_contained_page(tmp_path):
    write_photo(tmp_path / "data" / "dog" / "d1_1.jpg")
    worst = [
        {
            "image_path": "dog/d1_1.jpg",
            "class_name": "<b>dog</b>",
            "predicted": "cat",
            "confidence": 0.6,
            "neighbours": [{"image_path": "cat/c_1.jpg", "class_name": "cat", "distance": 0.25}],
        }
    ]
    path = evaluation_store.write_evaluation(
        tmp_path / "evaluation", "val", METRICS, min_val_recall_at_1=0.5
    )
    report = evaluation_store.read_evaluation(tmp_path / "evaluation", "val")
    files = report_files.write_evaluation_files(path, report, worst, tmp_path / "data")

    folder = tmp_path / "evaluation"
    assert sorted(p.name for p in folder.iterdir()) == [
        "val.html",
        "val.json",
        "val_confusion_matrix.png",
        "val_worst_queries.png",
    ]  # and no temporary file left behind
    for name in ("confusion_matrix", "worst_queries"):
        assert files.paths[name].read_bytes() == files.pngs[name]
        assert min(png_size(files.pngs[name])) > 50
    page = Page()
    page.feed(files.html.read_text(encoding="utf-8"))
    text = " ".join(page.text)
    # The figures are inside the page: it opens anywhere without the PNG files beside it.
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    assert embedded == [files.pngs["confusion_matrix"], files.pngs["worst_queries"]]
    assert "0.8542" in text and "0.8541666" not in text  # rounded like everywhere else
    assert "n/a" in text  # map@r was not measured
    assert "min_val_recall_at_1 = 0.5" in text
    # A class name is text, never markup.
    assert "b" not in page.tags and "<b>dog</b>" in text
    assert re.search(r"Most confused classes", text) and "dog/d1_1.jpg" in text
    # A neighbour's closeness is the similarity `imgcls predict` reports, not a bare "d=".
    assert "cat (sim 0.8750) cat/c_1.jpg" in text and "d=" not in text


def test_epoch_files_are_results_csv_and_the_curve(tmp_path):
    assert report_files.write_epoch_files(tmp_path).paths == {}  # nothing before an epoch
    rows = [
        {"epoch": e, "phase": "warmup", "margin": 0.0, "lr": 1e-3, "train_loss": 2.0 / e,
         "val_recall@1": 0.3 * e, "val_recall@5": 0.5, "seconds": 1.0}
        for e in (1, 2)
    ]  # fmt: skip
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, rows)
    files = report_files.write_epoch_files(tmp_path)
    assert files.paths == {"training_curve": tmp_path / report_files.CURVE}
    assert png_size((tmp_path / report_files.CURVE).read_bytes())[0] > 1000
    assert pd.read_csv(tmp_path / "results.csv")["elapsed_seconds"].tolist() == [1.0, 2.0]


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path):
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, [{"epoch": 1, "train_loss": 1.0,
                           "val_recall@1": 0.5, "seconds": 1.0}])  # fmt: skip
    left = [tmp_path / ".results.csv.abc123.tmp", tmp_path / ".training_curve.png.x.tmp"]
    for path in left:
        path.write_bytes(b"half")
    mine = tmp_path / ".latest_model.pt.x.tmp"  # not this module's: left to its owner
    mine.write_bytes(b"half")
    report_files.write_epoch_files(tmp_path)
    assert not any(path.exists() for path in left) and mine.exists()


def test_another_models_figures_are_removed_even_when_new_ones_cannot_be_drawn(
    tmp_path, monkeypatch
):
    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, [{"epoch": 1, "train_loss": 1.0,
                           "val_recall@1": 0.5, "seconds": 1.0}])  # fmt: skip
    old = [tmp_path / report_files.CONFUSION, tmp_path / report_files.WORST]
    for path in old:
        path.write_bytes(b"the previous model's figure")
        os.utime(path, ns=(1, 1))  # older than the new best_model.pt
    (tmp_path / ckpt.BEST).write_bytes(b"a newer model")

    def photos_gone(*args, **kwargs):
        raise RuntimeError("2 photos could not be read")

    monkeypatch.setattr(report_files, "write_best_model_files", photos_gone)
    with pytest.raises(RuntimeError):
        report_files.write_training_files(tmp_path, tmp_path, tmp_path, None)
    assert not any(path.exists() for path in old)


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    from imgcls_pipeline.core import atomic

    ckpt.write_metrics_csv(tmp_path / ckpt.METRICS, [{"epoch": 1, "train_loss": 1.0,
                           "val_recall@1": 0.5, "seconds": 1.0}])  # fmt: skip
    live = tmp_path / f".results.csv.{atomic._HOST}-{os.getpid()}.x.tmp"
    live.write_bytes(b"being written")
    report_files.write_epoch_files(tmp_path)
    assert live.exists()
