"""Joint weighted median filter: brute-force NumPy reference, jit, vmap, no recompilation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dhde.filters.weighted_median import joint_weighted_median
from helpers import assert_jit_matches_eager


def _reference(x, g, radius, sigma_r, iterations):
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    h, w = x.shape
    for _ in range(iterations):
        out = np.empty_like(x)
        for i in range(h):
            for j in range(w):
                r0, r1, c0, c1 = max(i - radius, 0), min(i + radius + 1, h), max(j - radius, 0), min(j + radius + 1, w)
                v = x[r0:r1, c0:c1].ravel()
                d = ((g[r0:r1, c0:c1] - g[i, j]) ** 2).sum(-1).ravel()
                wt = np.exp(-d / (2 * sigma_r**2))
                order = np.argsort(v, kind="stable")
                cum = np.cumsum(wt[order])
                out[i, j] = v[order][np.searchsorted(cum, 0.5 * cum[-1] - 1e-9 * cum[-1])]
        x = out
    return x


def _data(h=13, w=17, seed=0):
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0.5, 2.0, (h, w)), 2).astype(np.float32)  # values 0.01 apart
    g = rng.random((h, w, 3)).astype(np.float32)
    g[:, : w // 2] += 1.0  # a strong guidance edge
    return x, g


@pytest.mark.parametrize("radius,sigma_r,iterations", [(1, 0.25, 1), (2, 0.5, 2), (5, 0.25, 1)])
def test_matches_brute_force(radius, sigma_r, iterations):
    x, g = _data()
    got = np.asarray(joint_weighted_median(x, g, radius, sigma_r, iterations, band=5))
    np.testing.assert_allclose(got, _reference(x, g, radius, sigma_r, iterations), atol=1e-6)
    assert np.isin(got, x).all()  # every output is an input value


def test_grey_guide_and_edge_preservation():
    x = np.zeros((12, 12), np.float32)
    x[:, 6:] = 2.0
    x[3, 3] = 2.0  # an outlier on the flat side
    g = (x > 1).astype(np.float32)
    g[3, 3] = 0.0  # the guidance does not see it
    y = np.asarray(joint_weighted_median(x, g, 2, 0.1, 1))
    np.testing.assert_array_equal(y[:, 6:], 2.0)
    np.testing.assert_array_equal(y[:, :6], 0.0)


def test_jit_eager_vmap_and_no_recompile():
    x, g = _data(9, 11, 1)
    assert_jit_matches_eager(lambda a, b: joint_weighted_median(a, b, 2, 0.3, 2, band=4), x, g, atol=1e-6)
    xs = np.stack([x, x[::-1]])
    gs = np.stack([g, g[::-1]])
    batched = jax.vmap(lambda a, b: joint_weighted_median(a, b, 2, 0.3, 2, band=4))(xs, gs)
    for k in range(2):
        np.testing.assert_allclose(np.asarray(batched[k]),
                                   np.asarray(joint_weighted_median(xs[k], gs[k], 2, 0.3, 2, band=4)), atol=1e-6)
    from dhde.filters import weighted_median as wm

    joint_weighted_median(x + 0.1, g, 2, 0.3, 2, band=4)
    n = wm._weighted_median._cache_size()
    joint_weighted_median(x * 1.5, g * 0.5, 2, 0.7, 2, band=4)  # new values and sigma_r
    assert wm._weighted_median._cache_size() == n


def test_iterations_zero_and_validation():
    x, g = _data(6, 7)
    np.testing.assert_array_equal(np.asarray(joint_weighted_median(x, g, iterations=0)), x)
    with pytest.raises(ValueError, match="x must have shape"):
        joint_weighted_median(x[None], g)
    with pytest.raises(ValueError, match="spatial shape"):
        joint_weighted_median(x, g[:-1])
    with pytest.raises(ValueError, match="NaN"):
        joint_weighted_median(np.where(x > 1, np.nan, x), g)
    with pytest.raises(ValueError, match="sigma_r"):
        joint_weighted_median(x, g, sigma_r=0.0)
    with pytest.raises(ValueError, match="radius"):
        joint_weighted_median(x, g, radius=-1)
