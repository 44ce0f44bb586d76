from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from imgcls_pipeline.core.hardware import DeviceProps
from imgcls_pipeline.core.search import embedding, inference

RTX_3090 = DeviceProps("NVIDIA GeForce RTX 3090", 23.7, 8, 6)


def fake_checkpoint(hardware: object) -> dict:
    checkpoint = {"config": {"data": {"image_size": 32}}}
    if hardware is not None:
        checkpoint["hardware"] = hardware
    return checkpoint


@pytest.mark.parametrize(
    ("hardware", "dtype"),
    [
        ({"device": "cuda", "precision": "bf16"}, torch.bfloat16),  # use_bf16=true on a 3090
        ({"device": "cuda", "precision": "fp16"}, torch.float16),
        ({"device": "cpu", "precision": "fp32"}, None),
        (None, torch.float16),  # nothing recorded: the table's fp16 for a 3090
        ("not a dict", torch.float16),
    ],
)
def test_load_model_on_cuda_embeds_at_the_checkpoints_precision(monkeypatch, hardware, dtype):
    # No GPU needed: the model stays on the CPU and only the device's description is faked.
    monkeypatch.setattr(
        inference,
        "load_embedding_model",
        lambda path, device: (nn.Conv2d(3, 4, 3), fake_checkpoint(hardware)),
    )
    monkeypatch.setattr(embedding, "detect_device_props", lambda index: RTX_3090)
    loaded = inference.load_model("best_model.pt", torch.device("cuda", 0))
    assert (loaded.amp_dtype, loaded.channels_last, loaded.image_size) == (dtype, True, 32)


def test_load_model_on_the_cpu_ignores_the_recorded_gpu_precision(monkeypatch):
    checkpoint = fake_checkpoint({"device": "cuda", "precision": "bf16"})
    monkeypatch.setattr(
        inference, "load_embedding_model", lambda path, device: (nn.Conv2d(3, 4, 3), checkpoint)
    )
    loaded = inference.load_model("best_model.pt", torch.device("cpu"))
    assert (loaded.amp_dtype, loaded.channels_last) == (None, False)


class TinyEmbedder(nn.Module):
    """Not mirror-symmetric, with the attributes ``LoadedModel.transform`` reads."""

    mean, std, interpolation = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net(x), dim=1)


def test_classify_with_flip_tta_sees_a_photo_and_its_mirror_image_alike(tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from imgcls_pipeline.core.search.index import build_index

    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(tmp_path / "mirror.png")
    model = TinyEmbedder()
    model(torch.zeros(1, 3, 16, 16))  # materialise the lazy layer
    loaded = inference.LoadedModel(model, 16, torch.device("cpu"), {})
    gallery = pd.DataFrame({"image_path": ["a", "b", "c"], "class_name": ["x", "y", "z"]})
    index = build_index(np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32))
    paths = [tmp_path / "photo.png", tmp_path / "mirror.png"]

    def similarities(flip_tta: bool) -> list[list[float]]:
        found = inference.classify(loaded, index, gallery, paths, top_k=3, flip_tta=flip_tta)
        return [[n["similarity"] for n in p.neighbours] for p in found]

    photo, mirror = similarities(flip_tta=True)
    assert photo == pytest.approx(mirror, abs=1e-4)  # similarities are rounded to 4 decimals
    photo, mirror = similarities(flip_tta=False)
    assert photo != pytest.approx(mirror, abs=1e-3)


def test_classify_reranks_as_evaluation_does(tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from imgcls_pipeline.core.search.index import build_index, search
    from imgcls_pipeline.core.search.rerank import Reranker
    from imgcls_pipeline.core.settings import RerankSettings

    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    model = TinyEmbedder()
    model(torch.zeros(1, 3, 16, 16))
    loaded = inference.LoadedModel(model, 16, torch.device("cpu"), {})
    vectors = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery = pd.DataFrame({"image_path": list("abcdefgh"), "class_name": list("xyxyxyxy")})
    index = build_index(vectors)
    settings = RerankSettings(rerank="dba_alpha_qe", rerank_k=2, rerank_alpha=3.0)
    (found,) = inference.classify(
        loaded, index, gallery, [tmp_path / "photo.png"], top_k=8, rerank=settings
    )
    (plain,) = inference.classify(loaded, index, gallery, [tmp_path / "photo.png"], top_k=8)
    embedded = inference.compute_embeddings(
        model,
        [loaded.transform()(Image.open(tmp_path / "photo.png").convert("RGB"))[None]],
        torch.device("cpu"),
    )
    reranker = Reranker.build(index, settings)
    distances, rows = search(reranker.index, reranker.queries(embedded), 8)
    assert [n["image_path"] for n in found.neighbours] == [gallery.image_path[r] for r in rows[0]]
    # Cosine similarity of unit vectors from the squared L2 distance: 1 - d/2.
    expected = (1.0 - distances[0] / 2.0).tolist()
    assert [n["similarity"] for n in found.neighbours] == pytest.approx(expected, abs=1e-4)
    assert [n["similarity"] for n in found.neighbours] != pytest.approx(
        [n["similarity"] for n in plain.neighbours]
    )


def test_open_set_threshold_answers_unknown_below_the_nearest_similarity(tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from imgcls_pipeline.core.search.index import build_index

    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    (tmp_path / "notes.png").write_text("not a photo")
    model = TinyEmbedder()
    model(torch.zeros(1, 3, 16, 16))
    loaded = inference.LoadedModel(model, 16, torch.device("cpu"), {})
    gallery = pd.DataFrame({"image_path": ["a", "b"], "class_name": ["x", "y"]})
    index = build_index(np.random.default_rng(1).normal(size=(2, 6)).astype(np.float32))
    paths = [tmp_path / "photo.png", tmp_path / "notes.png"]

    def answer(threshold: float | None) -> list:
        return inference.classify(loaded, index, gallery, paths, open_set_threshold=threshold)

    (plain, broken) = answer(None)
    nearest = plain.neighbours[0]["similarity"]
    assert plain.predicted_class in {"x", "y"}
    assert answer(nearest - 0.01)[0].predicted_class == plain.predicted_class
    assert answer(nearest + 0.01)[0].predicted_class == "unknown"
    # A file that is no photo gets predict's own advice, not the data folder's.
    assert broken.error.startswith(f"cannot read {tmp_path / 'notes.png'} as a photo (")
    assert "leave it out" in broken.error and "manifest" not in broken.error


def test_a_photo_too_large_to_decode_is_told_to_be_shrunk_not_to_be_another_format():
    from PIL import Image

    from imgcls_pipeline.core.errors import UserError
    from imgcls_pipeline.core.search.inference import _unreadable

    try:
        try:
            raise Image.DecompressionBombError("Image size (196000000 pixels) exceeds limit")
        except Image.DecompressionBombError:
            raise UserError("data-folder advice") from None
    except UserError as error:
        sentence = _unreadable(Path("huge.png"), error)
    assert "shrink it" in sentence and "huge.png" in sentence
    assert "JPEG, PNG or other" not in sentence
