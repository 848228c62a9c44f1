"""Tests of dhde.propagation.matting: float32 stencil vs float64 sparse reference vs a brute-force loop."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.propagation import matting
from dhde.propagation.matting import (
    STENCIL_OFFSETS,
    laplacian_apply,
    laplacian_diagonal,
    matting_laplacian_coefficients,
)
from reference.matting_laplacian import assemble_matting_laplacian, coefficients_to_sparse

_LAPLACIAN_APPLY_JIT = jax.jit(matting.laplacian_apply)


def brute_force_laplacian(guide: np.ndarray, eps: float, divide: bool) -> np.ndarray:
    """Dense Eq. 7, one window and one (i, j) pair at a time."""
    h, w, _ = guide.shape
    g = guide.astype(np.float64)
    n = h * w
    lap = np.zeros((n, n))
    for ky in range(1, h - 1):
        for kx in range(1, w - 1):
            pix = [(ky + dy, kx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            cols = np.array([g[y, x] for y, x in pix])
            mu = cols.mean(0)
            cov = (cols - mu).T @ (cols - mu) / 9.0
            inv = np.linalg.inv(cov + (eps / 9.0 if divide else eps) * np.eye(3))
            for (yi, xi), ci in zip(pix, cols):
                for (yj, xj), cj in zip(pix, cols):
                    delta = 1.0 if (yi, xi) == (yj, xj) else 0.0
                    lap[yi * w + xi, yj * w + xj] += delta - (1.0 + (ci - mu) @ inv @ (cj - mu)) / 9.0
    return lap


def guides() -> dict:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:24] / 24.0
    smooth = np.stack([0.5 + 0.3 * np.sin(3 * xx), 0.4 + 0.2 * yy, 0.3 + 0.1 * xx * yy], -1)
    edge = np.full((20, 24, 3), 0.2)
    edge[:, 11:] = 0.7
    edge += 1e-3 * rng.standard_normal(edge.shape)  # near-grey, near-singular covariances
    grey = np.repeat(rng.random((20, 24, 1)), 3, -1)
    return {
        "random": rng.random((20, 24, 3)),
        "smooth": smooth,
        "edge": np.clip(edge, 0, 1),
        "grey": grey,
    }


GUIDES = guides()


@pytest.mark.parametrize("eps_mode", ["code", "paper"])
def test_assembled_matches_brute_force(eps_mode, rng):
    guide = rng.random((6, 7, 3))
    ref = brute_force_laplacian(guide, 1e-3, divide=eps_mode == "paper")
    got = assemble_matting_laplacian(guide, 1e-3, eps_mode=eps_mode).toarray()
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_paper_mode_is_code_mode_with_eps_over_9(rng):
    guide = rng.random((8, 9, 3))
    a = assemble_matting_laplacian(guide, 9e-4, eps_mode="paper")
    b = assemble_matting_laplacian(guide, 1e-4, eps_mode="code")
    assert abs(a - b).max() < 1e-10


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_stencil_matches_assembled(name, rng):
    guide = GUIDES[name].astype(np.float32)
    h, w, _ = guide.shape
    ref = assemble_matting_laplacian(guide)
    coeffs = matting_laplacian_coefficients(guide)
    assert coeffs.shape == (12, h, w) and coeffs.dtype == jnp.float32
    got = coefficients_to_sparse(coeffs)
    assert abs(got - ref).max() <= 1e-4 * abs(ref).max()
    for x in [rng.standard_normal((h, w)), np.linspace(0, 1, h * w).reshape(h, w)]:
        x = x.astype(np.float32)
        y64 = (ref @ x.astype(np.float64).ravel()).reshape(h, w)
        y32 = np.asarray(laplacian_apply(coeffs, x), np.float64)
        assert np.linalg.norm(y32 - y64) <= 1e-4 * np.linalg.norm(y64)
    np.testing.assert_allclose(
        laplacian_diagonal(coeffs), ref.diagonal().reshape(h, w), rtol=1e-4, atol=1e-5
    )


def test_paper_mode_stencil(rng):
    guide = GUIDES["random"].astype(np.float32)
    ref = assemble_matting_laplacian(guide, eps_mode="paper")
    coeffs = matting_laplacian_coefficients(guide, eps_mode="paper")
    x = rng.standard_normal(guide.shape[:2]).astype(np.float32)
    y64 = ref @ x.astype(np.float64).ravel()
    y32 = np.asarray(laplacian_apply(coeffs, x), np.float64).ravel()
    assert np.linalg.norm(y32 - y64) <= 1e-4 * np.linalg.norm(y64)


def test_symmetric_zero_row_sums_psd(rng):
    guide = GUIDES["edge"].astype(np.float32)
    h, w, _ = guide.shape
    coeffs = matting_laplacian_coefficients(guide)
    x, y = rng.standard_normal((2, h, w)).astype(np.float32)
    xly = float(jnp.vdot(x, laplacian_apply(coeffs, y)))
    ylx = float(jnp.vdot(y, laplacian_apply(coeffs, x)))
    assert abs(xly - ylx) <= 1e-5 * (abs(xly) + abs(ylx))
    np.testing.assert_array_equal(laplacian_apply(coeffs, np.ones((h, w), np.float32)), 0.0)
    dense = coefficients_to_sparse(coeffs).toarray()
    np.testing.assert_array_equal(dense, dense.T)
    assert np.linalg.eigvalsh(dense).min() > -1e-5


def test_constant_guide_gives_box_graph_weights():
    # Constant colour: every window adds 1/9 to each pair it contains (Z = 0).
    coeffs = np.asarray(matting_laplacian_coefficients(np.full((20, 24, 3), 0.4, np.float32)))
    for k, (dy, dx) in enumerate(STENCIL_OFFSETS):
        y, x = 4, 4  # interior pixel: windows containing p and p + d
        count = sum(
            1
            for ky, kx in itertools.product(range(1, 19), range(1, 23))
            if max(abs(ky - y), abs(kx - x)) <= 1 and max(abs(ky - y - dy), abs(kx - x - dx)) <= 1
        )
        np.testing.assert_allclose(coeffs[k, y, x], count / 9.0, rtol=1e-6)
    assert coeffs[0, 0, 23] == 0.0  # (0, 1) leaves the image on the right


def test_jit_equals_eager(rng):
    guide = jnp.asarray(rng.random((20, 24, 3)), jnp.float32)
    lam = jnp.float32(9e-5)
    jitted = matting.stencil_coefficients(guide, lam)
    with jax.disable_jit():
        eager = matting.stencil_coefficients(guide, lam)
        x = jnp.asarray(rng.standard_normal((20, 24)), jnp.float32)
        eager_apply = _LAPLACIAN_APPLY_JIT(jitted, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(laplacian_apply(jitted, x), eager_apply, rtol=1e-5, atol=1e-5)


def test_vmap_equals_loop(rng):
    coeffs = matting_laplacian_coefficients(GUIDES["smooth"].astype(np.float32))
    xs = jnp.asarray(rng.standard_normal((3, 20, 24)), jnp.float32)
    batched = jax.vmap(matting.laplacian_apply, in_axes=(None, 0))(coeffs, xs)
    for i in range(3):
        np.testing.assert_allclose(batched[i], laplacian_apply(coeffs, xs[i]), rtol=1e-6, atol=1e-6)


def test_no_recompilation(rng):
    g1, g2 = rng.random((2, 20, 24, 3)).astype(np.float32)
    c1 = matting_laplacian_coefficients(g1)
    laplacian_apply(c1, g1[..., 0])
    sizes = matting.stencil_coefficients._cache_size(), _LAPLACIAN_APPLY_JIT._cache_size()
    c2 = matting_laplacian_coefficients(g2, eps=1e-4)  # eps is traced
    laplacian_apply(c2, g2[..., 1])
    assert (matting.stencil_coefficients._cache_size(), _LAPLACIAN_APPLY_JIT._cache_size()) == sizes


@pytest.mark.parametrize(
    "guide, match",
    [
        (np.zeros((5, 5)), "shape"),
        (np.zeros((5, 5, 4)), "shape"),
        (np.zeros((2, 5, 3)), "at least 3x3"),
        (np.full((5, 5, 3), np.nan), "NaN"),
    ],
)
def test_bad_guide(guide, match):
    with pytest.raises(ValueError, match=match):
        matting_laplacian_coefficients(guide)
    with pytest.raises(ValueError, match=match):
        assemble_matting_laplacian(guide)


def test_bad_options():
    guide = np.zeros((20, 24, 3))
    with pytest.raises(ValueError, match="eps"):
        matting_laplacian_coefficients(guide, eps=0.0)
    with pytest.raises(ValueError, match="eps_mode"):
        matting_laplacian_coefficients(guide, eps_mode="levin")
    coeffs = matting_laplacian_coefficients(guide)
    with pytest.raises(ValueError, match="shape"):
        laplacian_apply(coeffs, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="coeffs"):
        laplacian_apply(coeffs[:3], np.zeros((20, 24)))


@pytest.mark.parametrize("shape, band_pixels", [((61, 130), 1_300), ((64, 128), 2_000), ((37, 96), 96 * 8)])
def test_banded_coefficients_equal_one_pass(rng, shape, band_pixels):
    """Large images are computed in row bands (bounded temporaries): the same numbers bit for
    bit, including the image's first and last rows and an overlapping last band."""
    h, w = shape
    guide = jnp.asarray(rng.random((h, w, 3)), jnp.float32)
    lam = jnp.float32(9e-5)
    rows = matting._band_rows(h, w, band_pixels)
    assert -(-h // rows) >= 3  # really banded: first, middle and (overlapping) last bands
    banded = np.asarray(matting.stencil_coefficients(guide, lam, band_pixels=band_pixels))
    whole = np.asarray(matting.stencil_coefficients(guide, lam, band_pixels=h * w))
    np.testing.assert_array_equal(banded, whole)
    # and against the float64 reference, like the one-pass form
    ref = assemble_matting_laplacian(np.asarray(guide, np.float64), 1e-5)
    x = rng.standard_normal((h, w))
    expect = (ref @ x.ravel()).reshape(h, w)
    got = np.asarray(laplacian_apply(banded, x.astype(np.float32)))
    assert np.abs(got - expect).max() <= 1e-4 * np.abs(expect).max()


def test_band_rows():
    assert matting._band_rows(480, 640, matting.BAND_PIXELS) == 480  # one pass up to 1 MP
    assert matting._band_rows(3000, 4000, matting.BAND_PIXELS) == 250
    assert matting._band_rows(10, 10, 1) == 8  # at least 8 rows per band
