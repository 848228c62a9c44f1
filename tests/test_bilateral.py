"""Probability-joint bilateral filter (Eq. 6) vs a brute-force loop; jit/eager/vmap, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.filters import bilateral
from dhde.filters.bilateral import probability_joint_bilateral_filter as pjbf
from dhde.labels import SIGMAS


def _reference(sparse, mask, conf, guide, sigma_s, sigma_r, sigma_c, radius, first=False):
    """Brute-force float64 Eq. 6 over mask neighbours in the window, zero padding."""
    h, w = sparse.shape
    g = guide[..., :1] if first else guide
    g = g.astype(np.float64)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            num = den = 0.0
            for yy in range(max(0, y - radius), min(h, y + radius + 1)):
                for xx in range(max(0, x - radius), min(w, x + radius + 1)):
                    if not mask[yy, xx]:
                        continue
                    wgt = np.exp(
                        -((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma_s**2)
                        - np.sum((g[y, x] - g[yy, xx]) ** 2) / (2 * sigma_r**2)
                        - (1 - conf[yy, xx]) ** 2 / (2 * sigma_c**2)
                    )
                    num += wgt * sparse[yy, xx]
                    den += wgt
            out[y, x] = num / den
    return out


@pytest.fixture
def maps(rng):
    h, w = 14, 17
    mask = rng.random((h, w)) < 0.3
    mask[0, 0] = mask[-1, -1] = True  # corners: zero padding
    mask[5, 6] = False
    sparse = np.where(mask, rng.choice(SIGMAS, (h, w)), 0.0).astype(np.float32)
    sparse[5, 6] = 7.0  # off the mask: must be ignored although non-zero
    conf = rng.random((h, w)).astype(np.float32)
    guide = rng.random((h, w, 3)).astype(np.float32)
    return sparse, mask, conf, guide


CASES = [(100.0, 100.0, 1.0), (5.0, 20.0, 1.0), (3.0, 0.2, 0.3)]


@pytest.mark.parametrize("sigma_s,sigma_r,sigma_c", CASES)
@pytest.mark.parametrize("range_channels", ["rgb", "first"])
@pytest.mark.parametrize("method", ["auto", "direct"])
def test_matches_brute_force(maps, sigma_s, sigma_r, sigma_c, range_channels, method):
    sparse, mask, conf, guide = maps
    got = pjbf(
        sparse, mask, conf, guide, sigma_s=sigma_s, sigma_r=sigma_r, sigma_c=sigma_c,
        range_channels=range_channels, method=method,
    )
    ref = _reference(sparse, mask, conf, guide, sigma_s, sigma_r, sigma_c, 13, range_channels == "first")
    assert got.shape == sparse.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), ref, atol=3e-6)
    assert np.all(np.asarray(got)[~mask] == 0)


def test_expansion_path(maps):
    """The separable expansion is exact at sigma_r = 100 and wrong at small sigma_r, where
    method="auto" must fall back to the direct loop (covered by test_matches_brute_force)."""
    sparse, mask, conf, guide = maps
    args = (jnp.asarray(sparse), jnp.asarray(mask), jnp.asarray(conf), jnp.asarray(guide))

    def run(sigma_r, order):
        out = bilateral._pjbf(
            *args, 100.0, sigma_r, 1.0, radius=13, range_channels="rgb", method="expansion", order=order
        )
        return np.asarray(out)

    for order in (1, 2):
        ref = _reference(sparse, mask, conf, guide, 100.0, 100.0, 1.0, 13)
        np.testing.assert_allclose(run(100.0, order), ref, atol=3e-6)
    ref = _reference(sparse, mask, conf, guide, 100.0, 0.2, 1.0, 13)
    assert np.abs(run(0.2, 1) - ref).max() > 1e-2


def test_window_and_confidence(maps):
    sparse, mask, conf, guide = maps
    got = pjbf(sparse, mask, conf, guide, sigma_s=2.0, sigma_r=0.5, sigma_c=0.5, window=5)
    ref = _reference(sparse, mask, conf, guide, 2.0, 0.5, 0.5, 2)
    np.testing.assert_allclose(np.asarray(got), ref, atol=3e-6)


def test_low_confidence_outlier_is_suppressed():
    h, w = 14, 17  # the shape of the other tests: reuses their compilation
    mask = np.ones((h, w), bool)
    sparse = np.full((h, w), 1.0, np.float32)
    conf = np.full((h, w), 0.9, np.float32)
    sparse[4, 4], conf[4, 4] = 2.0, 0.1  # low-confidence outlier
    guide = np.full((h, w, 3), 0.5, np.float32)
    out = np.asarray(pjbf(sparse, mask, conf, guide, sigma_c=0.2))
    assert abs(out[4, 4] - 1.0) < 1e-3
    plain = np.asarray(pjbf(sparse, mask, np.ones_like(conf), guide))
    assert out[4, 3] < plain[4, 3]  # the confidence weight lowers the outlier's influence


def test_empty_mask_and_single_point(maps):
    sparse, mask, conf, guide = maps
    empty = np.asarray(pjbf(sparse, np.zeros_like(mask), conf, guide))
    assert np.all(empty == 0)
    one = np.zeros_like(mask)
    one[3, 4] = True
    out = np.asarray(pjbf(sparse, one, conf, guide))
    assert out[3, 4] == pytest.approx(sparse[3, 4]) and np.count_nonzero(out) == 1


def test_jit_equals_eager(maps):
    sparse, mask, conf, guide = maps
    for method in ("auto", "direct"):
        f = lambda s, r: pjbf(sparse, mask, conf, guide, sigma_s=s, sigma_r=r, window=7, method=method)  # noqa: E731
        got = jax.jit(f)(6.0, 0.4)
        with jax.disable_jit():
            eager = f(6.0, 0.4)
        np.testing.assert_allclose(np.asarray(got), np.asarray(eager), atol=1e-6)


def test_no_recompilation_when_sigmas_change(maps):
    sparse, mask, conf, guide = maps
    pjbf(sparse, mask, conf, guide)
    before = bilateral._pjbf._cache_size()
    pjbf(sparse, mask, conf, guide, sigma_s=50.0, sigma_r=0.3, sigma_c=2.0)
    pjbf(sparse * 2, ~mask, conf * 0.5, guide, sigma_s=7.0)
    assert bilateral._pjbf._cache_size() == before


def test_vmap_equals_loop(maps, rng):
    sparse, mask, conf, guide = maps
    masks = np.stack([mask, ~mask])
    guides = np.stack([guide, rng.random(guide.shape).astype(np.float32)])
    f = lambda m, g: pjbf(sparse, m, conf, g, sigma_r=30.0, window=9)  # noqa: E731
    got = jax.vmap(f)(masks, guides)
    ref = np.stack([np.asarray(f(m, g)) for m, g in zip(masks, guides)])
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)


def test_input_validation(maps):
    sparse, mask, conf, guide = maps
    with pytest.raises(TypeError, match="mask"):
        pjbf(sparse, mask.astype(np.float32), conf, guide)
    with pytest.raises(ValueError, match="confidence"):
        pjbf(sparse, mask, conf + 1.0, guide)
    with pytest.raises(ValueError, match="guidance"):
        pjbf(sparse, mask, conf, guide[:-1])
    with pytest.raises(ValueError, match="mask shape"):
        pjbf(sparse, mask[:-1], conf, guide)
    with pytest.raises(ValueError, match="dimensions"):
        pjbf(sparse[None], mask, conf, guide)
    bad = sparse.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pjbf(bad, mask, conf, guide)
    with pytest.raises(ValueError, match="window"):
        pjbf(sparse, mask, conf, guide, window=26)
    with pytest.raises(ValueError, match="sigma_c"):
        pjbf(sparse, mask, conf, guide, sigma_c=0.0)
    with pytest.raises(ValueError, match="range_channels"):
        pjbf(sparse, mask, conf, guide, range_channels="green")
    with pytest.raises(ValueError, match="method"):
        pjbf(sparse, mask, conf, guide, method="expansion")
