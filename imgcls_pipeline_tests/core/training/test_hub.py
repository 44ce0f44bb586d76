"""Pretrained weights without a network: decided in a second, one sentence."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.training import hub


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_an_unreachable_hub_turns_on_offline_mode_at_once(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "HUB_HOST", "hub.invalid")  # a name that never resolves
    started = time.monotonic()
    assert hub.offline_mode() is True
    assert time.monotonic() - started < hub.PROBE_SECONDS + 0.5
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # inherited by the training process


def test_missing_weights_offline_are_one_sentence(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^Cannot get pretrained weights for tf_efficientnetv2_s"):
        hub.check_weights_available("tf_efficientnetv2_s.in21k", True, None)
    # Cached weights, no pretrained weights, or a local file: nothing to refuse.
    (empty_caches / "hf" / "hub" / "models--timm--tf_efficientnetv2_s.in21k").mkdir(parents=True)
    hub.check_weights_available("tf_efficientnetv2_s.in21k", True, None)
    hub.check_weights_available("resnet18", False, None)
    weights = empty_caches / "w.pth"
    weights.write_bytes(b"")
    hub.check_weights_available("resnet18", True, str(weights))
    with pytest.raises(UserError, match=r"--pretrained_path .*missing\.pth does not exist"):
        hub.check_weights_available("resnet18", True, str(empty_caches / "missing.pth"))


def test_behind_a_proxy_the_hub_client_decides(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("no direct probe"))
    assert hub.offline_mode() is False
