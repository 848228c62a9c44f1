"""Tests for dhde.filters.edges: MATLAB-style Canny and the two-scale edge map.

References written here:
- ``_matlab_canny_np``: an independent NumPy/SciPy transcription of MATLAB ``edge(I,'canny')``
  (scipy.ndimage.convolve1d for ``imfilter(...,'conv','replicate')``, MATLAB's column-major
  linear-index formulation of ``cannyFindLocalMaxima``, scipy.ndimage.label for ``bwselect``),
  computed in float64.
- scikit-image's ``feature.canny``, which differs from MATLAB in its gradient operator (Sobel of
  a Gaussian-smoothed image instead of a derivative-of-Gaussian kernel) and in using ``>=``
  instead of ``>``; only approximate agreement is expected there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi

from dhde.filters import edges

SQRT2 = math.sqrt(2.0)
SMALL = (16, 24)  # one small shape for the jit/eager and degenerate-image tests (few compiles)


# ----------------------------------------------------------------------------- references


def _matlab_kernels(sigma):
    ext = math.ceil(4 * sigma)
    x = np.arange(-ext, ext + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    g /= g.sum()
    d = np.gradient(g)  # central differences inside, one-sided at the ends, like MATLAB
    d[d > 0] /= d[d > 0].sum()
    d[d < 0] /= -d[d < 0].sum()
    return g, d


def _matlab_gradient_np(img, sigma=SQRT2):
    g, d = _matlab_kernels(sigma)
    img = np.asarray(img, np.float64)
    conv = lambda a, k, axis: ndi.convolve1d(a, k, axis=axis, mode="nearest")  # true convolution
    gx = conv(conv(img, g, 0), d, 1)
    gy = conv(conv(img, g, 1), d, 0)
    return gx, gy


def _find_local_maxima_np(direction, ix, iy, mag):
    """Transcription of MATLAB cannyFindLocalMaxima with 0-based column-major indices."""
    m, n = mag.shape
    ixf, iyf, magf = (a.ravel(order="F") for a in (ix, iy, mag))
    if direction == 1:
        sel = ((iyf <= 0) & (ixf > -iyf)) | ((iyf >= 0) & (ixf < -iyf))
    elif direction == 2:
        sel = ((ixf > 0) & (-iyf >= ixf)) | ((ixf < 0) & (-iyf <= ixf))
    elif direction == 3:
        sel = ((ixf <= 0) & (ixf > iyf)) | ((ixf >= 0) & (ixf < iyf))
    else:
        sel = ((iyf < 0) & (ixf <= iyf)) | ((iyf > 0) & (ixf >= iyf))
    idx = np.flatnonzero(sel)
    row, col = idx % m, idx // m
    idx = idx[(row > 0) & (row < m - 1) & (col > 0) & (col < n - 1)]
    ixv, iyv, gm = ixf[idx], iyf[idx], magf[idx]
    if direction in (1, 4):
        dd = np.abs(iyv / ixv)
    else:
        dd = np.abs(ixv / iyv)
    if direction == 1:
        g1 = magf[idx + m] * (1 - dd) + magf[idx + m - 1] * dd
        g2 = magf[idx - m] * (1 - dd) + magf[idx - m + 1] * dd
    elif direction == 2:
        g1 = magf[idx - 1] * (1 - dd) + magf[idx + m - 1] * dd
        g2 = magf[idx + 1] * (1 - dd) + magf[idx - m + 1] * dd
    elif direction == 3:
        g1 = magf[idx - 1] * (1 - dd) + magf[idx - m - 1] * dd
        g2 = magf[idx + 1] * (1 - dd) + magf[idx + m + 1] * dd
    else:
        g1 = magf[idx - m] * (1 - dd) + magf[idx - m - 1] * dd
        g2 = magf[idx + m] * (1 - dd) + magf[idx + m + 1] * dd
    return idx[(gm >= g1) & (gm >= g2)]


def _bwselect_np(cand, seeds):
    lab, count = ndi.label(cand, structure=np.ones((3, 3), bool))
    good = np.zeros(count + 1, bool)
    good[np.unique(lab[seeds & cand])] = True
    good[0] = False
    return good[lab]


def _matlab_canny_np(img, low, high, sigma=SQRT2):
    gx, gy = _matlab_gradient_np(img, sigma)
    mag = np.hypot(gx, gy)
    if mag.max() > 0:
        mag = mag / mag.max()
    m, n = mag.shape
    e = np.zeros(m * n, bool)
    for direction in (1, 2, 3, 4):
        idx = _find_local_maxima_np(direction, gx, gy, mag)
        e[idx[mag.ravel(order="F")[idx] > low]] = True
    e = e.reshape((m, n), order="F")
    return _bwselect_np(e, (mag > high) & e)


# ----------------------------------------------------------------------------- test images


def _half(a):
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def photos():
    """Three scikit-image photographs as value channels in [0, 1], halved (<= 256 px side)."""
    from skimage import data

    return {
        "camera": _half(data.camera().astype(np.float32) / 255),  # 256 x 256
        "astronaut": _half(data.astronaut().max(-1).astype(np.float32) / 255),  # 256 x 256
        "coffee": _half(data.coffee().max(-1).astype(np.float32) / 255),  # 200 x 300
    }


# ----------------------------------------------------------------------------- tests


def test_kernels_match_reference():
    g, d = edges.derivative_of_gaussian_kernels(SQRT2)
    rg, rd = _matlab_kernels(SQRT2)
    assert g.shape == (13,)
    np.testing.assert_allclose(g, rg, rtol=1e-12)
    np.testing.assert_allclose(d, rd, rtol=1e-12)
    assert d[0] > 0 and d[6] == 0 and abs(d.sum()) < 1e-12


def test_gradient_matches_matlab_convention(photos):
    img = photos["coffee"]
    gx, gy, mag = (np.asarray(a) for a in edges.smooth_gradient(img))
    rx, ry = _matlab_gradient_np(img)
    np.testing.assert_allclose(gx, rx, atol=2e-6)
    np.testing.assert_allclose(gy, ry, atol=2e-6)
    rm = np.hypot(rx, ry)
    np.testing.assert_allclose(mag, rm / rm.max(), atol=2e-5)
    # sign convention: intensity increasing to the right / downwards gives positive gx / gy
    ramp = np.tile(np.arange(SMALL[1], dtype=np.float32) / SMALL[1], (SMALL[0], 1))
    gx, gy, _ = edges.smooth_gradient(ramp)
    assert float(gx[8, 12]) > 0 and abs(float(gy[8, 12])) < 1e-6
    ramp = np.tile(np.arange(SMALL[0], dtype=np.float32)[:, None] / SMALL[0], (1, SMALL[1]))
    gx, gy, _ = edges.smooth_gradient(ramp)
    assert float(gy[8, 12]) > 0 and abs(float(gx[8, 12])) < 1e-6


@pytest.mark.parametrize("pair", [(0.117, 0.176), (0.234, 0.351), (0.05, 0.5)])
def test_canny_matches_numpy_matlab_transcription(photos, pair):
    for name, img in photos.items():
        ours = np.asarray(edges.canny(img, *pair))
        ref = _matlab_canny_np(img, *pair)
        agree = (ours == ref).mean()
        print(f"numpy-MATLAB {name} {pair}: agreement {100 * agree:.4f} %, "
              f"edges {ref.sum()} vs {ours.sum()}")
        assert agree >= 0.999, (name, agree)
        assert ref.sum() > 100  # the test exercises real edges


def _gain_ratio_sobel_over_dog(sigma=SQRT2):
    """Response of scipy's Sobel to the response of MATLAB's derivative kernel on a unit ramp.

    On a linear ramp I = x every smoothing kernel (normalised to sum 1) is neutral, so MATLAB's
    gradient is sum_k |k| |deriv_k| (per pixel), while ``ndi.sobel`` ([-1, 0, 1] times the
    unnormalised [1, 2, 1] cross smoothing) gives 2 * 4 = 8. skimage's magnitude is therefore
    ~ (8 / sum |k||d_k|) times MATLAB's un-normalised magnitude; fractions of MATLAB's maximum
    become absolute skimage thresholds after this scaling.
    """
    _, d = _matlab_kernels(sigma)
    k = np.arange(d.size) - d.size // 2
    dog = float(np.sum(np.abs(k) * np.abs(d)))
    ramp = np.tile(np.arange(40, dtype=np.float64), (5, 1))
    assert ndi.sobel(ramp, axis=1)[2, 20] == 8.0
    return 8.0 / dog


def test_canny_close_to_skimage(photos):
    from skimage.feature import canny as sk_canny

    ratio = _gain_ratio_sobel_over_dog()
    for low, high in edges.ESTIMATION_THRESHOLDS:
        for name, img in photos.items():
            gx, gy, _ = edges.smooth_gradient(img)
            raw_max = float(jnp.max(jnp.hypot(gx, gy)))
            ours = np.asarray(edges.canny(img, low, high))
            ref = sk_canny(img.astype(np.float64), sigma=SQRT2, low_threshold=low * raw_max * ratio,
                           high_threshold=high * raw_max * ratio, mode="nearest")
            agree = (ours == ref).mean()
            iou = (ours & ref).sum() / max(1, (ours | ref).sum())
            print(f"skimage {name} ({low}, {high}): agreement {100 * agree:.3f} %, "
                  f"edge IoU {iou:.3f}, edges {ref.sum()} vs {ours.sum()}")
            assert agree >= 0.99, (name, agree)
            assert iou > 0.5, (name, iou)


@pytest.mark.parametrize("shape,density", [((16, 24), 0.3), ((24, 16), 0.5), ((24, 16), 0.65)])
def test_hysteresis_vs_label(rng, shape, density):
    for _ in range(4):
        cand = rng.random(shape) < density
        strong = cand & (rng.random(shape) < 0.02)
        ours = np.asarray(edges.hysteresis(cand, strong))
        np.testing.assert_array_equal(ours, _bwselect_np(cand, strong))


def test_hysteresis_long_snake():
    """A single serpentine 8-connected path whose only seed is at its far end."""
    cand = np.zeros((24, 16), bool)
    cand[0:21:4, 1:-1] = True
    for r in range(0, 17, 4):
        cand[r + 1 : r + 4, 14 if (r // 4) % 2 == 0 else 1] = True
    assert ndi.label(cand, np.ones((3, 3)))[1] == 1
    strong = np.zeros_like(cand)
    strong[20, 8] = True
    np.testing.assert_array_equal(np.asarray(edges.hysteresis(cand, strong)), _bwselect_np(cand, strong))
    strong[:] = False
    assert not np.asarray(edges.hysteresis(cand, strong)).any()


def test_jit_equals_eager(photos):
    """Eager run of this module's code (magnitude, NMS, hysteresis, scale combination).

    The separable filtering is ``dhde.filters.gaussian.convolve1d_replicate`` (tested there); running it
    eagerly costs one compilation per shifted slice, so its jitted output is the common input.
    """
    img = photos["camera"][100 : 100 + SMALL[0], 100 : 100 + SMALL[1]]
    jitted = np.asarray(edges.canny(img, 0.1, 0.3))
    jitted_scales = np.asarray(edges.scale_map(img))
    gx, gy, _ = edges.smooth_gradient(img)
    with jax.disable_jit():
        mag = edges._normalised_magnitude(gx, gy)
        maxima = edges._local_maxima(gx, gy, mag)
        eager = np.asarray(edges._hysteresis_impl(maxima & (mag > 0.1), mag > 0.3))
        e1, e2 = (np.asarray(edges._hysteresis_impl(maxima & (mag > lo), mag > hi))
                  for lo, hi in edges.ESTIMATION_THRESHOLDS)
    assert jitted.any()
    np.testing.assert_array_equal(jitted, eager)
    np.testing.assert_array_equal(jitted_scales, np.maximum(e1.astype(np.int32), 2 * e2))


def test_no_recompilation(photos):
    img = photos["coffee"]  # shapes already compiled by other tests cost nothing here
    edges.canny(img, 0.1, 0.2)
    edges.scale_map(img)
    n_canny, n_scale = edges._canny_jit._cache_size(), edges._scale_map_jit._cache_size()
    edges.canny(img + 0.01, 0.15, 0.45)  # same shape, new image, new thresholds
    edges.canny(np.asarray(img * 0.5), 0.2, 0.25)
    edges.scale_map(img, edges.TRAINING_THRESHOLDS)
    edges.scale_map(img * 0.9)
    assert edges._canny_jit._cache_size() == n_canny
    assert edges._scale_map_jit._cache_size() == n_scale


def test_constant_and_degenerate_images():
    const = np.full(SMALL, 0.4, np.float32)
    assert not np.asarray(edges.canny(const, 0.1, 0.2)).any()
    assert not np.asarray(edges.scale_map(const)).any()
    _, _, mag = edges.smooth_gradient(const)
    assert np.isfinite(np.asarray(mag)).all()
    # a vertical step: one edge column, no border pixels
    step = np.zeros(SMALL, np.float32)
    step[:, 12:] = 1.0
    e = np.asarray(edges.canny(step, 0.1, 0.2))
    assert e.any() and not (e[0].any() or e[-1].any() or e[:, 0].any() or e[:, -1].any())
    np.testing.assert_array_equal(e, _matlab_canny_np(step, 0.1, 0.2))
    # scale invariance: thresholds are relative to the maximum magnitude
    np.testing.assert_array_equal(np.asarray(edges.canny(step * 7.0, 0.1, 0.2)), e)


def test_input_validation():
    good = np.zeros((10, 10), np.float32)
    bad_nan = good.copy()
    bad_nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        edges.canny(bad_nan, 0.1, 0.2)
    with pytest.raises(ValueError, match="NaN"):
        edges.scale_map(bad_nan)
    with pytest.raises(ValueError, match="2-D"):
        edges.canny(np.zeros((10, 10, 3), np.float32), 0.1, 0.2)
    with pytest.raises(ValueError, match="3x3"):
        edges.scale_map(np.zeros((2, 10), np.float32))
    with pytest.raises(TypeError, match="float"):
        edges.canny(np.zeros((10, 10), np.uint8), 0.1, 0.2)
    for low, high in [(0.2, 0.1), (0.1, 1.0), (-0.1, 0.5), (0.3, 0.3)]:
        with pytest.raises(ValueError, match="low < high"):
            edges.canny(good, low, high)
    with pytest.raises(ValueError, match="low < high"):
        edges.scale_map(good, ((0.1, 0.2), (0.5, 0.4)))
    with pytest.raises(ValueError, match="shape"):
        edges.scale_map(good, (0.1, 0.2))
    with pytest.raises(TypeError, match="bool"):
        edges.hysteresis(good, good > 0)


def test_scale_map_values_and_relation(photos):
    img = photos["coffee"]
    for pairs in (edges.ESTIMATION_THRESHOLDS, edges.TRAINING_THRESHOLDS):
        s = np.asarray(edges.scale_map(img, pairs))
        assert s.dtype == np.int32 and s.shape == img.shape
        assert set(np.unique(s)) <= {0, 1, 2}
        e1 = np.asarray(edges.canny(img, *pairs[0]))
        e2 = np.asarray(edges.canny(img, *pairs[1]))
        np.testing.assert_array_equal(s, np.maximum(e1.astype(np.int32), 2 * e2))
        assert (s == 2).sum() > 0 and (s == 1).sum() > 0
        # strong-scale pixels are edges at both pairs (components at higher low are nested)
        assert e1[s == 2].all() and e2[s == 2].all()
    assert edges.ESTIMATION_THRESHOLDS == ((0.117, 0.176), (0.234, 0.351))
    assert edges.TRAINING_THRESHOLDS == ((0.234, 0.351), (0.468, 0.702))
