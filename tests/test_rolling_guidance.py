"""Rolling guidance filter vs a brute-force NumPy loop, SciPy's Gaussian, jit/eager/vmap."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from dhde.filters import rolling_guidance as rgf_mod
from dhde.filters.rolling_guidance import joint_bilateral_filter, rolling_guidance_filter
from helpers import assert_jit_matches_eager


def _jbf_reference(image, guide, sigma_s, sigma_r, radius, per_channel):
    """Brute-force float64 joint bilateral filter, replicate borders."""
    h, w, c = image.shape
    out = np.zeros((h, w, c))
    for y in range(h):
        for x in range(w):
            ys = np.clip(np.arange(y - radius, y + radius + 1), 0, h - 1)
            xs = np.clip(np.arange(x - radius, x + radius + 1), 0, w - 1)
            dy, dx = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij")
            spatial = (dy**2 + dx**2) / (2 * sigma_s**2)
            win_i = image[np.ix_(ys, xs)]  # (k, k, c)
            diff2 = (guide[np.ix_(ys, xs)] - guide[y, x]) ** 2
            if not per_channel:
                diff2 = np.repeat(diff2.sum(-1, keepdims=True), c, axis=-1)
            wgt = np.exp(-spatial[..., None] - diff2 / (2 * sigma_r**2))
            out[y, x] = (wgt * win_i).sum((0, 1)) / wgt.sum((0, 1))
    return out


def _rgf_reference(image, sigma_s, sigma_r, iterations, radius, per_channel):
    image = image.astype(np.float64)
    guide = np.zeros_like(image)  # constant first guidance: step 1 is a Gaussian blur
    for _ in range(iterations):
        guide = _jbf_reference(image, guide, sigma_s, sigma_r, radius, per_channel)
    return guide


@pytest.fixture
def image(rng):
    # A step edge plus texture: exercises the range term.
    img = rng.random((12, 15, 3)).astype(np.float32) * 0.3
    img[:, 8:] += 0.6
    return img


@pytest.mark.parametrize(
    "sigma_s,sigma_r,iterations,per_channel",
    [(1.5, 1.5, 3, True), (1.5, 1.5, 3, False), (1.0, 0.1, 3, False), (0.7, 0.05, 2, True)],
)
def test_matches_brute_force(image, per_channel, sigma_s, sigma_r, iterations):
    radius = math.ceil(3 * sigma_s)
    got = rolling_guidance_filter(image, sigma_s, sigma_r, iterations, per_channel=per_channel)
    ref = _rgf_reference(image, sigma_s, sigma_r, iterations, radius, per_channel)
    assert got.shape == image.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-6)


def test_joint_bilateral_step_matches_brute_force(image, rng):
    guide = rng.random(image.shape).astype(np.float32)
    for per_channel in (True, False):
        got = joint_bilateral_filter(image, guide, 1.2, 0.3, per_channel=per_channel, radius=3)
        ref = _jbf_reference(image.astype(np.float64), guide.astype(np.float64), 1.2, 0.3, 3, per_channel)
        np.testing.assert_allclose(np.asarray(got), ref, atol=2e-6)


def test_first_iteration_is_scipy_gaussian(image):
    # radius ceil(3 * 1.5) = 5 = int(truncate * sigma + 0.5) with truncate = 5 / 1.5.
    got = rolling_guidance_filter(image, 1.5, 1.5, iterations=1)
    ref = ndi.gaussian_filter(image.astype(np.float64), sigma=(1.5, 1.5, 0), mode="nearest", truncate=5 / 1.5)
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)


def test_edge_preserving(image):
    """With a small sigma_r the step edge survives better than under the plain Gaussian."""
    blur = np.asarray(rolling_guidance_filter(image, 1.0, 1.5, iterations=1))
    rgf = np.asarray(rolling_guidance_filter(image, 1.0, 0.1, iterations=3))
    step = lambda x: (x[:, 8:].mean() - x[:, :8].mean())  # noqa: E731
    jump = lambda x: np.abs(x[:, 8] - x[:, 7]).mean()  # noqa: E731
    assert jump(rgf) > 1.5 * jump(blur)
    assert step(rgf) == pytest.approx(step(image), abs=0.05)


@pytest.mark.parametrize("per_channel", [True, False])
def test_jit_equals_eager(image, per_channel):
    f = lambda x, s, r: rolling_guidance_filter(x, s, r, 3, per_channel=per_channel, radius=2)  # noqa: E731
    assert_jit_matches_eager(f, image, 0.7, 0.2, atol=1e-6)


def test_no_recompilation_when_sigmas_change(image):
    f = rgf_mod._rolling_guidance
    rolling_guidance_filter(image, 1.5, 1.5)
    before = f._cache_size()
    rolling_guidance_filter(image, 1.6, 0.7, radius=5)  # same static radius, new sigmas
    rolling_guidance_filter(jnp.asarray(image) * 0.5, 1.4, 0.3, radius=5)
    assert f._cache_size() == before


def test_vmap_equals_loop(rng):
    batch = rng.random((3, 10, 13, 3)).astype(np.float32)
    for per_channel in (True, False):
        fn = lambda x: rolling_guidance_filter(x, 0.8, 0.3, 2, per_channel=per_channel, radius=2)  # noqa: E731
        got = jax.vmap(fn)(batch)
        ref = np.stack([np.asarray(fn(b)) for b in batch])
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)


def test_input_validation(image):
    with pytest.raises(ValueError, match="shape"):
        rolling_guidance_filter(image[..., 0])
    bad = image.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rolling_guidance_filter(bad)
    with pytest.raises(ValueError, match="sigma_s"):
        rolling_guidance_filter(image, sigma_s=0.0)
    with pytest.raises(ValueError, match="sigma_r"):
        rolling_guidance_filter(image, sigma_r=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        rolling_guidance_filter(image, iterations=0)
    with pytest.raises(ValueError, match="radius"):
        jax.jit(lambda s: rolling_guidance_filter(image, s))(1.5)
    with pytest.raises(TypeError, match="dtype"):
        rolling_guidance_filter(image > 0.5)
    with pytest.raises(ValueError, match="differs"):
        joint_bilateral_filter(image, image[:-1])
