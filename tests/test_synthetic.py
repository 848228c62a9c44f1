"""Layered spatially varying blur and the stereo_motorcycle scene."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dhde.evaluation import synthetic as S
from dhde.filters.gaussian import gaussian_blur, gaussian_kernel1d


# One image shape for most tests, so that the jitted renderer compiles only a few times.
SHAPE = (16, 40, 3)


def smooth_image(rng, shape=SHAPE):
    """A natural-ish image: smoothed noise with an edge, in [0, 1]."""
    x = ndimage.gaussian_filter(rng.random(shape), (1.5, 1.5, 0))
    x[:, shape[1] // 2 :] += 0.3
    return (x / x.max()).astype(np.float32)


def ref_blur(img, sigma):
    """scipy reference: separable correlation with the same kernel, replicate borders."""
    if sigma == 0:
        return img.astype(np.float64)
    k = gaussian_kernel1d(sigma)
    out = ndimage.correlate1d(img.astype(np.float64), k, axis=0, mode="nearest")
    return ndimage.correlate1d(out, k, axis=1, mode="nearest")


def ref_render(img, sigma_map, levels):
    """Per-pixel loop: interpolate between the two bracketing levels."""
    stack = [ref_blur(img, s) for s in levels]
    out = np.zeros(img.shape, np.float64)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            s = min(max(float(sigma_map[i, j]), levels[0]), levels[-1])
            k = max(0, min(int(np.searchsorted(levels, s, side="right")) - 1, len(levels) - 2))
            w = (s - levels[k]) / (levels[k + 1] - levels[k])
            out[i, j] = (1 - w) * stack[k][i, j] + w * stack[k + 1][i, j]
    return out


def test_constant_sigma_on_a_level_is_a_gaussian_blur(rng):
    img = smooth_image(rng)
    for s in (0.8, 2.0):
        out = np.asarray(S.render_defocus(img, np.full(img.shape[:2], s, np.float32)))
        np.testing.assert_allclose(out, np.asarray(gaussian_blur(img, s)), atol=2e-6)
        np.testing.assert_allclose(out, ref_blur(img, s), atol=2e-6)


def test_constant_sigma_between_levels_is_close_to_a_gaussian_blur(rng):
    img = smooth_image(rng)
    for s in (0.6, 1.0, 1.7):
        out = np.asarray(S.render_defocus(img, np.full(img.shape[:2], s, np.float32)))
        assert np.abs(out - ref_blur(img, s)).max() < 0.01


def test_zero_sigma_is_identity(rng):
    img = smooth_image(rng)
    out = S.render_defocus(img, np.zeros(img.shape[:2], np.float32))
    np.testing.assert_allclose(np.asarray(out), img, atol=1e-7)


def test_varying_sigma_matches_per_pixel_reference(rng):
    img = smooth_image(rng)
    sigma = rng.uniform(0.0, 2.0, img.shape[:2]).astype(np.float32)
    sigma[0, :3] = [0.0, 2.0, 0.5]
    levels = S.default_levels(0.0, 2.0)
    assert levels[0] == 0.0 and levels[-1] == 2.0
    out = np.asarray(S.render_defocus(img, sigma))
    np.testing.assert_allclose(out, ref_render(img, sigma, levels), atol=2e-6)
    # explicit levels, sigmas outside are clamped
    out2 = np.asarray(S.render_defocus(img[..., 0], sigma, levels=(0.5, 1.0, 1.5)))
    np.testing.assert_allclose(out2, ref_render(img[..., 0], sigma, (0.5, 1.0, 1.5)), atol=2e-6)


def test_two_regions_far_from_the_boundary(rng):
    img = smooth_image(rng)
    sigma = np.full(img.shape[:2], 0.5, np.float32)
    sigma[:, 20:] = 2.0
    out = np.asarray(S.render_defocus(img, sigma))
    # a pixel sees only its own sigma: the result is exact right up to the boundary
    np.testing.assert_allclose(out[:, :20], np.asarray(gaussian_blur(img, 0.5))[:, :20], atol=2e-6)
    np.testing.assert_allclose(out[:, 20:], np.asarray(gaussian_blur(img, 2.0))[:, 20:], atol=2e-6)


def test_more_sigma_means_smoother(rng):
    img = smooth_image(rng)
    tv = []
    for s in np.linspace(0.0, 2.0, 9):
        out = np.asarray(S.render_defocus(img, np.full(img.shape[:2], s, np.float32)))
        tv.append(np.abs(np.diff(out, axis=1)).sum() + np.abs(np.diff(out, axis=0)).sum())
    assert np.all(np.diff(tv) < 0)


def test_jit_equals_eager_and_no_recompilation(rng):
    img = smooth_image(rng)
    sigma = rng.uniform(0.5, 1.0, img.shape[:2]).astype(np.float32)
    out = np.asarray(S.render_defocus(img, sigma, levels=(0.5, 1.0)))
    size = S._render._cache_size()
    out_again = np.asarray(S.render_defocus(img * 0.5, sigma[::-1].copy(), levels=(0.5, 1.0)))
    assert S._render._cache_size() == size
    assert out_again.shape == out.shape
    # the traced body run op by op (inner dhde.filters.gaussian helpers stay jitted: cheap to dispatch)
    eager = np.asarray(S._render.__wrapped__(jnp.asarray(img), jnp.asarray(sigma), (0.5, 1.0)))
    np.testing.assert_allclose(out, eager, atol=2e-6)


def test_vmap_over_images_equals_loop(rng):
    imgs = np.stack([smooth_image(rng) for _ in range(2)])
    sigma = rng.uniform(0.5, 2.0, SHAPE[:2]).astype(np.float32)
    levels = S.default_levels(0.5, 2.0)
    batched = jax.vmap(lambda x: S._render(x, sigma, levels))(imgs)
    for i in range(2):
        np.testing.assert_allclose(batched[i], S.render_defocus(imgs[i], sigma), atol=1e-6)


def test_default_levels():
    assert S.default_levels(0.5, 2.0) == tuple(round(0.5 + 0.15 * k, 6) for k in range(11))
    assert S.default_levels(0.55, 0.7) == (0.5, 0.65, 0.8)
    assert S.default_levels(0.0, 0.3)[0] == 0.0
    assert S.default_levels(0.8, 0.8) == (0.8,)
    with pytest.raises(ValueError):
        S.default_levels(1.0, 0.5)


def test_render_defocus_bad_inputs():
    img = np.zeros((5, 6, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        S.render_defocus(img, np.zeros((6, 5)))
    with pytest.raises(ValueError, match=">= 0"):
        S.render_defocus(img, -np.ones((5, 6)))
    with pytest.raises(ValueError, match="NaN"):
        S.render_defocus(img, np.full((5, 6), np.nan))
    with pytest.raises(TypeError, match="float"):
        S.render_defocus(img.astype(np.uint8), np.ones((5, 6)))
    with pytest.raises(ValueError, match="increase"):
        S.render_defocus(img, np.ones((5, 6)), levels=(1.0, 0.5))
    with pytest.raises(ValueError, match="shape"):
        S.render_defocus(np.zeros((2, 5, 6, 3), np.float32), np.ones((5, 6)))


def test_fill_invalid_is_nearest_valid():
    d = np.array([[1.0, np.inf, np.inf, 4.0, 5.0],
                  [1.0, 2.0, np.nan, 0.0, 5.0],
                  [9.0, 9.0, 9.0, 9.0, 9.0]], np.float32)
    out = S.fill_invalid(d)
    valid = np.argwhere(np.isfinite(d) & (d > 0))
    for i, j in np.argwhere(~(np.isfinite(d) & (d > 0))):
        dist = ((valid - [i, j]) ** 2).sum(1)
        nearest = {float(d[tuple(v)]) for v in valid[dist == dist.min()]}
        assert float(out[i, j]) in nearest
    assert np.all(out[np.isfinite(d) & (d > 0)] == d[np.isfinite(d) & (d > 0)])
    with pytest.raises(ValueError, match="no valid"):
        S.fill_invalid(np.full((2, 2), np.inf))


def test_disparity_to_sigma():
    d = np.array([[10.0, 20.0, 30.0], [np.inf, 40.0, 0.0]])
    near = S.disparity_to_sigma(d, "near")
    far = S.disparity_to_sigma(d, "far", sigma_range=(0.5, 2.0))
    assert near[1, 1] == pytest.approx(0.5) and near[0, 0] == pytest.approx(2.0)
    assert far[1, 1] == pytest.approx(2.0) and far[0, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(near[0], [2.0, 1.5, 1.0], rtol=1e-6)  # linear in disparity
    np.testing.assert_allclose(near + far, 2.5, rtol=1e-6)
    assert np.all(np.isfinite(near))
    clipped = S.disparity_to_sigma(np.arange(1.0, 101.0).reshape(10, 10), clip_percentile=10)
    assert clipped.min() == pytest.approx(0.5) and clipped.max() == pytest.approx(2.0)
    assert (clipped == np.float32(0.5)).sum() > 5
    with pytest.raises(ValueError, match="focus"):
        S.disparity_to_sigma(d, "middle")


def test_stereo_motorcycle_scene_small():
    image, sigma = S.stereo_motorcycle_scene(focus="near", downscale=8)
    assert image.shape == (62, 92, 3) and sigma.shape == (62, 92)
    assert image.dtype == np.float32 and sigma.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert sigma.min() == pytest.approx(0.5) and sigma.max() == pytest.approx(2.0)
    _, sigma_far = S.stereo_motorcycle_scene(focus="far", downscale=8)
    np.testing.assert_allclose(sigma + sigma_far, 2.5, rtol=1e-5)
    with pytest.raises(ValueError, match="downscale"):
        S.stereo_motorcycle_scene(downscale=0)


def test_stereo_motorcycle_scene_noise():
    clean, sigma = S.stereo_motorcycle_scene(downscale=8)
    noisy, sigma2 = S.stereo_motorcycle_scene(downscale=8, noise=2.0, seed=3)
    np.testing.assert_array_equal(sigma, sigma2)
    res = (noisy - clean) * 255.0
    inside = (clean > 0.05) & (clean < 0.95)  # away from clipping
    assert abs(res[inside].mean()) < 0.1
    assert res[inside].std() == pytest.approx(2.0, rel=0.05)
    again, _ = S.stereo_motorcycle_scene(downscale=8, noise=2.0, seed=3)
    np.testing.assert_array_equal(noisy, again)  # seeded
    assert noisy.dtype == np.float32 and 0.0 <= noisy.min() and noisy.max() <= 1.0
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="noise"):
            S.stereo_motorcycle_scene(downscale=8, noise=bad)
