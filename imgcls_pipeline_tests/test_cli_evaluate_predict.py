"""``imgcls evaluate`` / ``predict`` without --checkpoint use ``$IMGCLS_CHECKPOINT_DIR``'s model,
as the assets do, and refuse a split they cannot evaluate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from imgcls_pipeline.cli import main
from imgcls_pipeline.core.hashing import file_sha256
from imgcls_pipeline.core.search import index as search


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_evaluate_takes_its_default_checkpoint_from_the_checkpoint_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMGCLS_CHECKPOINT_DIR", str(tmp_path / "my_checkpoints"))
    assert main(["evaluate"]) == 2
    expected = tmp_path / "my_checkpoints" / "best_model.pt"
    assert one_error_line(capsys) == (
        f"error: No trained model at {expected}: run `imgcls train` first, or pass "
        "--checkpoint FILE to use another one."
    )


def test_predict_takes_its_default_checkpoint_from_the_checkpoint_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gallery = np.eye(3, 8, dtype=np.float32)
    frame = pd.DataFrame(
        {
            "image_path": ["a/1.jpg", "b/2.jpg", "c/3.jpg"],
            "class_name": ["a", "b", "c"],
            "object_id": ["1", "2", "3"],
        }
    )
    search.save_index(
        search.build_index(gallery),
        frame,
        tmp_path / "artifacts" / search.FOLDER,
        checkpoint="somewhere/best_model.pt",
        checkpoint_sha256="ab" * 32,
        index_type="flat",
    )
    monkeypatch.setenv("IMGCLS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("IMGCLS_CHECKPOINT_DIR", str(tmp_path / "my_checkpoints"))
    assert main(["predict", "photo.jpg"]) == 2
    expected = tmp_path / "my_checkpoints" / "best_model.pt"
    assert one_error_line(capsys) == (
        f"error: No trained model at {expected}: run `imgcls train` first, or pass "
        "--checkpoint FILE to use another one."
    )


def test_evaluate_names_the_splits_it_can_evaluate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--split", "train"]) == 2
    assert one_error_line(capsys) == "error: --split must be one of val, test, not 'train'."


@pytest.mark.parametrize("gallery_tta", [False, True])
def test_predict_embeds_queries_as_the_gallery_was_embedded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gallery_tta: bool,
) -> None:
    from imgcls_pipeline.core.search import inference

    frame = pd.DataFrame({"image_path": ["a/1.jpg"], "class_name": ["a"], "object_id": ["1"]})
    folder = tmp_path / "index"
    (tmp_path / "best_model.pt").write_bytes(b"weights")
    search.save_index(
        search.build_index(np.eye(1, 8, dtype=np.float32)),
        frame,
        folder,
        checkpoint="x/best_model.pt",
        checkpoint_sha256=file_sha256(tmp_path / "best_model.pt"),
        index_type="flat",
        flip_tta=gallery_tta,
    )
    (tmp_path / "photo.jpg").write_bytes(b"")
    seen = {}
    # A model of the index's embedding size (predict checks it before searching).
    model = SimpleNamespace(model=SimpleNamespace(embedding_dim=8))
    monkeypatch.setattr(inference, "load_model", lambda checkpoint: model)
    monkeypatch.setattr(inference, "classify", lambda *args, **kwargs: seen.update(kwargs) or [])
    # The settings file says the opposite of the index: the index wins, or similarities would
    # be skewed; the flag itself is refused.
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"flip_tta: {'false' if gallery_tta else 'true'}\n")
    tokens = [
        "predict",
        "--index_dir",
        str(folder),
        "--checkpoint",
        str(tmp_path / "best_model.pt"),
        "--settings",
        str(settings),
        str(tmp_path / "photo.jpg"),
    ]
    assert main(tokens) == 0
    assert seen["flip_tta"] is gallery_tta
    assert main([*tokens, "--flip_tta", "true"]) == 2
    assert "which its info.json records" in capsys.readouterr().err


def test_an_unknown_answer_shows_the_nearest_similarity_not_the_turned_down_vote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from imgcls_pipeline.cli.predict import _print_predictions

    neighbour = {"class_name": "circle", "similarity": 0.9927, "image_path": "circle/c1_1.jpg"}
    rows = [
        {"image_path": "q.jpg", "predicted_class": "unknown", "confidence": 1.0, "error": None},
        {"image_path": "k.jpg", "predicted_class": "circle", "confidence": 0.75, "error": None},
    ]
    _print_predictions([{**row, "neighbours": [neighbour]} for row in rows])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "q.jpg: unknown (nearest similarity 0.9927, below --open_set_threshold)"
    assert lines[2] == "k.jpg: circle (confidence 0.75)"
