"""Tests of dhde.propagation.solver: CG solves vs a float64 direct solve, multigrid properties."""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl

from dhde.propagation import _galerkin, matting
from dhde.propagation import solver as prop
from dhde.propagation.matting import matting_laplacian_coefficients
from dhde.propagation import multigrid
from dhde.propagation.multigrid import level_shapes
from dhde.propagation.solver import propagate

build_multigrid = jax.jit(multigrid.build_multigrid, static_argnames=("max_coarse",))
from reference.matting_laplacian import assemble_matting_laplacian, coefficients_to_sparse

H, W = 24, 20  # two multigrid levels: 24x20 -> 12x10 (dense); one compilation per configuration


def make_problem(seed: int = 0, h: int = H, w: int = W):
    """A piecewise-smooth guide with an edge, a sparse mask (~10 %) and defocus-like values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    inside = (xx - 0.45) ** 2 + (yy - 0.5) ** 2 < 0.09
    guide = np.stack([0.2 + 0.6 * inside, 0.3 + 0.2 * xx, 0.5 - 0.3 * yy * inside], -1)
    guide = np.clip(guide + 0.02 * rng.standard_normal(guide.shape), 0, 1).astype(np.float32)
    mask = rng.random((h, w)) < 0.1
    truth = np.where(inside, 2.0, 0.7) + 0.3 * xx
    sparse = np.where(mask, truth + 0.05 * rng.standard_normal((h, w)), 0.0).astype(np.float32)
    return sparse, mask, guide


def direct_solve(sparse, mask, guide, gamma=0.005, eps_mode="code"):
    lap = assemble_matting_laplacian(guide, eps_mode=eps_mode)
    a = (lap + sp.diags(gamma * mask.ravel().astype(np.float64))).tocsc()
    b = gamma * (mask * sparse).ravel().astype(np.float64)
    return spl.spsolve(a, b, permc_spec="MMD_AT_PLUS_A").reshape(mask.shape)


PROBLEM = make_problem()
DIRECT = direct_solve(*PROBLEM)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "preconditioner, solver",
    [("multigrid", "jax_cg"), ("multigrid", "pcg"), ("jacobi", "pcg"), ("none", "jax_cg")],
)
def test_matches_direct_solve(preconditioner, solver):
    res = propagate(*PROBLEM, preconditioner=preconditioner, solver=solver)
    assert res.defocus.shape == (H, W) and res.defocus.dtype == jnp.float32
    assert rel(res.defocus, DIRECT) <= 1e-3
    # true residual; float32 floor ~ 1e-7 ||A|| ||x|| / ||b|| (see PropagationResult)
    assert res.residual < (1e-3 if preconditioner == "multigrid" else 1e-2)
    if solver == "jax_cg":
        assert res.iterations == -1
    else:
        assert 0 < res.iterations < prop.DEFAULT_MAXITER


def test_multigrid_needs_few_iterations():
    mg = propagate(*PROBLEM, solver="pcg").iterations
    plain = propagate(*PROBLEM, preconditioner="jacobi", solver="pcg").iterations
    assert mg <= 30 and 2 * mg < plain


def test_pcg_matches_jax_cg_iterates():
    """jax's cg stopped after the same number of iterations gives pcg's iterate."""
    sparse, mask, guide = PROBLEM
    res = propagate(sparse, mask, guide, solver="pcg")
    same = propagate(sparse, mask, guide, tol=1e-12, maxiter=res.iterations, solver="jax_cg")
    np.testing.assert_allclose(same.defocus, res.defocus, rtol=1e-4, atol=1e-5)


def test_paper_eps_mode():
    res = propagate(*PROBLEM, eps_mode="paper", solver="pcg")
    assert rel(res.defocus, direct_solve(*PROBLEM, eps_mode="paper")) <= 1e-3


def test_constant_solutions():
    sparse, mask, guide = PROBLEM
    one_point = np.zeros_like(mask)
    one_point[5, 7] = True
    res = propagate(np.full((H, W), 1.3, np.float32), one_point, guide, solver="pcg")
    np.testing.assert_allclose(res.defocus, 1.3, rtol=1e-3)  # L 1 = 0: a constant is optimal
    res = propagate(np.full((H, W), 0.8, np.float32), mask, guide, solver="pcg")
    np.testing.assert_allclose(res.defocus, 0.8, rtol=1e-3)


def test_initial_guess():
    cold = propagate(*PROBLEM, tol=1e-3, solver="pcg")
    warm = propagate(*PROBLEM, tol=1e-3, solver="pcg", x0=DIRECT.astype(np.float32))
    assert warm.iterations < cold.iterations
    assert rel(warm.defocus, DIRECT) <= 1e-3


def _operator(seed=0):
    sparse, mask, guide = make_problem(seed)
    coeffs = matting_laplacian_coefficients(guide)
    mass = jnp.asarray(0.005 * mask, jnp.float32)
    return coeffs, mass


@pytest.fixture(scope="module")
def three_levels():
    """Operator and a 3-level hierarchy 24x20 -> 12x10 -> 6x5 (dense)."""
    coeffs, mass = _operator()
    return coeffs, mass, build_multigrid(coeffs, mass, max_coarse=32)


@pytest.fixture(scope="module")
def two_levels():
    """Operator and the default 2-level hierarchy 24x20 -> 12x10 (dense)."""
    coeffs, mass = _operator()
    return coeffs, mass, build_multigrid(coeffs, mass)


@partial(jax.jit, static_argnames=("degree",))
def _dense_preconditioner(mg, coeffs, mass, degree):
    eye = jnp.eye(H * W, dtype=jnp.float32).reshape(-1, H, W)
    vcycle = partial(multigrid.vcycle, mg, coeffs, mass, degree=degree)
    return jax.vmap(lambda e: vcycle(e).ravel())(eye).T  # columns M e_j


@pytest.mark.parametrize("hierarchy, degree", [("three_levels", multigrid.CHEB_DEGREE), ("two_levels", 3)])
def test_multigrid_is_symmetric_positive_definite(hierarchy, degree, request):
    """Default smoother on 3 levels; Chebyshev recurrences (degree 3) on the default 2 levels."""
    coeffs, mass, mg = request.getfixturevalue(hierarchy)
    m = np.asarray(_dense_preconditioner(mg, coeffs, mass, degree), np.float64)
    assert np.abs(m - m.T).max() <= 1e-5 * np.abs(m).max()
    assert np.linalg.eigvalsh(0.5 * (m + m.T)).min() > 0
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, H * W))
    assert abs(x @ m @ y - y @ m @ x) <= 1e-5 * abs(x @ m @ y)
    # jit == eager for one V-cycle (the dense matrix above comes from the jitted V-cycle).
    with jax.disable_jit():
        r = jnp.asarray(x.reshape(H, W), jnp.float32)
        eager = np.asarray(multigrid.vcycle(mg, coeffs, mass, r, degree=degree))
    np.testing.assert_allclose(eager.ravel(), m @ x, rtol=1e-4, atol=1e-4 * np.abs(m @ x).max())


def interpolation_matrix(n: int) -> np.ndarray:
    """(n, ceil(n/2)) 1-D linear interpolation: fine 2i = coarse i, fine 2i+1 = mean of i, i+1."""
    nc = (n + 1) // 2
    p = np.zeros((n, nc))
    for i in range(n):
        if i % 2 == 0:
            p[i, i // 2] = 1.0
        elif i // 2 + 1 < nc:
            p[i, i // 2] = p[i, i // 2 + 1] = 0.5
        else:  # last sample of an even-length axis: constant extension
            p[i, i // 2] = 1.0
    return p


def stencil_matrix(stencil) -> np.ndarray:
    s = np.asarray(stencil, np.float64)
    _, _, h, w = s.shape
    a = np.zeros((h * w, h * w))
    for i, j, y, x in itertools.product(range(5), range(5), range(h), range(w)):
        if 0 <= y + i - 2 < h and 0 <= x + j - 2 < w:
            a[y * w + x, (y + i - 2) * w + x + j - 2] += s[i, j, y, x]
        else:
            assert s[i, j, y, x] == 0.0
    return a


def test_galerkin_coarse_operators(three_levels):
    """Each stored coarse stencil equals P^T A P formed with explicit matrices."""
    coeffs, mass, mg = three_levels
    shapes = level_shapes(H, W, max_coarse=32)
    assert len(mg.levels) == 2 and len(shapes) == 3
    fine = coefficients_to_sparse(coeffs).toarray() + np.diag(np.asarray(mass, np.float64).ravel())
    for lv, (fh, fw) in zip(mg.levels, shapes[:-1]):
        pmat = np.kron(interpolation_matrix(fh), interpolation_matrix(fw))
        ref = pmat.T @ fine @ pmat
        got = stencil_matrix(lv.stencil)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
        np.testing.assert_array_equal(got, got.T)
        fine = got
    inv = np.linalg.inv(fine)
    np.testing.assert_allclose(np.asarray(mg.coarse_inv), inv, rtol=1e-3, atol=1e-3 * np.abs(inv).max())


@pytest.mark.parametrize("fine", [(9, 12), (1, 6)])
def test_transfers(fine):
    rng = np.random.default_rng(2)
    coarse = ((fine[0] + 1) // 2, (fine[1] + 1) // 2)
    pmat = np.kron(interpolation_matrix(fine[0]), interpolation_matrix(fine[1]))
    xc = rng.standard_normal(coarse).astype(np.float32)
    r = rng.standard_normal(fine).astype(np.float32)
    up = jax.jit(multigrid._prolong, static_argnums=1)(xc, fine)
    down = jax.jit(multigrid._restrict, static_argnums=1)(r, coarse)
    np.testing.assert_allclose(np.asarray(up).ravel(), pmat @ xc.ravel(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(down).ravel(), pmat.T @ r.ravel(), rtol=1e-5, atol=1e-5)


def test_level_shapes():
    shapes = level_shapes(480, 640)
    assert shapes[0] == (480, 640) and shapes[-1] == (8, 10) and len(shapes) == 7
    assert level_shapes(10, 12) == ((10, 12),)
    assert level_shapes(3, 500)[-1][0] * level_shapes(3, 500)[-1][1] <= multigrid.MAX_COARSE


def test_no_recompilation():
    propagate(*PROBLEM, solver="pcg")
    jits = [prop.solve, prop._build_multigrid, prop.system_terms, matting.stencil_coefficients]
    sizes = [f._cache_size() for f in jits]
    sparse, mask, guide = make_problem(seed=5)
    res = propagate(sparse, mask, guide, gamma=0.01, tol=1e-3, eps=2e-5, maxiter=50, solver="pcg")
    assert [f._cache_size() for f in jits] == sizes
    lap = assemble_matting_laplacian(guide, eps=2e-5)
    a = (lap + sp.diags(0.01 * mask.ravel().astype(np.float64))).tocsc()
    ref = spl.spsolve(a, 0.01 * (mask * sparse).ravel().astype(np.float64)).reshape(H, W)
    assert rel(res.defocus, ref) < 1e-3


def test_bad_inputs():
    sparse, mask, guide = PROBLEM
    with pytest.raises(ValueError, match="mask is empty"):
        propagate(sparse, np.zeros_like(mask), guide)
    with pytest.raises(ValueError, match="mask must have shape"):
        propagate(sparse, mask[:-1], guide)
    with pytest.raises(ValueError, match="sparse must have shape"):
        propagate(sparse[:, :-1], mask, guide)
    with pytest.raises(ValueError, match="guide"):
        propagate(sparse, mask, guide[..., :2])
    with pytest.raises(TypeError, match="boolean"):
        propagate(sparse, mask.astype(np.float32), guide)
    bad = sparse.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        propagate(bad, mask, guide)
    bad = guide.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        propagate(sparse, mask, bad)
    with pytest.raises(ValueError, match="preconditioner"):
        propagate(sparse, mask, guide, preconditioner="ilu")
    with pytest.raises(ValueError, match="solver"):
        propagate(sparse, mask, guide, solver="gmres")
    with pytest.raises(ValueError, match="maxiter"):
        propagate(sparse, mask, guide, maxiter=0)
    with pytest.raises(ValueError, match="gamma"):
        propagate(sparse, mask, guide, gamma=-1.0)
    with pytest.raises(ValueError, match="x0"):
        propagate(sparse, mask, guide, x0=np.zeros((3, 3)))


def test_empty_mask_core_is_defined():
    """The jitted core (no validation) returns zeros for an empty mask instead of NaN."""
    sparse, mask, guide = PROBLEM
    x, _, res = prop.propagate_arrays(
        jnp.asarray(sparse), jnp.zeros((H, W), bool), jnp.asarray(guide), jnp.zeros((H, W)),
        jnp.float32(0.005), jnp.float32(9e-5), jnp.float32(1e-4), jnp.int32(200),
        preconditioner="multigrid", solver="pcg",
    )
    np.testing.assert_array_equal(x, 0.0)
    assert float(res) == 0.0


def _galerkin_axis_planes(planes: list, axis: int) -> list:
    """The library's one-line Galerkin pass applied to a whole axis of 5 x 5 planes (the form the
    fine level's row-by-row product must reproduce)."""
    if axis == 1:
        return [_galerkin.galerkin_line(row, 1) for row in planes]
    cols = [_galerkin.galerkin_line([planes[k][o] for k in range(5)], 0) for o in range(5)]
    return [[cols[o][d] for o in range(5)] for d in range(5)]


@pytest.mark.parametrize("shape", [(9, 12), (8, 7), (3, 2), (2, 1), (1, 5)])
def test_galerkin_plane_form_equals_stacked_form(shape):
    """The fine level's unstacked Galerkin product (no (5, 5, H, W) copy) gives the stacked
    form's numbers bit for bit, for odd and even sides down to 1 and 2 points."""
    rng = np.random.default_rng(sum(shape))
    s = jnp.asarray(rng.standard_normal((5, 5) + shape).astype(np.float32))
    planes = [[s[i, j] for j in range(5)] for i in range(5)]
    for axis in (0, 1):
        stacked = np.asarray(jax.jit(_galerkin.galerkin_axis, static_argnums=1)(s, axis + 2))
        got = jax.jit(_galerkin_axis_planes, static_argnums=1)(planes, axis)
        np.testing.assert_array_equal(np.stack([np.stack([np.asarray(p) for p in row]) for row in got]), stacked)
    one = jnp.float32(1.0)
    a, b = multigrid._galerkin(s, one), multigrid._galerkin(lambda i, j, _: planes[i][j], one)
    np.testing.assert_array_equal(np.asarray(a.stencil), np.asarray(b.stencil))
    np.testing.assert_array_equal(np.asarray(a.dinv), np.asarray(b.dinv))


def test_shifted_plane_equals_stencil_shift():
    """The fine level's backward planes (one lax.pad with cropping edges) are stencil_shift's."""
    x = jnp.asarray(np.random.default_rng(3).standard_normal((7, 9)).astype(np.float32))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            np.testing.assert_array_equal(_galerkin.shifted(x, dy, dx), matting.stencil_shift(x, dy, dx))


def test_fine_galerkin_row_by_row_equals_two_passes():
    """The fine level's Galerkin product, computed one coarse row offset at a time, gives the two
    whole-axis passes' numbers bit for bit."""
    rng = np.random.default_rng(11)
    planes = [[jnp.asarray(rng.standard_normal((10, 13)).astype(np.float32)) for _ in range(5)] for _ in range(5)]
    one = jnp.float32(1.0)
    rows = jax.jit(lambda p, o: _galerkin.galerkin_fine(lambda i, j, _: p[i][j], o))(planes, one)
    two = _galerkin_axis_planes(_galerkin_axis_planes(planes, 0), 1)
    for i in range(5):
        for j in range(5):
            np.testing.assert_array_equal(rows[i][j], two[i][j])


def test_large_coarse_level_takes_the_plane_pass(monkeypatch):
    """Coarse levels above ``PLANE_PASS_PIXELS`` (12 MP images) use the one-plane-at-a-time
    Galerkin product, which must give the stacked product's hierarchy bit for bit."""
    coeffs, mass = _operator()

    def build():  # a fresh jit: the threshold is read at trace time
        fn = lambda c, m: multigrid.build_multigrid(c, m, max_coarse=32)  # noqa: E731
        return jax.jit(fn)(coeffs, mass), len(str(jax.make_jaxpr(fn)(coeffs, mass)))

    stacked, n_stacked = build()
    monkeypatch.setattr(multigrid, "PLANE_PASS_PIXELS", 0)
    planes, n_planes = build()
    assert n_planes > n_stacked  # the plane pass did run
    assert len(planes.levels) == 2
    for a, b in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(planes)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
