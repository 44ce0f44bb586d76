import math

import numpy as np
import pytest
import torch

from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline.core.training.arcface import ArcFace, adacos_scale


def reference_logits(x: np.ndarray, w: np.ndarray, labels: np.ndarray, s: float, m: float):
    """ArcFace written out: s·cos(θ+m) for the true class while θ+m ≤ π, else s·(cos θ − m·sin m)."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(x @ w.T, -1.0, 1.0)
    logits = cos.copy()
    for i, label in enumerate(labels):
        theta = math.acos(cos[i, label])
        if theta + m <= math.pi:
            logits[i, label] = math.cos(theta + m)
        else:
            logits[i, label] = cos[i, label] - m * math.sin(m)
    return s * logits


@pytest.mark.parametrize("m", [0.0, 0.3, 0.5])
def test_matches_the_formula(m):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8))
    labels = rng.integers(0, 5, 64)
    head = ArcFace(8, 5, s=30.0, m=m).double()
    # Make a few true-class angles larger than π − m, the branch the th/mm trick handles.
    w = head.weight.detach().numpy().copy()
    x[:8] = -w[labels[:8]] + 0.05 * rng.normal(size=(8, 8))
    got = head(torch.from_numpy(x), torch.from_numpy(labels)).detach().numpy()
    np.testing.assert_allclose(got, reference_logits(x, w, labels, 30.0, m), atol=1e-6)


def test_margin_is_settable_and_zero_is_scaled_cosine():
    head = ArcFace(4, 3, s=10.0, m=0.5)
    x, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with_margin = head(x, labels)
    head.margin = 0.0
    cosine = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(head.weight).T
    torch.testing.assert_close(head(x, labels), 10.0 * cosine)
    assert head.margin == 0.0
    # the margin lowers only the true-class logit
    true = torch.nn.functional.one_hot(labels, 3).bool()
    assert torch.all(with_margin[true] < head(x, labels)[true])
    torch.testing.assert_close(with_margin[~true], head(x, labels)[~true])


def test_fp32_under_bf16_autocast():
    head = ArcFace(16, 4, s=64.0, m=0.5)
    x, labels = torch.randn(8, 16), torch.randint(0, 4, (8,))
    expected = head(x, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head(x.bfloat16(), labels)
    assert got.dtype == torch.float32
    # only the bf16 rounding of the input remains (s=64 scales it)
    torch.testing.assert_close(got, expected, atol=0.5, rtol=0)


def test_gradients_reach_embeddings_and_weights():
    head = ArcFace(8, 3)
    x = torch.randn(5, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1])
    loss = torch.nn.functional.cross_entropy(head(x, labels), labels)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def reference_subcenter_logits(x, w, labels, s, m, k):
    """Sub-center ArcFace written out: a class's cosine is the largest over its k centres."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    n_classes = w.shape[0] // k
    cos = np.empty((x.shape[0], n_classes))
    for i in range(x.shape[0]):
        for c in range(n_classes):
            cos[i, c] = max(float(x[i] @ w[c * k + j]) for j in range(k))
    logits = np.clip(cos, -1.0, 1.0)
    for i, label in enumerate(labels):
        theta = math.acos(logits[i, label])
        if theta + m <= math.pi:
            logits[i, label] = math.cos(theta + m)
        else:
            logits[i, label] = logits[i, label] - m * math.sin(m)
    return s * logits


@pytest.mark.parametrize("k", [2, 3])
def test_subcenters_match_the_formula(k):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8))
    labels = rng.integers(0, 5, 40)
    head = ArcFace(8, 5, s=30.0, m=0.5, subcenters=k).double()
    assert head.weight.shape == (5 * k, 8)
    w = head.weight.detach().numpy()
    got = head(torch.from_numpy(x), torch.from_numpy(labels)).detach().numpy()
    assert got.shape == (40, 5)
    np.testing.assert_allclose(
        got, reference_subcenter_logits(x, w, labels, 30.0, 0.5, k), atol=1e-9
    )


def test_one_subcenter_is_plain_arcface_exactly():
    torch.manual_seed(0)
    plain = ArcFace(8, 5, s=30.0, m=0.5)
    torch.manual_seed(0)
    one = ArcFace(8, 5, s=30.0, m=0.5, subcenters=1)
    x, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    assert torch.equal(one.weight, plain.weight)
    assert torch.equal(one(x, labels), plain(x, labels))
    # and the formula of today's ArcFace, so k=1 changes nothing
    expected = reference_logits(
        x.double().numpy(), one.weight.detach().double().numpy(), labels.numpy(), 30.0, 0.5
    )
    np.testing.assert_allclose(one(x, labels).detach().numpy(), expected, atol=1e-4)


@pytest.mark.parametrize(("classes", "scale"), [(3, math.sqrt(2) * math.log(2)), (10, 3.1073)])
def test_adacos_scale_is_sqrt2_ln_c_minus_1(classes, scale):
    assert adacos_scale(classes) == pytest.approx(scale, abs=1e-4)


def test_adacos_scale_refuses_fewer_than_three_classes():
    with pytest.raises(UserError, match=r"^arcface_scale_mode adacos needs at least 3 classes"):
        adacos_scale(2)
