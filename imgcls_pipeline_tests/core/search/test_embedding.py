from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imgcls_pipeline.core.search.embedding import compute_embeddings, inference_settings
from imgcls_pipeline.core.settings import ModelConfig

CPU = torch.device("cpu")


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    # BatchNorm and Dropout behave differently in train mode, so they reveal a missing eval().
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4, 8),
    )


def images(n: int = 10) -> torch.Tensor:
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def expected(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = model(x)
    return (out / out.norm(dim=1, keepdim=True)).numpy()


def test_rows_are_unit_float32_embeddings_in_loader_order():
    model, x = tiny_model(), images()
    loader = DataLoader(TensorDataset(x, torch.arange(10)), batch_size=3)  # (images, labels)
    embeddings = compute_embeddings(model, loader, CPU)
    assert embeddings.dtype == np.float32 and embeddings.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(embeddings, expected(model, x), atol=1e-6)


def test_loader_of_bare_tensors_and_tuples_give_the_same_result():
    model, x = tiny_model(), images()
    pairs = [(x[i : i + 4], "labels") for i in range(0, 10, 4)]
    bare = [x[i : i + 4] for i in range(0, 10, 4)]
    np.testing.assert_array_equal(
        compute_embeddings(model, pairs, CPU), compute_embeddings(model, bare, CPU)
    )


def test_model_mode_is_restored():
    model = tiny_model().train()
    compute_embeddings(model, [images(2)], CPU)
    assert model.training
    model.eval()
    compute_embeddings(model, [images(2)], CPU)
    assert not model.training


def test_amp_is_ignored_on_cpu_and_channels_last_changes_nothing():
    model, x = tiny_model(), images()
    plain = compute_embeddings(model, [x], CPU)
    tuned = compute_embeddings(model, [x], CPU, amp_dtype=torch.bfloat16, channels_last=True)
    np.testing.assert_allclose(tuned, plain, atol=1e-6)


def test_progress_bar_does_not_change_the_result(capsys):
    model, x = tiny_model(), images()
    np.testing.assert_array_equal(
        compute_embeddings(model, [x], CPU, progress=True), compute_embeddings(model, [x], CPU)
    )
    assert "embedding" in capsys.readouterr().err


def test_empty_loader_gives_an_empty_array():
    assert compute_embeddings(tiny_model(), [], CPU).shape == (0, 0)


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16), ((7, 5), torch.float16)],
)
def test_inference_settings_on_cuda_follow_compute_capability(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert inference_settings(torch.device("cuda")) == (dtype, True)


def test_inference_settings_on_cpu_are_full_precision():
    assert inference_settings(CPU) == (None, False)


def test_with_the_pipeline_embedding_model():
    model_module = pytest.importorskip("imgcls_pipeline.core.training.model")
    config = ModelConfig(backbone="test_efficientnet", pretrained=False, embedding_dim=16)
    model = model_module.build_embedding_model(config)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    embeddings = compute_embeddings(model, [x[:2], x[2:]], CPU)
    assert embeddings.shape == (5, 16)
    np.testing.assert_allclose(embeddings, expected(model, x), atol=1e-5)
