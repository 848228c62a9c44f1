"""All-in-focus deconvolution: operators, w-step, PSNR on a synthetic two-region blur, jit, validation."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.fft
from scipy import ndimage
from skimage import data

from dhde.applications import _spectral, all_in_focus, shrink
from dhde.applications.deblur import _all_in_focus_impl, _betas
from dhde.filters.gaussian import gaussian_blur, gaussian_kernel1d


# ---------------------------------------------------------------- DCT-domain operators
# Jitted wrappers: one compilation each instead of per-op dispatch.
dct2, idct2 = jax.jit(_spectral.dct2), jax.jit(_spectral.idct2)
blur = jax.jit(_spectral.blur)
grad, grad_adjoint = jax.jit(_spectral.grad), jax.jit(_spectral.grad_adjoint)
laplacian_eigenvalues = _spectral.laplacian_eigenvalues


def test_dct2_matches_scipy_and_inverts(rng):
    for shape in [(7, 6), (5, 9), (1, 4)]:
        x = rng.random((2,) + shape).astype(np.float32)
        ref = scipy.fft.dctn(x.astype(np.float64), type=2, axes=(1, 2)) / 4.0
        np.testing.assert_allclose(np.asarray(dct2(x)), ref, atol=2e-5)
        np.testing.assert_allclose(np.asarray(idct2(dct2(x))), x, atol=2e-6)


@pytest.mark.parametrize("sigma", [0.5, 1.25, 2.0, 3.7])
def test_blur_matches_reflect_convolution(rng, sigma):
    x = rng.random((23, 30)).astype(np.float32)
    k = gaussian_kernel1d(sigma)
    ref = ndimage.correlate1d(x.astype(np.float64), k, axis=0, mode="reflect")
    ref = ndimage.correlate1d(ref, k, axis=1, mode="reflect")
    np.testing.assert_allclose(np.asarray(blur(x, sigma)), ref, atol=2e-5)


def _diff_matrix(n):
    d = np.eye(n, k=1) - np.eye(n)
    d[-1] = 0.0
    return d


def test_grad_adjoint_and_laplacian(rng):
    h, w = 6, 5
    x, wx, wy = (rng.random((h, w)) for _ in range(3))
    dy, dx = _diff_matrix(h), _diff_matrix(w)
    gx, gy = grad(x.astype(np.float32))
    np.testing.assert_allclose(np.asarray(gx), x @ dx.T, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gy), dy @ x, atol=1e-6)
    adj = grad_adjoint(wx.astype(np.float32), wy.astype(np.float32))
    np.testing.assert_allclose(np.asarray(adj), wx @ dx + dy.T @ wy, atol=1e-6)
    lap = dy.T @ dy @ x + x @ (dx.T @ dx).T
    got = idct2(dct2(x.astype(np.float32)) * laplacian_eigenvalues((h, w)))
    np.testing.assert_allclose(np.asarray(got), lap, atol=1e-5)


# ---------------------------------------------------------------- w-step
def _brute_shrink(v, beta, alpha):
    """float64 two-stage grid search of |w|^alpha + beta/2 (w - |v|)^2 over (0, |v|], then
    the better of that and w = 0. Also returns |f(interior) - f(0)| (ties are ambiguous)."""
    a = np.abs(v).astype(np.float64)[:, None]
    f = lambda w: np.abs(w) ** alpha + 0.5 * beta * (w - a) ** 2  # noqa: E731
    g = np.linspace(1.0 / 4000, 1.0, 4000)[None, :] * a
    best = g[np.arange(a.shape[0]), f(g).argmin(1)][:, None]
    step = a / 4000.0
    g2 = np.clip(best + np.linspace(-1.0, 1.0, 2001)[None, :] * step, 1e-12, a)
    w = g2[np.arange(a.shape[0]), f(g2).argmin(1)]
    fw, f0 = f(w[:, None])[:, 0], 0.5 * beta * a[:, 0] ** 2
    w = np.where(fw < f0, w, 0.0)
    return np.sign(v) * w, np.abs(fw - f0)


@pytest.mark.parametrize("alpha", [0.5, 2.0 / 3.0, 0.8, 1.0])
@pytest.mark.parametrize("beta", [1.0, 8.0, 181.0])
def test_shrink_matches_bruteforce(rng, alpha, beta):
    v = np.concatenate([np.linspace(-5, 5, 401), rng.normal(0, 0.3, 200)]).astype(np.float32)
    ref, gap = _brute_shrink(v, beta, alpha)
    got = np.asarray(shrink(v, beta, alpha))
    clear = gap > 1e-5  # away from the tie between w = 0 and the interior minimum
    assert np.abs(got - ref)[clear].max() < 1e-4
    assert np.all(np.abs(got) <= np.abs(v) + 1e-7)


def test_shrink_validation():
    with pytest.raises(ValueError, match="alpha"):
        shrink(np.zeros(3, np.float32), 1.0, 1.5)
    with pytest.raises(ValueError, match="beta"):
        shrink(np.zeros(3, np.float32), 0.0)
    with pytest.raises(TypeError, match="array"):
        shrink([0.0, 1.0], 1.0)


def test_betas_follow_fast_deconv():
    expected = [1.0, 2 * np.sqrt(2), 8.0, 16 * np.sqrt(2), 64.0, 128 * np.sqrt(2)]  # < 256
    np.testing.assert_allclose(_betas(2 * np.sqrt(2), 256.0), expected, rtol=1e-5)


# ---------------------------------------------------------------- deconvolution
def _psnr(a, b, mask=None):
    e = (np.asarray(a, np.float64) - b) ** 2
    return 10 * np.log10(1.0 / (e[mask] if mask is not None else e).mean())


@pytest.fixture(scope="module")
def two_region_case():
    """camera crop 128x128 (sharp), left half blurred by sigma 0.5, right half by 2.0."""
    cam = data.camera()[100:228, 200:328].astype(np.float32) / 255.0
    sharp = np.repeat(cam[..., None], 3, axis=-1)
    d = np.full((128, 128), 0.5, np.float32)
    d[:, 64:] = 2.0
    y = np.where(d[..., None] > 1, gaussian_blur(sharp, 2.0), gaussian_blur(sharp, 0.5))
    return sharp, np.asarray(y, np.float32), d


def test_all_in_focus_improves_psnr_without_border_ringing(two_region_case):
    sharp, y, d = two_region_case
    out = np.asarray(all_in_focus(y, d, levels=(0.5, 2.0)))
    assert out.shape == y.shape and out.dtype == np.float32
    gain = _psnr(out, sharp) - _psnr(y, sharp)
    assert gain > 2.0, gain  # measured +3.2 dB (24.4 -> 27.6 dB)
    border = np.zeros((128, 128), bool)
    border[:8], border[-8:], border[:, :8], border[:, -8:] = True, True, True, True
    rmse = lambda m: np.sqrt(((out - sharp) ** 2)[m].mean())  # noqa: E731
    assert rmse(border) < 1.25 * rmse(~border)  # no ringing explosion at the image borders
    # The band next to the blur boundary is not damaged by the sharper region.
    band = np.zeros((128, 128), bool)
    band[:, 64:80] = True
    assert _psnr(out, sharp, band) > _psnr(y, sharp, band) + 2.0
    # The sharp region improves too.
    left = np.zeros((128, 128), bool)
    left[:, :48] = True
    assert _psnr(out, sharp, left) > _psnr(y, sharp, left)


def test_without_reblur_the_boundary_band_rings(two_region_case):
    sharp, y, d = two_region_case
    band = np.zeros((128, 128), bool)
    band[:, 64:80] = True
    kw = dict(levels=(0.5, 2.0), lam=2e4)
    good = _psnr(all_in_focus(y, d, **kw), sharp, band)
    bad = _psnr(all_in_focus(y, d, reblur=False, **kw), sharp, band)
    assert good > bad + 5.0


def test_alpha_half(two_region_case):
    sharp, y, d = two_region_case
    out = np.asarray(all_in_focus(y, d, alpha=0.5, levels=(0.5, 2.0)))
    assert _psnr(out, sharp) - _psnr(y, sharp) > 2.0  # measured +2.8 dB


def test_jit_equals_eager_and_no_recompilation(rng):
    y = rng.random((16, 12, 3)).astype(np.float32)
    d = (0.5 + 1.5 * rng.random((16, 12))).astype(np.float32)
    args = (y, d, np.array([0.5, 2.0], np.float32), np.float32(2e3), np.float32(2 / 3), _betas(2.83, 256.0))
    jitted = np.asarray(_all_in_focus_impl(*args, 1, 5, np.bool_(True)))
    eager = np.asarray(_all_in_focus_impl.__wrapped__(*args, 1, 5, np.bool_(True)))
    np.testing.assert_allclose(jitted, eager, atol=1e-4)
    all_in_focus(y, d, num_levels=2)
    n = _all_in_focus_impl._cache_size()
    all_in_focus(y * 0.5, d * 0.5, num_levels=2, lam=500.0, alpha=0.5, reblur=False)
    assert _all_in_focus_impl._cache_size() == n


def test_constant_map_and_zero_sigma(rng):
    y = rng.random((16, 12, 3)).astype(np.float32)
    out = np.asarray(all_in_focus(y, np.zeros((16, 12), np.float32), num_levels=2))
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
    # sigma 0 = no blur: the result is a (mildly) denoised copy of the input.
    assert np.abs(out - y).mean() < 0.05


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(defocus=np.ones((16, 13), np.float32)), ValueError, "shape"),
        (dict(defocus=np.full((16, 12), np.nan, np.float32)), ValueError, "NaN"),
        (dict(defocus=-np.ones((16, 12), np.float32)), ValueError, "negative"),
        (dict(image=np.zeros((16, 12), np.float32)), ValueError, r"\(H, W, 3\)"),
        (dict(lam=0.0), ValueError, "lam"),
        (dict(alpha=0.0), ValueError, "alpha"),
        (dict(alpha=2.0), ValueError, "alpha"),
        (dict(levels=(2.0, 1.0)), ValueError, "increasing"),
        (dict(levels=(-1.0, 1.0)), ValueError, ">= 0"),
        (dict(levels=[[1.0]]), ValueError, "1-D"),
        (dict(beta_rate=1.0), ValueError, "beta_rate"),
        (dict(num_levels=0), ValueError, "num_levels"),
        (dict(image=np.zeros((16, 12, 3), np.int32)), TypeError, "float"),
    ],
)
def test_validation(kwargs, exc, match):
    args = dict(image=np.zeros((16, 12, 3), np.float32), defocus=np.ones((16, 12), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        all_in_focus(args.pop("image"), args.pop("defocus"), **args)
