"""Blur segmentation by thresholding (paper Eq. 13), sweeps, overlays and the sweep figure."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from dhde.applications import blur_threshold, overlay_mask, segment_blur, tau_sweep_figure, threshold_sweep
from dhde.applications.segmentation import _sweep_impl, _threshold_impl
from dhde.labels import SIGMAS


def test_two_region_map():
    d = np.full((10, 12), 0.5, np.float32)
    d[:, 6:] = 2.0
    tau = float(blur_threshold(d))
    assert tau == pytest.approx(0.3 * 2.0 + 0.7 * 0.5)
    mask = np.asarray(segment_blur(d))
    assert mask.dtype == np.bool_ and mask.shape == (10, 12)
    assert mask[:, 6:].all() and not mask[:, :6].any()  # blurred = large defocus = True


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 1.0])
def test_segment_blur_matches_numpy(rng, alpha):
    d = (0.5 + 1.5 * rng.random((15, 17))).astype(np.float32)
    tau = alpha * d.max() + (1 - alpha) * d.min()
    np.testing.assert_array_equal(np.asarray(segment_blur(d, alpha)), d > np.float32(tau))


def test_constant_map_is_all_sharp():
    assert not np.asarray(segment_blur(np.ones((5, 5), np.float32))).any()


def test_threshold_sweep_matches_loop(rng):
    d = (2.0 * rng.random((9, 11))).astype(np.float32)
    masks = np.asarray(threshold_sweep(d, SIGMAS))
    assert masks.shape == (len(SIGMAS), 9, 11) and masks.dtype == np.bool_
    for t, tau in enumerate(SIGMAS):
        np.testing.assert_array_equal(masks[t], d > tau)
    assert np.all(masks[:-1].sum((1, 2)) >= masks[1:].sum((1, 2)))  # monotone in tau


def test_overlay_mask_matches_formula(rng):
    img = rng.random((6, 7, 3)).astype(np.float32)
    mask = rng.random((6, 7)) > 0.5
    out = np.asarray(overlay_mask(img, mask, color=(0.0, 1.0, 0.5), alpha=0.25))
    ref = img.copy()
    ref[mask] = 0.75 * img[mask] + 0.25 * np.array([0.0, 1.0, 0.5])
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_jit_equals_eager_and_no_recompilation(rng):
    d = (2.0 * rng.random((9, 11))).astype(np.float32)
    taus = np.array([0.7, 1.2], np.float32)
    with jax.disable_jit():
        e_tau = np.asarray(_threshold_impl(d, np.float32(0.3)))
        e_masks = np.asarray(_sweep_impl(d, taus))
    np.testing.assert_allclose(np.asarray(_threshold_impl(d, np.float32(0.3))), e_tau, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(_sweep_impl(d, taus)), e_masks)
    segment_blur(d, 0.3)
    n = (_threshold_impl._cache_size(), _sweep_impl._cache_size())
    segment_blur(d * 2.0, 0.6)
    assert (_threshold_impl._cache_size(), _sweep_impl._cache_size()) == n


def test_tau_sweep_figure_writes_png(tmp_path, rng):
    img = rng.random((24, 32, 3)).astype(np.float32)
    d = (0.5 + 1.5 * rng.random((24, 32))).astype(np.float32)
    path = tau_sweep_figure(img, d, [0.8, 1.2, 1.6], tmp_path / "figs" / "sweep.png", ncols=3)
    assert path.exists()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.mark.parametrize(
    "fn,args,exc,match",
    [
        (segment_blur, (np.ones((4, 4), np.float32), 1.5), ValueError, "alpha"),
        (segment_blur, (np.ones((4, 4), np.float32), -0.1), ValueError, "alpha"),
        (segment_blur, (np.full((4, 4), np.nan, np.float32),), ValueError, "NaN"),
        (segment_blur, (-np.ones((4, 4), np.float32),), ValueError, "negative"),
        (segment_blur, (np.ones((4,), np.float32),), ValueError, r"\(H, W\)"),
        (segment_blur, (np.ones((4, 4), bool),), TypeError, "numeric"),
        (threshold_sweep, (np.ones((4, 4), np.float32), []), ValueError, "non-empty"),
        (threshold_sweep, (np.ones((4, 4), np.float32), [np.nan]), ValueError, "NaN"),
        (threshold_sweep, (np.ones((4, 4), np.float32), 1.0), TypeError, "sequence"),
        (overlay_mask, (np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32)), TypeError, "bool"),
        (overlay_mask, (np.zeros((4, 4, 3), np.float32), np.ones((4, 5), bool)), ValueError, "shape"),
        (overlay_mask, (np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool), (1, 0)), ValueError, "color"),
        (overlay_mask, (np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool), (1, 0, 0), 2.0), ValueError, "alpha"),
        (tau_sweep_figure, (np.zeros((4, 4, 3), np.float32), np.ones((4, 5), np.float32), [1.0], "x.png"), ValueError, "shape"),
    ],
)
def test_validation(tmp_path, monkeypatch, fn, args, exc, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        fn(*args)


# ----------------------------------------------------------------------------- rules


def _otsu_brute(values, nbins=256):
    """Otsu by brute force over the bin centres: the split maximising the between-class
    variance of the binned values (each value stands at its bin centre)."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = v.min(), v.max()
    width = (hi - lo) / nbins
    idx = np.clip(np.floor((v - lo) / width), 0, nbins - 1).astype(int)
    centers = lo + width * (np.arange(nbins) + 0.5)
    binned = centers[idx]
    best, best_t = -1.0, None
    for t in centers[:-1]:
        a, b = binned[binned <= t], binned[binned > t]
        if not a.size or not b.size:
            continue
        var = a.size * b.size * (a.mean() - b.mean()) ** 2
        if var > best * (1 + 1e-9):
            best, best_t = var, t
    return best_t


def test_otsu_rule_against_brute_force_and_skimage(rng):
    from skimage.filters import threshold_otsu

    from dhde.applications import otsu_threshold

    for seed in range(3):
        r = np.random.default_rng(seed)
        d = np.where(r.random((30, 40)) < 0.4, r.lognormal(np.log(0.7), 0.15, (30, 40)),
                     r.lognormal(np.log(3.0), 0.25, (30, 40))).astype(np.float32)
        tau = float(otsu_threshold(d))
        ref = np.exp(_otsu_brute(np.log(d.astype(np.float64))))
        width = (np.log(d.max()) - np.log(d.min())) / 256
        assert abs(np.log(tau) - np.log(ref)) <= width * 1.01  # the same bin (float32 binning)
        sk = np.exp(threshold_otsu(np.log(d.astype(np.float64)), nbins=256))
        assert abs(np.log(tau) - np.log(sk)) <= width * 1.01
        mask = np.asarray(segment_blur(d, rule="otsu"))
        np.testing.assert_array_equal(mask, d > np.float32(tau))
        assert 0.3 < mask.mean() < 0.8  # the two populations are split


def test_absolute_rule_and_errors(rng):
    d = (0.5 + 3 * rng.random((8, 9))).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(segment_blur(d, rule="absolute", tau=1.7)), d > np.float32(1.7))
    np.testing.assert_array_equal(np.asarray(segment_blur(d, rule="absolute")), d > np.float32(1.0))
    with pytest.raises(ValueError, match="rule"):
        segment_blur(d, rule="mean")
    with pytest.raises(ValueError, match="tau"):
        segment_blur(d, rule="alpha", tau=1.0)
    with pytest.raises(ValueError, match="tau"):
        segment_blur(d, rule="absolute", tau=0.0)
    with pytest.raises(TypeError, match="tau"):
        segment_blur(d, rule="absolute", tau="1")
    with pytest.raises(ValueError, match="> 0"):
        segment_blur(np.zeros((4, 4), np.float32), rule="otsu")
    assert not np.asarray(segment_blur(np.ones((5, 5), np.float32), rule="otsu")).any()
