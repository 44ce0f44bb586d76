import numpy as np
import pytest
import torch
from PIL import Image

from imgcls_pipeline.core.data.transforms import eval_transform, load_rgb, train_transform
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.settings import AugmentationConfig

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pixel(path, xy=(0, 0)) -> tuple[int, int, int]:
    image = load_rgb(path)
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_grayscale_palette_and_one_bit(tmp_path):
    Image.new("L", (4, 4), 100).save(tmp_path / "l.png")
    Image.new("RGB", (4, 4), (10, 200, 30)).quantize(4).save(tmp_path / "p.png")
    Image.new("1", (4, 4), 1).save(tmp_path / "one.png")
    assert pixel(tmp_path / "l.png") == (100, 100, 100)
    assert pixel(tmp_path / "p.png") == (10, 200, 30)
    assert pixel(tmp_path / "one.png") == (255, 255, 255)


def test_alpha_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (200, 0, 0, 255))
    rgba.save(tmp_path / "rgba.png")
    Image.new("LA", (2, 2), (0, 0)).save(tmp_path / "la.png")
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 50, 60, 70] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p_transparent.png", transparency=0)
    assert pixel(tmp_path / "rgba.png") == (255, 255, 255)
    assert pixel(tmp_path / "rgba.png", (1, 0)) == (200, 0, 0)
    assert pixel(tmp_path / "la.png") == (255, 255, 255)
    assert pixel(tmp_path / "p_transparent.png") == (255, 255, 255)
    assert pixel(tmp_path / "p_transparent.png", (1, 0)) == (50, 60, 70)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    r, g, b = pixel(tmp_path / "cmyk.jpg", (4, 4))
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    image = load_rgb(tmp_path / "gray16.png")
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0,) * 3, (128,) * 3, (255,) * 3]


def test_thirty_two_bit_integer_mode(tmp_path):
    eight_bit = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    sixteen_bit = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.int32))
    eight_bit.save(tmp_path / "i8.tif")
    sixteen_bit.save(tmp_path / "i16.tif")
    assert [load_rgb(tmp_path / "i8.tif").getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]
    assert [load_rgb(tmp_path / "i16.tif").getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").size == (20, 40)


def test_big_jpeg_is_decoded_at_a_reduced_scale_not_below_target(tmp_path):
    Image.new("RGB", (2000, 1000), (0, 128, 0)).save(tmp_path / "big.jpg")
    # scale 1/4 is the largest that keeps both sides >= 200 (1/8 would give 250 x 125)
    assert load_rgb(tmp_path / "big.jpg", target_size=200).size == (500, 250)
    assert load_rgb(tmp_path / "big.jpg").size == (2000, 1000)


def test_big_png_is_reduced_towards_target(tmp_path):
    Image.new("RGB", (1000, 800), (0, 0, 128)).save(tmp_path / "big.png")
    assert load_rgb(tmp_path / "big.png", target_size=100).size == (125, 100)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"broken\.jpg"):
        load_rgb(tmp_path / "broken.jpg")


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
