"""``init_from: served``: a re-training starts from the served model's backbone, given to training
as ``pretrained_path`` = the version's model.pt (an imgcls checkpoint, not a timm state dict)."""

import torch

from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training.model import build_embedding_model
from imgcls_pipeline_tests.core.training.tiny_training import TINY_BACKBONE


def test_a_served_models_weights_start_the_backbone_and_not_the_head(tmp_path) -> None:
    config = ModelConfig(backbone=TINY_BACKBONE, pretrained=False, embedding_dim=32)
    served = build_embedding_model(config)
    with torch.no_grad():
        for parameter in served.parameters():
            parameter.add_(1.0)  # unlike any fresh initialisation
    path = tmp_path / "model.pt"
    torch.save({"format": "imgcls_pipeline.checkpoint/1", "model": served.state_dict()}, path)

    started = build_embedding_model(config.model_copy(update={"pretrained_path": str(path)}))
    for name, tensor in started.backbone.state_dict().items():
        torch.testing.assert_close(tensor, served.backbone.state_dict()[name])
    assert not torch.equal(started.head.weight, served.head.weight)  # a new task's head
