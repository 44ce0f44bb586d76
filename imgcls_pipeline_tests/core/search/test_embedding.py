from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imgcls_pipeline.core.hardware import DeviceProps
from imgcls_pipeline.core.search import embedding
from imgcls_pipeline.core.search.embedding import (
    Interrupted,
    compute_embeddings,
    inference_precision,
    inference_settings,
)
from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training.model import build_embedding_model

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


def test_progress_bar_does_not_change_the_result(capsys, monkeypatch):
    from imgcls_pipeline.core import progress

    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    model, x = tiny_model(), images()
    np.testing.assert_array_equal(
        compute_embeddings(model, [x], CPU, progress=True, desc="embedding val"),
        compute_embeddings(model, [x], CPU),
    )
    assert "embedding val: 100%" in capsys.readouterr().err


def test_empty_loader_gives_no_rows_of_the_models_width():
    config = ModelConfig(backbone="test_efficientnet", pretrained=False, embedding_dim=16)
    assert compute_embeddings(build_embedding_model(config), [], CPU).shape == (0, 16)
    assert compute_embeddings(tiny_model(), [], CPU).shape == (0, 0)  # width unknown


def test_stop_request_interrupts_before_the_next_batch_and_restores_the_mode():
    model, x = tiny_model().train(), images()
    seen = []

    def should_stop() -> bool:
        seen.append(True)
        return len(seen) == 2

    with pytest.raises(Interrupted):
        compute_embeddings(model, [x[:3], x[3:6], x[6:]], CPU, should_stop=should_stop)
    assert len(seen) == 2 and model.training


@pytest.mark.parametrize(
    ("props", "dtype"),
    [
        (DeviceProps("NVIDIA A100-SXM4-80GB", 79.2, 8, 0), torch.bfloat16),
        (DeviceProps("NVIDIA H100 80GB HBM3", 79.1, 9, 0), torch.bfloat16),
        # The table trains an RTX 3090 in fp16 although it is Ampere: it embeds in fp16 too.
        (DeviceProps("NVIDIA GeForce RTX 3090", 23.7, 8, 6), torch.float16),
        (DeviceProps("Tesla T4", 14.6, 7, 5), torch.float16),
    ],
)
def test_inference_precision_follows_the_training_table(monkeypatch, props, dtype):
    asked = []
    monkeypatch.setattr(
        embedding, "detect_device_props", lambda index: asked.append(index) or props
    )
    assert inference_settings(torch.device("cuda", 1)) == (dtype, True)
    assert asked == [1]


A100 = DeviceProps("NVIDIA A100-SXM4-80GB", 79.2, 8, 0)
RTX_3090 = DeviceProps("NVIDIA GeForce RTX 3090", 23.7, 8, 6)
T4 = DeviceProps("Tesla T4", 14.6, 7, 5)


@pytest.mark.parametrize(
    ("props", "trained", "expected"),
    [
        (RTX_3090, "bf16", "bf16"),  # trained with use_bf16=true, not the table's fp16
        (A100, "fp16", "fp16"),  # trained with use_bf16=false
        (A100, "fp32", "fp32"),  # trained on the CPU: validated in fp32
        (A100, None, "bf16"),  # a checkpoint without the record: the table
        (A100, "int8", "bf16"),  # not a precision of the table: the table
        (T4, "bf16", "fp16"),  # an A100 run on a pre-Ampere card: no fast bf16 there
        (None, "bf16", "fp32"),  # no CUDA device
    ],
)
def test_inference_embeds_at_the_precision_the_checkpoint_was_trained_at(props, trained, expected):
    assert inference_precision(props, trained) == expected


def test_inference_settings_turn_the_trained_precision_into_autocast(monkeypatch):
    monkeypatch.setattr(embedding, "detect_device_props", lambda index: RTX_3090)
    assert inference_settings(torch.device("cuda", 0), "bf16") == (torch.bfloat16, True)
    assert inference_settings(torch.device("cuda", 0)) == (torch.float16, True)
    assert inference_settings(CPU, "bf16") == (None, False)


def test_inference_settings_on_cpu_are_full_precision():
    assert inference_settings(CPU) == (None, False)


def test_with_the_pipeline_embedding_model():
    config = ModelConfig(backbone="test_efficientnet", pretrained=False, embedding_dim=16)
    model = build_embedding_model(config)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    embeddings = compute_embeddings(model, [x[:2], x[2:]], CPU)
    assert embeddings.shape == (5, 16)
    np.testing.assert_allclose(embeddings, expected(model, x), atol=1e-5)


def test_flip_tta_is_the_normalised_sum_of_the_photo_and_its_mirror_image():
    model, x = tiny_model(), images()
    model.eval()
    with torch.no_grad():
        summed = (model(x) + model(torch.flip(x, dims=(3,)))).double()
    written_out = (summed / summed.norm(dim=1, keepdim=True)).numpy()
    tta = compute_embeddings(model, [x[:4], x[4:]], CPU, flip_tta=True)
    assert tta.dtype == np.float32 and tta.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(tta, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(tta, written_out, atol=1e-6)
    # The tiny model is not mirror-symmetric, so switching TTA on does change the rows...
    assert not np.allclose(tta, expected(model, x), atol=1e-3)
    # ...and switching it off gives exactly the plain embeddings.
    np.testing.assert_array_equal(
        compute_embeddings(model, [x], CPU, flip_tta=False), compute_embeddings(model, [x], CPU)
    )
    np.testing.assert_allclose(compute_embeddings(model, [x], CPU), expected(model, x), atol=1e-6)


def test_flip_tta_gives_a_photo_and_its_mirror_image_the_same_embedding():
    model, x = tiny_model(), images()
    mirrored = torch.flip(x, dims=(3,))
    np.testing.assert_allclose(
        compute_embeddings(model, [x], CPU, flip_tta=True),
        compute_embeddings(model, [mirrored], CPU, flip_tta=True),
        atol=1e-6,
    )
    plain = compute_embeddings(model, [x], CPU)
    assert not np.allclose(plain, compute_embeddings(model, [mirrored], CPU), atol=1e-3)
