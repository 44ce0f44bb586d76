import numpy as np
import torch
from PIL import Image

from imgcls_pipeline.core.data.transforms import eval_transform, train_transform
from imgcls_pipeline.core.settings import AugmentationConfig

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_train_transform_shapes_and_randomness():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    transform = train_transform(AugmentationConfig(), 32, MEAN, STD)
    torch.manual_seed(0)
    first, second = transform(image), transform(image)
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert not torch.equal(first, second)


def test_eval_transform_is_deterministic_and_uses_the_model_normalisation():
    mean_colour = tuple(round(m * 255) for m in MEAN)
    image = Image.new("RGB", (50, 30), mean_colour)
    out = eval_transform(24, MEAN, STD)(image)
    assert out.shape == (3, 24, 24)
    assert out.abs().max() < 0.02  # the mean colour normalises to ~0
    assert torch.equal(out, eval_transform(24, MEAN, STD)(image))


def test_resizing_follows_the_backbones_pretrained_config():
    from torchvision.transforms import v2

    from imgcls_pipeline.core.settings import ModelConfig
    from imgcls_pipeline.core.training.model import build_embedding_model

    model = build_embedding_model(
        ModelConfig(backbone="test_efficientnet", pretrained=False, embedding_dim=8)
    )
    assert model.interpolation == "bicubic"  # timm's pretrained_cfg for EfficientNets
    resize = next(
        t
        for t in eval_transform(64, model.mean, model.std, model.interpolation).transforms
        if isinstance(t, v2.Resize)
    )
    assert resize.interpolation == v2.InterpolationMode.BICUBIC
