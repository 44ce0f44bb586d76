import pytest

from imgcls_pipeline.core.data.naming import is_image_extension, parse_image_name


@pytest.mark.parametrize(
    ("name", "object_id", "sequence"),
    [
        ("plant001_1.jpg", "plant001", 1),
        ("my_plant_07_12.JPEG", "my_plant_07", 12),
        ("식물_3.png", "식물", 3),
        ("a_b_c_0010.webp", "a_b_c", 10),
    ],
)
def test_split_on_last_underscore(name: str, object_id: str, sequence: int) -> None:
    parsed = parse_image_name(name)
    assert parsed is not None
    assert (parsed.object_id, parsed.sequence) == (object_id, sequence)


@pytest.mark.parametrize(
    "name", ["plant001.jpg", "_1.jpg", "plant_x.jpg", "plant_.jpg", "plant_1a.jpg", "plant_١.jpg"]
)
def test_names_that_break_the_rule(name: str) -> None:
    assert parse_image_name(name) is None


def test_nfd_and_nfc_ids_are_the_same() -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "식물_1.jpg")
    assert parse_image_name(nfd) == parse_image_name("식물_1.jpg")


@pytest.mark.parametrize("name", ["a_1.JPG", "a_1.jpeg", "a_1.Png", "a_1.webp", "a_1.BMP"])
def test_extensions_in_any_case(name: str) -> None:
    assert is_image_extension(name)


def test_other_extensions_are_not_images() -> None:
    assert not is_image_extension("a_1.txt")
    assert not is_image_extension("a_1.gif")
