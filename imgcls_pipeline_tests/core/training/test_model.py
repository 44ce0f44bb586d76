import os
import re
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training.checkpoint import FORMAT
from imgcls_pipeline.core.training.model import build_embedding_model, load_embedding_model
from imgcls_pipeline_tests.core.training.tiny_training import TINY_BACKBONE, tiny_config


def tiny_model_config(**changes) -> ModelConfig:
    return ModelConfig(backbone=TINY_BACKBONE, pretrained=False, embedding_dim=32, **changes)


def test_unit_embeddings_and_the_backbones_normalisation():
    model = build_embedding_model(tiny_model_config()).eval()
    out = model(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    cfg = timm.create_model(TINY_BACKBONE, pretrained=False).pretrained_cfg
    assert model.mean == tuple(cfg["mean"]) and model.std == tuple(cfg["std"])
    # The classifier is gone: the head reads the backbone's pooled features, not 1000 logits,
    # and the embedding is exactly normalize(head(features)).
    x = torch.randn(2, 3, 64, 64)
    features = model.backbone(x)
    assert features.shape == (2, model.head.in_features)
    torch.testing.assert_close(model(x), torch.nn.functional.normalize(model.head(features)))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_path_loads_local_weights(tmp_path, suffix):
    source = timm.create_model(TINY_BACKBONE, pretrained=False)  # with its 1000-class classifier
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    model = build_embedding_model(tiny_model_config(pretrained_path=str(path)))
    loaded = model.backbone.state_dict()
    for name, tensor in loaded.items():
        torch.testing.assert_close(tensor, source.state_dict()[name])


def test_pretrained_path_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_embedding_model(tiny_model_config(pretrained_path=str(tmp_path / "missing.pth")))
    other = timm.create_model("test_vit", pretrained=False)
    torch.save(other.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(UserError, match=r"vit\.pth"):
        build_embedding_model(tiny_model_config(pretrained_path=str(tmp_path / "vit.pth")))


def test_unknown_backbone():
    with pytest.raises(UserError, match="Unknown backbone 'efficientnet_v9'"):
        build_embedding_model(ModelConfig(backbone="efficientnet_v9", pretrained=False))


@pytest.mark.slow
def test_missing_weights_without_internet_say_how_to_provide_them(tmp_path):
    code = (
        "from imgcls_pipeline.core.settings import ModelConfig\n"
        "from imgcls_pipeline.core.training.model import build_embedding_model\n"
        "build_embedding_model(ModelConfig(backbone='tf_efficientnetv2_b0.in1k'))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "UserError" in done.stderr
    for hint in ("--pretrained_path FILE", "Hugging Face cache", "--pretrained=false"):
        assert hint in done.stderr


def save_fake_checkpoint(path, model, config) -> None:
    torch.save({"format": FORMAT, "config": config.to_dict(), "model": model.state_dict()}, path)


def test_load_embedding_model_rebuilds_from_the_checkpoint(tmp_path):
    config = tiny_config()
    config.model.pretrained = True  # must not be used: rebuilding never downloads
    model = build_embedding_model(tiny_model_config()).eval()
    save_fake_checkpoint(tmp_path / "best_model.pt", model, config)
    loaded, checkpoint = load_embedding_model(tmp_path / "best_model.pt", "cpu")
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded(images), model(images))
    assert not loaded.training and checkpoint["format"] == FORMAT


def test_load_embedding_model_refuses_foreign_and_corrupt_files(tmp_path):
    (tmp_path / "random.pt").write_bytes(os.urandom(256))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    model = build_embedding_model(tiny_model_config())
    save_fake_checkpoint(tmp_path / "good.pt", model, tiny_config())
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    for name in ("random.pt", "foreign.pt", "truncated.pt", "absent.pt"):
        with pytest.raises(UserError, match=re.escape(name)):
            load_embedding_model(tmp_path / name, "cpu")


def test_gem_model_pools_the_feature_map_into_unit_embeddings():
    model = build_embedding_model(tiny_model_config(pooling="gem", gem_p=3.0)).eval()
    x = torch.randn(2, 3, 64, 64)
    feature_map = model.backbone(x)
    assert feature_map.ndim == 4 and model.head.in_features == feature_map.shape[1]
    out = model(x)
    assert out.shape == (2, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    pooled = feature_map.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
    torch.testing.assert_close(out, torch.nn.functional.normalize(model.head(pooled)))


def test_a_gem_model_round_trips_through_its_checkpoint(tmp_path):
    config = tiny_config()
    config.model.pooling, config.model.gem_p = "gem", 4.0
    model = build_embedding_model(config.model).eval()
    save_fake_checkpoint(tmp_path / "best_model.pt", model, config)
    loaded, _ = load_embedding_model(tmp_path / "best_model.pt", "cpu")
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded(images), model(images))
    # GeM has no weights: only the stored config tells the loader to pool this way
    as_avg = build_embedding_model(tiny_model_config()).eval()
    as_avg.load_state_dict(model.state_dict())
    assert not torch.allclose(as_avg(images), model(images))


@pytest.mark.slow
def test_an_unreachable_hub_fails_in_seconds_not_a_minute(tmp_path):
    # No HF_HUB_OFFLINE: the one-second probe of the hub sets it (HUB_HOST never resolves here).
    code = (
        "import time\n"
        "from imgcls_pipeline.core.errors import UserError\n"
        "from imgcls_pipeline.core.settings import ModelConfig\n"
        "from imgcls_pipeline.core.training import hub\n"
        "from imgcls_pipeline.core.training.model import build_embedding_model\n"
        "hub.HUB_HOST = 'hub.invalid'\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    build_embedding_model(ModelConfig(backbone='tf_efficientnetv2_b0.in1k'))\n"
        "except UserError as error:\n"
        "    print(f'{time.monotonic() - started:.2f}', error)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HTTPS_PROXY")}
    env["HF_HOME"] = str(tmp_path / "hf")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    seconds, _, message = done.stdout.partition(" ")
    assert message.startswith("Cannot get pretrained weights for tf_efficientnetv2_b0.in1k")
    assert float(seconds) < 5
