"""Blur magnification: known sigma maps, edge profiles, no bleeding, jit, validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dhde.applications import MagnifyParams, magnify_blur
from dhde.applications.magnify import _magnify_impl
from dhde.filters.gaussian import gaussian_blur
from dhde.labels import SIGMAS


H, W = 40, 96  # one shape for (almost) all tests: one compilation


def _texture(rng, h, w):
    x = rng.random((h, w, 3))
    return np.clip(ndimage.gaussian_filter(x, (0.7, 0.7, 0)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("s,k", [(1.0, 2.0), (2.0, 1.5)])
def test_uniform_map_equals_direct_blur(rng, s, k):
    """Blur s then magnify by k == blur k*s directly (spatial-domain reference); in_focus_sigma=0:
    a true sigma map, whose every pixel goes to k*s (the default 0.5 is for estimated maps)."""
    sharp = _texture(rng, H, W)
    y = np.asarray(gaussian_blur(sharp, s))
    out = np.asarray(magnify_blur(y, np.full((H, W), s, np.float32), k, in_focus_sigma=0.0))
    ref = np.asarray(gaussian_blur(sharp, k * s))
    m = int(np.ceil(4 * k * s))  # borders differ: replicate (reference) vs symmetric
    assert np.abs(out - ref)[m:-m, m:-m].max() < 1e-4
    assert np.abs(y - ref)[m:-m, m:-m].max() > 0.02  # the test can fail


def _profile_sigma(row: np.ndarray) -> float:
    d = np.abs(np.diff(row.astype(np.float64)))
    x = np.arange(d.size)
    mu = (x * d).sum() / d.sum()
    return float(np.sqrt(((x - mu) ** 2 * d).sum() / d.sum()))


def test_step_edge_blurred_on_one_side():
    """Left region sharp (sigma 0), right region blurred by s: only the right edge widens to k s."""
    h, w, s, k = H, W, 1.2, 2.0
    img = np.zeros((h, w, 3), np.float32)
    img[:, :24] = 0.2
    img[:, 24:48] = 0.8
    img[:, 48:72] = 0.3
    img[:, 72:] = 0.9
    blurred = np.asarray(gaussian_blur(img, s))
    y = img.copy()
    y[:, 48:] = blurred[:, 48:]
    d = np.zeros((h, w), np.float32)
    d[:, 48:] = s
    out = np.asarray(magnify_blur(y, d, k, in_focus_sigma=0.0))
    # Sharp side untouched (its extra blur is 0).
    np.testing.assert_allclose(out[:, :48], y[:, :48], atol=1e-5)
    # Right edge: second moment of the derivative profile = total sigma.
    assert _profile_sigma(y[16, 60:85, 0]) == pytest.approx(s, rel=0.03)
    assert _profile_sigma(out[16, 60:85, 0]) == pytest.approx(k * s, rel=0.03)


def test_in_focus_sigma_keeps_sharp_pixels():
    rng = np.random.default_rng(1)
    y = _texture(rng, H, W)
    d = np.full((H, W), 0.5, np.float32)
    d[:, 16:] = 1.5
    out = np.asarray(magnify_blur(y, d, 3.0, in_focus_sigma=0.5))
    np.testing.assert_allclose(out[:, :16], y[:, :16], atol=1e-5)
    assert np.abs(out[:, 20:] - y[:, 20:]).max() > 0.01
    # 0.5, the smallest label sigma, is the default (the magnify command's too)
    assert MagnifyParams.in_focus_sigma == float(SIGMAS[0]) == 0.5
    np.testing.assert_array_equal(np.asarray(magnify_blur(y, d, 3.0)), out)
    assert np.abs(np.asarray(magnify_blur(y, d, 3.0, in_focus_sigma=0.0))[:, :16] - y[:, :16]).max() > 0.01


def test_sharp_foreground_does_not_bleed():
    img = np.full((H, W, 3), 0.2, np.float32)
    img[12:28, 16:32] = 1.0
    d = np.full((H, W), 2.0, np.float32)
    d[12:28, 16:32] = 0.0
    out = np.asarray(magnify_blur(img, d, 3.0))
    np.testing.assert_allclose(out, img, atol=1e-5)
    naive = np.asarray(gaussian_blur(img, 2.0 * np.sqrt(8.0)))
    assert np.abs(naive - img).max() > 0.1  # a plain blur would bleed


def test_factor_one_is_identity(rng):
    y = _texture(rng, H, W)
    d = rng.random((H, W)).astype(np.float32) * 2
    np.testing.assert_allclose(np.asarray(magnify_blur(y, d, 1.0)), y, atol=1e-5)


def test_jit_equals_eager_and_no_recompilation(rng):
    y = _texture(rng, H, W)
    d = (rng.random((H, W)) * 2).astype(np.float32)
    args = (y, d, np.float32(2.0), np.float32(0.0))
    jitted = np.asarray(_magnify_impl(*args, num_levels=10))
    # Eager: the Python body outside jit, op by op (jax.disable_jit costs ~20 s of per-op
    # compilation on a busy 2-core machine; lax.scan still compiles its body here).
    eager = np.asarray(_magnify_impl.__wrapped__(*args, num_levels=10))
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    magnify_blur(y, d, 2.0)
    n = _magnify_impl._cache_size()
    magnify_blur(y * 0.5, d * 0.7, 3.5)
    assert _magnify_impl._cache_size() == n


@pytest.mark.parametrize(
    "image,defocus,factor,exc,match",
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 9), np.float32), 2.0, ValueError, "shape"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), 2.0, ValueError, r"\(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 1), np.float32), 2.0, ValueError, r"\(H, W\)"),
        (np.zeros((8, 8, 3), np.float32), np.full((8, 8), np.nan, np.float32), 2.0, ValueError, "NaN"),
        (np.zeros((8, 8, 3), np.float32), -np.ones((8, 8), np.float32), 2.0, ValueError, "negative"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), 0.0, ValueError, "factor"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), -1.0, ValueError, "factor"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), 0.5, ValueError, "all_in_focus"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), float("nan"), ValueError, "finite"),
        (np.full((8, 8, 3), 2.0, np.float32), np.ones((8, 8), np.float32), 2.0, ValueError, r"\[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.float32), 2.0, TypeError, "float"),
        ("img.png", np.ones((8, 8), np.float32), 2.0, TypeError, "array"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), "2", TypeError, "factor"),
    ],
)
def test_validation(image, defocus, factor, exc, match):
    with pytest.raises(exc, match=match):
        magnify_blur(image, defocus, factor)


def test_validation_num_levels():
    with pytest.raises(ValueError, match="num_levels"):
        magnify_blur(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32), 2.0, num_levels=1)
