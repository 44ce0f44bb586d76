import numpy as np
import pytest
import torch

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.training.pooling import GeM


def reference_gem(x: np.ndarray, p: float, eps: float = 1e-6) -> np.ndarray:
    """GeM written out: for each image and channel, (1/(H·W) · Σ max(x, eps)^p)^(1/p)."""
    n, c, h, w = x.shape
    out = np.empty((n, c))
    for i in range(n):
        for j in range(c):
            values = np.maximum(x[i, j].ravel(), eps)
            out[i, j] = (np.sum(values**p) / (h * w)) ** (1.0 / p)
    return out


@pytest.mark.parametrize("p", [1.0, 2.5, 3.0, 6.0])
def test_gem_matches_the_formula(p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4, 6))  # negatives too: clamped to eps as in the formula
    got = GeM(p)(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, reference_gem(x, p), rtol=1e-12, atol=1e-12)


def test_gem_pools_bf16_features_in_fp32():
    x = torch.rand(2, 3, 4, 4) + 0.01
    assert GeM(3.0)(x.bfloat16()).dtype == torch.float32


def test_p_one_is_average_pooling_of_positive_features():
    x = torch.rand(2, 7, 5, 5) + 0.01
    torch.testing.assert_close(GeM(1.0)(x), x.mean(dim=(2, 3)))


def test_large_p_tends_to_max_pooling():
    x = torch.rand(2, 3, 4, 4) + 0.01
    torch.testing.assert_close(GeM(200.0)(x), x.amax(dim=(2, 3)), rtol=0.02, atol=0)


def test_a_backbone_without_a_feature_map_is_one_sentence():
    with pytest.raises(
        UserError, match=r"^pooling gem needs a convolutional backbone .*pooling avg"
    ):
        GeM(3.0)(torch.randn(2, 197, 64))
