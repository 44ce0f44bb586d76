"""Header reading on every kind of awkward file a real photo folder holds."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls_pipeline.core.data.image_header import read_header
from imgcls_pipeline_tests.imaging import write_photo


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("mode", "fmt", "ext"),
    [
        ("L", "JPEG", ".jpg"),
        ("CMYK", "JPEG", ".jpg"),
        ("RGBA", "PNG", ".png"),
        ("P", "PNG", ".png"),
        ("I;16", "PNG", ".png"),
        ("RGB", "WEBP", ".webp"),
        ("RGB", "BMP", ".bmp"),
        ("L", "BMP", ".bmp"),
    ],
)
def test_modes_and_formats_are_ok(tmp_path: Path, mode: str, fmt: str, ext: str) -> None:
    image = Image.new(mode, (70, 50))
    header = read_header(str(_save(tmp_path / f"x_1{ext}", image, format=fmt)))
    assert (header.status, header.width, header.height) == ("ok", 70, 50)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotation_swaps_width_and_height(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "x_1.jpg", Image.new("RGB", (120, 40)), exif=exif.tobytes())
    header = read_header(str(path))
    assert (header.width, header.height) == (40, 120)


def test_exif_orientation_1_keeps_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    path = _save(tmp_path / "x_1.jpg", Image.new("RGB", (120, 40)), exif=exif.tobytes())
    assert (read_header(str(path)).width, read_header(str(path)).height) == (120, 40)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp"])
def test_truncated_files_are_caught(tmp_path: Path, ext: str) -> None:
    full = write_photo(tmp_path / f"full{ext}", size=(200, 150), seed=1)
    data = full.read_bytes()
    cut = tmp_path / f"cut_1{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert read_header(str(cut)).status in ("truncated", "unreadable")
    assert read_header(str(full)).status == "ok"


def test_jpeg_with_trailer_after_end_marker_is_ok(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "x_1.jpg", size=(64, 64))
    path.write_bytes(path.read_bytes() + b"\x00" * 5000)  # e.g. a camera maker's trailer
    assert read_header(str(path)).status == "ok"


def test_empty_and_non_image_files(tmp_path: Path) -> None:
    (tmp_path / "e_1.jpg").write_bytes(b"")
    (tmp_path / "t_1.jpg").write_text("this is a text file with a .jpg name")
    assert read_header(str(tmp_path / "e_1.jpg")).status == "empty_file"
    assert read_header(str(tmp_path / "t_1.jpg")).status == "unreadable"


def test_decompression_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    # A PNG header claiming 30000 x 30000 pixels (900 M) with almost no data behind it.
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, format="PNG")
    path = tmp_path / "bomb_1.png"
    path.write_bytes(buffer.getvalue())
    header = read_header(str(path))
    assert header.status == "decompression_bomb"


def test_sixteen_bit_grayscale_png(tmp_path: Path) -> None:
    array = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    path = _save(tmp_path / "x_1.png", Image.fromarray(array))
    assert read_header(str(path)).status == "ok"
