"""Tests for dhde.features.dct (f_D) against scipy.fft and brute-force loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from skimage import data

from dhde.features import dct as D
from dhde.features.dct import dct_band_membership, dct_feature, dct_matrix, dct_size
from dhde.filters.patches import extract_patches
from helpers import assert_jit_matches_eager, jit_and_eager


def _feature_reference(patch: np.ndarray, n_bins: int) -> np.ndarray:
    """Brute force, float64: zero-pad, scipy DCT, loop over bins and coefficients."""
    w = patch.shape[0]
    n = {27: 32, 15: 16}.get(w) or int(2 ** np.ceil(np.log2(w)))
    pz = np.zeros((n, n))
    pz[:w, :w] = patch
    coef = np.abs(scipy.fft.dctn(pz, type=2, norm="ortho"))
    b = np.linspace(0, n - 1, n_bins + 1)
    d = (n - 1) / n_bins
    feat = np.zeros(n_bins)
    for k in range(n_bins):
        total, count = 0.0, 0
        for u in range(n):
            for v in range(n):
                rho = np.sqrt(u * u + v * v)
                if b[k] - 0.1 * d <= rho <= b[k + 1] + 0.1 * d:
                    total += coef[u, v]
                    count += 1
        feat[k] = total / count if count else 0.0
    y = np.log1p(feat)
    return y / y.sum() if y.sum() > 0 else y


def _camera_patches(size: int, n: int, rng) -> np.ndarray:
    img = data.camera()[100:260, 150:330].astype(np.float32) / 255.0
    coords = np.stack([rng.integers(0, img.shape[0], n), rng.integers(0, img.shape[1], n)], 1)
    coords[0] = (0, 0)  # a border patch (replicated pixels)
    return np.asarray(extract_patches(img, coords.astype(np.int32), size))


def test_dct_size():
    assert [dct_size(w) for w in (27, 15, 16, 17, 1, 3)] == [32, 16, 16, 32, 1, 4]
    with pytest.raises(ValueError):
        dct_size(0)


@pytest.mark.parametrize("n", [4, 16, 32])
def test_dct_matrix_is_scipy_ortho_dct(n):
    c = dct_matrix(n)
    np.testing.assert_allclose(c, scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0), atol=1e-12)
    np.testing.assert_allclose(c @ c.T, np.eye(n), atol=1e-12)


@pytest.mark.parametrize("n, n_bins", [(32, 25), (16, 13), (8, 3)])
def test_band_membership_vs_loop(n, n_bins):
    m = dct_band_membership(n, n_bins)
    b = np.linspace(0, n - 1, n_bins + 1)
    d = (n - 1) / n_bins
    ref = np.zeros((n * n, n_bins))
    for u in range(n):
        for v in range(n):
            for k in range(n_bins):
                if b[k] - 0.1 * d <= np.hypot(u, v) <= b[k + 1] + 0.1 * d:
                    ref[u * n + v, k] = 1
    ref /= np.maximum(ref.sum(0), 1)
    np.testing.assert_array_equal(m, ref)
    # symmetric under u <-> v (the implementation relies on it)
    np.testing.assert_array_equal(m.reshape(n, n, n_bins), m.reshape(n, n, n_bins).transpose(1, 0, 2))


@pytest.mark.parametrize("n, n_bins", [(32, 25), (16, 13)])
def test_band_boundaries_unambiguous(n, n_bins):
    """No rho lies within float error of a band boundary for the paper's sizes."""
    u = np.arange(n)
    rho = np.hypot(u[:, None], u[None, :]).ravel()
    b = np.linspace(0, n - 1, n_bins + 1)
    d = (n - 1) / n_bins
    bounds = np.concatenate([b[:-1] - 0.1 * d, b[1:] + 0.1 * d])
    assert np.abs(rho[:, None] - bounds[None, :]).min() > 1e-4


@pytest.mark.parametrize("w, n_bins", [(27, 25), (15, 13)])
def test_dct_feature_vs_reference_random(rng, w, n_bins):
    x = rng.random((6, w, w)).astype(np.float32)
    out = np.asarray(dct_feature(x, n_bins))
    assert out.shape == (6, n_bins) and out.dtype == np.float32
    ref = np.stack([_feature_reference(p.astype(np.float64), n_bins) for p in x])
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("w, n_bins", [(27, 25), (15, 13)])
def test_dct_feature_vs_reference_camera(rng, w, n_bins):
    x = _camera_patches(w, 5, rng)
    out = np.asarray(dct_feature(x, n_bins))
    ref = np.stack([_feature_reference(p.astype(np.float64), n_bins) for p in x])
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=1e-7)


def test_dct_feature_other_sizes_and_zero_patch(rng):
    x = rng.random((3, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(dct_feature(x, 4)), np.stack([_feature_reference(p, 4) for p in x]), rtol=2e-5
    )
    np.testing.assert_array_equal(np.asarray(dct_feature(np.zeros((2, 15, 15), np.float32), 13)), 0)
    assert dct_feature(np.zeros((0, 15, 15), np.float32), 13).shape == (0, 13)


def test_dct_feature_jit_eager_chunk_vmap(rng):
    x = jnp.asarray(rng.random((10, 15, 15)).astype(np.float32))
    jitted = assert_jit_matches_eager(lambda p: D._dct_feature(p, 13, None), x, rtol=1e-6, atol=1e-8)
    chunked = np.asarray(D._dct_feature(x, 13, 4))  # 3 blocks, the last one padded
    np.testing.assert_allclose(chunked, jitted, rtol=1e-6, atol=1e-8)
    loop = np.concatenate([np.asarray(dct_feature(x[i : i + 1], 13)) for i in range(10)])
    np.testing.assert_allclose(np.asarray(dct_feature(x, 13)), loop, rtol=1e-5, atol=1e-8)
    vm = jax.vmap(lambda p: dct_feature(p[None], 13)[0])(x)
    np.testing.assert_allclose(np.asarray(vm), loop, rtol=1e-5, atol=1e-8)


@jit_and_eager
def test_dct_feature_in_user_jit_and_eagerly(rng, transform):
    """Inside a user's jit (the finiteness check is skipped for tracers) and op by op."""
    x = jnp.asarray(rng.random((10, 15, 15)).astype(np.float32))
    loop = np.concatenate([np.asarray(dct_feature(x[i : i + 1], 13)) for i in range(10)])
    np.testing.assert_allclose(np.asarray(transform(lambda p: dct_feature(p, 13))(x)), loop, rtol=1e-5)


def test_dct_feature_no_recompilation(rng):
    dct_feature(rng.random((7, 15, 15)).astype(np.float32), 13)
    before = D._dct_feature._cache_size()
    dct_feature(rng.random((7, 15, 15)).astype(np.float32), 13)
    assert D._dct_feature._cache_size() == before


def test_dct_feature_bad_input():
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        dct_feature(np.zeros((15, 15), np.float32), 13)
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        dct_feature(np.zeros((2, 15, 14), np.float32), 13)
    with pytest.raises(ValueError, match="n_bins"):
        dct_feature(np.zeros((2, 15, 15), np.float32), 0)
    with pytest.raises(ValueError, match="n_bins"):
        dct_feature(np.zeros((2, 15, 15), np.float32), 2.0)
    with pytest.raises(TypeError, match="floating"):
        dct_feature(np.zeros((2, 15, 15), np.int32), 13)
    bad = np.zeros((2, 15, 15), np.float32)
    bad[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dct_feature(bad, 13)
    bad[1, 3, 4] = -np.inf
    with pytest.raises(ValueError, match="NaN"):
        dct_feature(bad, 13)
