"""The embedding model: a timm backbone by name, pooling, a linear head, L2-normalised output.

``pooling="avg"`` is timm's own global average pooling inside the backbone (``num_classes=0``);
``pooling="gem"`` builds the backbone without pooling (``global_pool=""``) and pools its feature
map with ``GeM`` here. The pooling is in the checkpoint's ``config``, so inference rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from imgcls_pipeline.core.errors import UserError, describe
from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training import hub
from imgcls_pipeline.core.training.checkpoint import read_checkpoint
from imgcls_pipeline.core.training.pooling import GeM

# EmbeddingModel's own state dict names its backbone's weights "backbone.…".
OWN_BACKBONE_PREFIX = "backbone."


class EmbeddingModel(nn.Module):
    """images (N, 3, H, W) normalised with ``mean``/``std`` -> (N, embedding_dim) unit vectors."""

    def __init__(
        self,
        backbone: nn.Module,
        embedding_dim: int,
        backbone_name: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        interpolation: str = "bilinear",
        pool: nn.Module | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        # None: the backbone pools itself. GeM has no weights, so the state dict's keys are alike.
        self.pool = pool if pool is not None else nn.Identity()
        features = backbone.num_features if pool is not None else _feature_dim(backbone)
        self.head = nn.Linear(features, embedding_dim)
        self.backbone_name = backbone_name
        self.embedding_dim = embedding_dim
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        # How the weights' authors resized images (bicubic for EfficientNetV2): resizing the
        # same way keeps inputs close to what the pretrained backbone saw.
        self.interpolation = interpolation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32: under autocast the head's output is bf16/fp16, and cosine similarities
        # (ArcFace, kNN search) of low-precision unit vectors lose the ranking of close neighbours.
        return F.normalize(self.head(self.pool(self.backbone(images))).float(), dim=1)


def build_embedding_model(model_cfg: ModelConfig) -> EmbeddingModel:
    """Backbone ``model_cfg.backbone`` (weights per ``pretrained``/``pretrained_path``) + head."""
    backbone = _create_backbone(model_cfg)
    data_cfg = timm.data.resolve_model_data_config(backbone)
    return EmbeddingModel(
        backbone,
        model_cfg.embedding_dim,
        model_cfg.backbone,
        data_cfg["mean"],
        data_cfg["std"],
        data_cfg.get("interpolation", "bilinear"),
        GeM(model_cfg.gem_p) if model_cfg.pooling == "gem" else None,
    )


def load_embedding_model(
    checkpoint_path: str | Path, device: str | torch.device
) -> tuple[EmbeddingModel, dict[str, Any]]:
    """Rebuild the model from the config stored in a checkpoint (no download) and load its weights.

    Returns the model in eval mode on ``device`` and the checkpoint dict.
    """
    checkpoint = read_checkpoint(checkpoint_path)
    model_cfg = ModelConfig(**checkpoint["config"]["model"]).model_copy(
        update={"pretrained": False, "pretrained_path": None}
    )
    model = build_embedding_model(model_cfg)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as err:
        raise UserError(
            f"{checkpoint_path} holds weights that do not fit {model_cfg.backbone} "
            f"(corrupt or edited file: {describe(err)}); retrain or use another file."
        ) from None
    return model.to(device).eval(), checkpoint


def _create_backbone(cfg: ModelConfig) -> nn.Module:
    """timm model with its classifier removed (``num_classes=0``: forward returns pooled features;
    with ``pooling="gem"`` also ``global_pool=""``: it returns the feature map)."""
    if not timm.is_model(cfg.backbone):
        raise UserError(
            f"Unknown backbone '{cfg.backbone}' (--backbone); use a timm model name such as "
            f"tf_efficientnetv2_l.in21k_ft_in1k (see timm.list_models())."
        )
    head_kwargs = _head_kwargs(cfg)
    if cfg.pretrained_path:
        return _create_from_file(cfg.backbone, Path(cfg.pretrained_path), head_kwargs)
    if not cfg.pretrained:
        return timm.create_model(cfg.backbone, pretrained=False, **head_kwargs)
    hub.offline_mode()  # seconds, not a minute of retries, when the hub cannot be reached
    try:
        return timm.create_model(cfg.backbone, pretrained=True, **head_kwargs)
    except Exception as err:  # hub, network and cache failures surface as many exception types
        raise UserError(hub.weights_error(cfg.backbone, describe(err))) from None


def _head_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    if cfg.pooling == "gem":
        return {"num_classes": 0, "global_pool": ""}
    return {"num_classes": 0}


def _create_from_file(name: str, path: Path, head_kwargs: dict[str, Any]) -> nn.Module:
    """The backbone with weights from a state dict in timm's layout (what timm and its hub save)."""
    if not path.is_file():
        raise UserError(f"--pretrained_path {path} does not exist; pass an existing weights file.")
    model = timm.create_model(name, pretrained=False, **head_kwargs)
    try:
        # timm's reader: weights_only=True, .safetensors aware, unwraps "state_dict"/"model" keys
        # and DDP "module." prefixes.
        state_dict = timm.models.load_state_dict(str(path), weights_only=True)
        # An imgcls model (models/<version>/model.pt, init_from: served): its backbone's weights.
        if any(key.startswith(OWN_BACKBONE_PREFIX) for key in state_dict):
            state_dict = {
                key.removeprefix(OWN_BACKBONE_PREFIX): value
                for key, value in state_dict.items()
                if key.startswith(OWN_BACKBONE_PREFIX)
            }
        result = model.load_state_dict(state_dict, strict=False)
    except Exception as err:  # torch, pickle and safetensors each raise their own types
        raise UserError(
            f"Cannot load --pretrained_path {path} into {name} ({describe(err)}); "
            f"pass a .safetensors or PyTorch state-dict file of that architecture."
        ) from None
    classifier = model.pretrained_cfg.get("classifier") or "classifier"
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(classifiers)]
    if result.missing_keys or unexpected:
        example = (result.missing_keys or unexpected)[0]
        raise UserError(
            f"--pretrained_path {path} does not fit {name}: {len(result.missing_keys)} weights "
            f"missing and {len(unexpected)} unexpected (e.g. {example!r}); pass a state dict "
            f"of that architecture in timm's layout."
        )
    return model


def _feature_dim(backbone: nn.Module) -> int:
    # Models with a pre-logits layer return head_hidden_size features when num_classes=0.
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
