import warnings

import numpy as np
import pytest
from PIL import Image

from imgcls_pipeline.core.data import images
from imgcls_pipeline.core.data.images import UnreadableImage, load_rgb
from imgcls_pipeline.core.errors import UserError


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
    with pytest.raises(UserError, match=r"broken\.jpg \(UnidentifiedImageError: ") as raised:
        load_rgb(tmp_path / "broken.jpg")
    assert "\n" not in str(raised.value)


def test_an_image_above_pillows_warning_limit_is_one_clear_line_per_file(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600: between 1x and 2x
    Image.new("RGB", (40, 40), (0, 0, 200)).save(tmp_path / "large.png")
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        for _ in range(3):  # e.g. once per epoch
            assert load_rgb(tmp_path / "large.png").getpixel((0, 0)) == (0, 0, 200)
    assert not [w for w in raw if issubclass(w.category, Image.DecompressionBombWarning)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert str(tmp_path / "large.png") in lines[0] and "40x40 = 1,600 pixels" in lines[0]


def test_an_image_above_twice_the_limit_is_refused_in_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (50, 50)).save(tmp_path / "bomb.png")  # 2500 > 2 x 1000
    with pytest.raises(UnreadableImage, match=r"bomb\.png \(DecompressionBombError: ") as raised:
        load_rgb(tmp_path / "bomb.png", target_size=10)
    assert raised.value.path == str(tmp_path / "bomb.png") and "\n" not in str(raised.value)


def test_huge_alpha_images_are_reduced_band_by_band_to_the_same_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_BAND_ROWS", 7)  # several bands, the last one partial
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (61, 45, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "cutout.png")
    expected = images.to_rgb(Image.open(tmp_path / "cutout.png").reduce(3))
    reduced = load_rgb(tmp_path / "cutout.png", target_size=15)
    assert reduced.size == expected.size == (15, 21)
    assert np.array_equal(np.asarray(reduced), np.asarray(expected))


def test_palette_images_become_rgb_before_they_are_reduced(tmp_path):
    Image.new("RGB", (400, 300), (10, 200, 30)).quantize(4).save(tmp_path / "p.png")
    reduced = load_rgb(tmp_path / "p.png", target_size=100)
    assert reduced.size == (134, 100) and reduced.getpixel((50, 50)) == (10, 200, 30)
