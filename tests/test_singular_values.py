"""SVD feature vs float64 np.linalg.svd on random, real, flat and rank-deficient patches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import data

from dhde.features import singular_values as S
from helpers import assert_jit_matches_eager


def _reference(patches, n):
    """The feature from float64 NumPy SVD: top-n singular values, log1p, L1 normalised."""
    s = np.linalg.svd(np.asarray(patches, np.float64), compute_uv=False)[:, :n]
    y = np.log1p(s)
    tot = y.sum(-1, keepdims=True)
    return np.where(tot > 0, y / np.where(tot > 0, tot, 1.0), 0.0)


def _test_patches(w, count, seed=0):
    """Patches of skimage's camera image (sharp and Gaussian-blurred), random noise, a flat
    patch, an all-zero patch and rank-1 / rank-2 patches."""
    rng = np.random.default_rng(seed)
    cam = data.camera().astype(np.float32) / 255.0
    images = [cam, gaussian_filter(cam, 1.0), gaussian_filter(cam, 2.5)]
    real = []
    for i in range(count):
        img = images[i % len(images)]
        r, c = rng.integers(0, img.shape[0] - w, 2)
        real.append(img[r:r + w, c:c + w])
    u, v = rng.random((2, w))
    special = [np.zeros((w, w)), np.full((w, w), 0.7), np.outer(u, v),
               np.outer(u, v) + np.outer(v, u[::-1]) * 0.3, np.tile(np.linspace(0, 1, w), (w, 1))]
    noise = rng.random((4, w, w))
    return np.concatenate([np.stack(real), np.stack(special), noise]).astype(np.float32)


@pytest.mark.parametrize("w, n", [(27, 25), (15, 13)])
def test_svd_matches_numpy_float64(w, n):
    p = _test_patches(w, 40)
    out = S.singular_value_feature(p, n)
    assert out.shape == (len(p), n) and out.dtype == jnp.float32
    ref = _reference(p, n)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-6)
    o = np.asarray(out)
    assert np.all(o[1:] >= 0) and not o[40].any()  # all-zero patch -> all-zero feature
    np.testing.assert_allclose(o[np.arange(len(o)) != 40].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.diff(o, axis=1) <= 1e-7)  # descending singular values


@pytest.mark.parametrize("w, n", [(5, 4), (2, 2), (1, 1)])
def test_bidiag_matches_numpy_float64(w, n):
    p = _test_patches(w, 30, seed=w)
    out = np.asarray(S.singular_value_feature(p, n, method="bidiag"))
    np.testing.assert_allclose(out, _reference(p, n), atol=2e-5)


def test_bidiag_blocked_path_matches(monkeypatch):
    """More patches than a block (lax.map path, padded last block) still matches NumPy."""
    p = _test_patches(4, 40, seed=3)
    monkeypatch.setattr(S, "_BIDIAG_BLOCK", 16)
    monkeypatch.setattr(S, "_BISECT_BLOCK", 8)
    blocked = np.asarray(jax.jit(lambda x: S._singular_values_bidiag(x, 3))(jnp.asarray(p)))
    s = np.linalg.svd(p.astype(np.float64), compute_uv=False)[:, :3]
    np.testing.assert_allclose(blocked, s, rtol=1e-4, atol=1e-5)


def test_jit_equals_eager_and_no_recompile():
    p = _test_patches(15, 6)
    assert_jit_matches_eager(lambda x: S.singular_value_feature(x, 13), p, rtol=1e-6, atol=1e-7)
    f = jax.jit(lambda x: S.singular_value_feature(x, 13))
    f(p)
    f(p * 0.5)
    assert f._cache_size() == 1
    S.singular_value_feature(p, 13)
    before = S._sv_feature._cache_size()
    S.singular_value_feature(p[::-1] * 0.3, 13)
    assert S._sv_feature._cache_size() == before


def test_vmap_equals_loop():
    p = _test_patches(15, 6).reshape(3, -1, 15, 15)
    f = jax.vmap(lambda x: S.singular_value_feature(x, 13))
    loop = np.stack([np.asarray(S.singular_value_feature(x, 13)) for x in p])
    np.testing.assert_allclose(np.asarray(f(p)), loop, rtol=1e-6, atol=1e-7)


def test_empty_batch():
    assert S.singular_value_feature(np.zeros((0, 27, 27), np.float32), 25).shape == (0, 25)


def test_validation():
    p = np.zeros((2, 15, 15), np.float32)
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        S.singular_value_feature(np.zeros((2, 15, 14)), 13)
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        S.singular_value_feature(np.zeros((15, 15)), 13)
    with pytest.raises(ValueError, match="n must be"):
        S.singular_value_feature(p, 16)
    with pytest.raises(ValueError, match="n must be"):
        S.singular_value_feature(p, 0)
    with pytest.raises(ValueError, match="n must be"):
        S.singular_value_feature(p, 2.0)
    with pytest.raises(ValueError, match="method"):
        S.singular_value_feature(p, 13, method="gram")
    with pytest.raises(ValueError, match="NaN"):
        S.singular_value_feature(np.full((1, 15, 15), np.nan), 13)
    with pytest.raises(TypeError, match="real-valued"):
        S.singular_value_feature(np.zeros((1, 3, 3), complex), 2)
