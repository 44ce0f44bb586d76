from __future__ import annotations

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
