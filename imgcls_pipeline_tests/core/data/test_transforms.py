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


def test_hue_rotation_turns_the_hue_by_about_the_shift_and_keeps_the_luma():
    """The cheap hue jitter (a YIQ rotation) does what a hue jitter must: a reddish pixel turns
    toward yellow for a positive shift and toward magenta for a negative one, by roughly the
    shift, its luma unchanged; zero changes nothing."""
    import colorsys

    import numpy as np
    from PIL import Image

    from imgcls_pipeline.core.data.transforms import hue_matrix

    source = np.array([[[200, 60, 40]]], dtype=np.uint8)
    image = Image.fromarray(source)
    before = colorsys.rgb_to_hsv(*(source[0, 0] / 255))

    def luma(rgb: np.ndarray) -> float:
        return float(rgb @ np.array([0.299, 0.587, 0.114]))

    assert np.array_equal(np.array(image.convert("RGB", hue_matrix(0.0))), source)
    for shift in (0.04, -0.04):
        turned = np.array(image.convert("RGB", hue_matrix(shift)))[0, 0].astype(float)
        after = colorsys.rgb_to_hsv(*(turned / 255))
        moved = (after[0] - before[0] + 0.5) % 1 - 0.5
        assert np.sign(moved) == np.sign(shift)
        assert 0.5 * abs(shift) <= abs(moved) <= 2 * abs(shift)
        assert abs(luma(turned) - luma(source[0, 0].astype(float))) < 2.0


def test_training_transform_runs_on_a_pillow_image_and_makes_a_normalised_tensor():
    import numpy as np
    import torch
    from PIL import Image

    from imgcls_pipeline.core.data.transforms import HueRotation, train_transform
    from imgcls_pipeline.core.settings import AugmentationConfig

    transform = train_transform(AugmentationConfig(), 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert any(isinstance(step, HueRotation) for step in transform.transforms)
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((80, 100, 3)) * 255).astype(np.uint8))
    tensor = transform(image)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
