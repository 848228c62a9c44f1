"""Tests for dhde.features.gradient (f_G): magnitudes, MATLAB-hist histograms, fast path."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from skimage import data

from dhde.features import gradient as G
from dhde.features.gradient import (
    SOBEL_SCALE,
    gradient_feature,
    gradient_feature_at,
    gradient_magnitude,
    gradient_patches,
)
from dhde.filters.patches import extract_patches
from helpers import assert_jit_matches_eager


def _camera(h: int = 48, w: int = 64) -> np.ndarray:
    return data.camera()[200 : 200 + h, 250 : 250 + w].astype(np.float32) / 255.0


def _forward_loop(g: np.ndarray) -> np.ndarray:
    h, w = g.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            gx = g[i, j + 1] - g[i, j] if j < w - 1 else g[i, j] - g[i, j - 1]
            gy = g[i + 1, j] - g[i, j] if i < h - 1 else g[i, j] - g[i - 1, j]
            out[i, j] = np.sqrt(gx * gx + gy * gy) / np.sqrt(2)
    return out


def _matlab_hist(values: np.ndarray, n: int) -> np.ndarray:
    """MATLAB hist(values, centres), centres (k - 0.5)/n, in float64 as hist.m does it."""
    centres = (np.arange(1, n + 1) - 0.5) / n
    mids = (centres[:-1] + centres[1:]) / 2
    edges = np.concatenate([[-np.inf], mids + np.spacing(mids), [np.inf]])  # "( ]" shift
    counts = np.zeros(n)
    for v in values.astype(np.float64).ravel():
        k = np.searchsorted(edges, v, side="right") - 1  # histc: edges[k] <= v < edges[k+1]
        counts[min(max(k, 0), n - 1)] += 1
    return counts


def _feature_ref(patches: np.ndarray, n: int) -> np.ndarray:
    y = np.log1p(np.stack([_matlab_hist(p, n) for p in patches]))
    return y / y.sum(1, keepdims=True)


# ------------------------------------------------------------------------ gradient_magnitude


def test_forward_magnitude_vs_loop():
    g = _camera(20, 26)
    np.testing.assert_allclose(np.asarray(gradient_magnitude(g)), _forward_loop(g), atol=1e-6)


def test_sobel_magnitude_vs_scipy():
    g = _camera(20, 26).astype(np.float64)
    gx = scipy.ndimage.sobel(g, axis=1, mode="nearest")
    gy = scipy.ndimage.sobel(g, axis=0, mode="nearest")
    ref = np.hypot(gx, gy) / np.sqrt(20)
    np.testing.assert_allclose(np.asarray(gradient_magnitude(g.astype(np.float32), "sobel")), ref, atol=1e-6)


def test_sobel_scale_is_the_exact_maximum():
    """Magnitude is convex in the 9 values, so its max over [0,1]^9 is at a binary pattern."""
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    best = max(
        np.hypot((kx * p).sum(), (kx.T * p).sum())
        for p in (np.array(bits).reshape(3, 3) for bits in itertools.product((0, 1), repeat=9))
    )
    assert best == pytest.approx(SOBEL_SCALE)
    img = np.array([[0, 0, 1], [0, 0, 1], [0, 1, 1]], np.float32)  # reaches the maximum
    assert float(gradient_magnitude(img, "sobel")[1, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["forward", "sobel"])
def test_magnitude_range(rng, method):
    img = (rng.random((30, 30)) > 0.5).astype(np.float32)  # extreme values
    m = np.asarray(gradient_magnitude(img, method))
    assert m.min() >= 0 and m.max() <= 1 + 1e-6
    corner = np.array([[0, 1], [1, 1]], np.float32)
    assert float(gradient_magnitude(corner)[0, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["forward", "sobel"])
def test_pad_equals_padded_image(method):
    g = _camera(12, 15)
    for p in (1, 4):
        np.testing.assert_allclose(
            np.asarray(gradient_magnitude(g, method, pad=p)),
            np.asarray(gradient_magnitude(np.pad(g, p, mode="edge"), method)),
            atol=1e-7,
        )


@pytest.mark.parametrize("method", ["forward", "sobel"])
def test_pad_one_reproduces_padding_by_the_radius(rng, method):
    """The authors pad by the patch radius; pad=1 plus clamp indexing gives the same patches."""
    g = _camera(20, 24)
    coords = np.array([[0, 0], [19, 23], [0, 23], [19, 0], [10, 0], [0, 11], [10, 12]], np.int32)
    for size in (27, 15):
        r = size // 2
        authors = extract_patches(gradient_magnitude(g, method, pad=r), coords + r, size)
        ours = extract_patches(gradient_magnitude(g, method, pad=1), coords + 1, size)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(authors))
        np.testing.assert_array_equal(np.asarray(gradient_patches(g, coords, size, method)), np.asarray(authors))


def test_unpadded_differs_only_at_the_border():
    g = _camera(40, 40)
    r = 7
    coords = np.array([[20, 20], [r, r], [39 - r - 1, 39 - r - 1], [0, 20], [39, 20], [20, 39]], np.int32)
    plain = np.asarray(extract_patches(gradient_magnitude(g), coords, 15))
    authors = np.asarray(extract_patches(gradient_magnitude(g, pad=1), coords + 1, 15))
    np.testing.assert_array_equal(plain[:3], authors[:3])  # off the border: identical
    for k in (3, 4, 5):  # touching the border: the two conventions differ
        assert not np.array_equal(plain[k], authors[k])


def test_gradient_magnitude_jit_eager_and_cache():
    g = jnp.asarray(_camera(16, 18))
    assert_jit_matches_eager(lambda x: G._gradient_magnitude(x, "forward", 1), g, atol=1e-7)
    gradient_magnitude(g)
    before = G._gradient_magnitude._cache_size()
    gradient_magnitude(g * 0.5)
    assert G._gradient_magnitude._cache_size() == before


def test_gradient_magnitude_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        gradient_magnitude(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="method"):
        gradient_magnitude(np.zeros((4, 4), np.float32), "prewitt")
    with pytest.raises(TypeError, match="floating"):
        gradient_magnitude(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="pad"):
        gradient_magnitude(np.zeros((4, 4), np.float32), pad=-1)
    with pytest.raises(ValueError, match="NaN"):
        gradient_magnitude(np.full((4, 4), np.inf, np.float32))
    assert np.all(np.asarray(gradient_magnitude(np.ones((1, 5), np.float32))) == 0)


# ------------------------------------------------------------------------ gradient_feature


@pytest.mark.parametrize("w, n", [(27, 25), (15, 13), (5, 1)])
def test_gradient_feature_vs_matlab_hist(rng, w, n):
    x = (rng.random((6, w, w)) ** 3).astype(np.float32)
    x[0, 0, :3] = [-0.2, 1.3, 1.0]  # outside [0, 1] and the top value
    out = np.asarray(gradient_feature(x, n))
    assert out.shape == (6, n) and out.dtype == np.float32
    np.testing.assert_allclose(out, _feature_ref(x, n), rtol=1e-6)


def test_gradient_feature_vs_numpy_histogram(rng):
    x = rng.random((4, 15, 15)).astype(np.float32)  # no value on an edge
    counts = np.stack([np.histogram(p, bins=13, range=(0, 1))[0] for p in x])
    y = np.log1p(counts)
    np.testing.assert_allclose(np.asarray(gradient_feature(x, 13)), y / y.sum(1, keepdims=True), rtol=1e-6)


def test_gradient_feature_camera(rng):
    mag = np.asarray(gradient_magnitude(_camera(), pad=1))
    coords = np.stack([rng.integers(0, 48, 8), rng.integers(0, 64, 8)], 1).astype(np.int32) + 1
    for size, n in ((27, 25), (15, 13)):
        p = np.asarray(extract_patches(mag, coords, size))
        np.testing.assert_allclose(np.asarray(gradient_feature(p, n)), _feature_ref(p, n), rtol=1e-6)


def test_gradient_feature_edge_values():
    """A value exactly on an inner edge goes to the lower bin (MATLAB hist: '( ]')."""
    n = 4  # edges 0.25, 0.5, 0.75 are exact in float32 and float64
    vals = np.array([0.0, 0.25, np.nextafter(np.float32(0.25), 1), 0.5, 0.75, 0.76, 1.0, 1.5, -1.0], np.float32)
    x = np.zeros((1, 3, 3), np.float32)
    x.ravel()[:] = vals
    counts = _matlab_hist(vals, n)
    # {0, .25, -1}, {nextafter(.25), .5}, {.75}, {.76, 1, 1.5}
    assert list(counts) == [3, 2, 1, 3]
    y = np.log1p(counts)
    np.testing.assert_allclose(np.asarray(gradient_feature(x, n))[0], y / y.sum(), rtol=1e-6)
    # float32 edges that are not exact decimals: the value float32(k/n) is on the edge too
    e = G._hist_edges(25)
    vals = jnp.asarray(np.stack([e, np.nextafter(e, np.float32(2))]))
    idx = np.asarray(jax.jit(G._bin_index, static_argnums=1)(vals, 25))
    np.testing.assert_array_equal(idx, np.stack([np.arange(24), np.arange(1, 25)]))


def test_gradient_feature_at_equals_patch_path(rng):
    mag = jnp.asarray(gradient_magnitude(_camera(), pad=1))
    h, w = mag.shape
    coords = np.stack([rng.integers(0, h, 40), rng.integers(0, w, 40)], 1).astype(np.int32)
    coords[:6] = [[0, 0], [h - 1, w - 1], [-3, 5], [h + 20, -50], [5, w + 2], [-100, -100]]
    for size, n in ((27, 25), (15, 13), (3, 2)):
        fast = np.asarray(gradient_feature_at(mag, coords, size, n))
        slow = np.asarray(gradient_feature(extract_patches(mag, coords, size), n))
        np.testing.assert_array_equal(fast, slow)
    empty = np.zeros((0, 2), np.int32)
    assert gradient_feature_at(mag, empty, 15, 13).shape == (0, 13)
    assert gradient_feature(np.zeros((0, 15, 15), np.float32), 13).shape == (0, 13)


def test_gradient_feature_jit_eager_vmap(rng):
    x = jnp.asarray((rng.random((5, 15, 15)) ** 2).astype(np.float32))
    assert_jit_matches_eager(lambda p: G._gradient_feature(p, 13), x, rtol=1e-6)
    loop = np.concatenate([np.asarray(gradient_feature(x[i : i + 1], 13)) for i in range(5)])
    np.testing.assert_allclose(np.asarray(gradient_feature(x, 13)), loop, rtol=1e-6)
    vm = jax.vmap(lambda p: gradient_feature(p[None], 13)[0])(x)
    np.testing.assert_allclose(np.asarray(vm), loop, rtol=1e-6)
    # (_gradient_feature_at is checked bit-for-bit against this path instead of eagerly: its
    # ~40 primitives would each be compiled one by one under disable_jit)


def test_gradient_feature_no_recompilation(rng):
    gradient_feature(rng.random((6, 15, 15)).astype(np.float32), 13)
    before = G._gradient_feature._cache_size()
    gradient_feature(rng.random((6, 15, 15)).astype(np.float32), 13)
    assert G._gradient_feature._cache_size() == before
    mag = rng.random((20, 22)).astype(np.float32)
    c = np.zeros((9, 2), np.int32)
    gradient_feature_at(mag, c, 15, 13)
    before = G._gradient_feature_at._cache_size()
    gradient_feature_at(mag * 0.5, c + 3, 15, 13)
    assert G._gradient_feature_at._cache_size() == before


def test_gradient_feature_bad_input():
    ok = np.zeros((2, 15, 15), np.float32)
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        gradient_feature(ok[0], 13)
    with pytest.raises(ValueError, match="n_bins"):
        gradient_feature(ok, 0)
    with pytest.raises(TypeError, match="floating"):
        gradient_feature(ok.astype(np.int32), 13)
    bad = ok.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gradient_feature(bad, 13)
    mag = np.zeros((10, 10), np.float32)
    c = np.zeros((2, 2), np.int32)
    with pytest.raises(ValueError, match="odd"):
        gradient_feature_at(mag, c, 14, 13)
    with pytest.raises(TypeError, match="integer"):
        gradient_feature_at(mag, c.astype(np.float32), 15, 13)
    with pytest.raises(ValueError, match="2-D"):
        gradient_feature_at(mag[None], c, 15, 13)
    with pytest.raises(ValueError, match="NaN"):
        gradient_feature_at(np.full((10, 10), np.nan, np.float32), c, 15, 13)
